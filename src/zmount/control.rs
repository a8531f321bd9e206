//! The daemon's control protocol: one JSON request line, one JSON reply line, per connection,
//! over a Unix socket in a 0700 directory (never TCP).
//!
//! The server reads the peer's credentials from the kernel (`SO_PEERCRED`), never from the
//! message, and bounds what a client can cost it: a request is at most [`MAX_REQUEST`] bytes
//! and must arrive within [`IO_TIMEOUT`], so garbage, a client that dies mid-request or one
//! that never finishes gets an error (or a closed socket) and the daemon serves on.

use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const MAX_REQUEST: u64 = 64 * 1024;
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Is a daemon there, and where is its mount?
    Ping,
    /// Show `layers` (digests, bottom first, from the store at `store`) to the process tree
    /// rooted at `pid`. `start`, when given, must be that process's start time.
    Register {
        pid: u32,
        #[serde(default)]
        start: Option<u64>,
        #[serde(with = "bytes")]
        store: PathBuf,
        layers: Vec<String>,
        /// The names the user gave, for `status`.
        #[serde(default)]
        names: Vec<String>,
        /// Editable: the runtime (in the store) whose scratch dir goes on top.
        #[serde(default)]
        edit: Option<String>,
    },
    Unregister {
        pid: u32,
    },
    Status,
    /// Refused while views are registered, unless `force`.
    Stop {
        #[serde(default)]
        force: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Pong {
        #[serde(with = "bytes")]
        mountpoint: PathBuf,
        pid: u32,
    },
    Registered {
        view: u32,
        #[serde(with = "bytes")]
        mountpoint: PathBuf,
    },
    Unregistered,
    Status(Status),
    Stopped,
    Error {
        path: String,
        message: String,
    },
}

/// What `zmount status --json` prints.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    #[serde(with = "bytes")]
    pub mountpoint: PathBuf,
    pub views: Vec<ViewStatus>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub healthy: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ViewStatus {
    pub id: u32,
    pub root_pid: u32,
    pub root_start: u64,
    pub layers: Vec<String>,
    pub age_secs: u64,
    pub uid: u32,
    /// Nodes of the merged layers (fixed for the view's life).
    pub nodes: usize,
    /// An editable view's node records: what the kernel holds now (see [`crate::edit`]).
    #[serde(default)]
    pub kept_nodes: Option<usize>,
    /// The runtime an editable view writes to.
    #[serde(default)]
    pub runtime: Option<String>,
}

/// Paths travel as a string when they are UTF-8 and as an array of bytes otherwise, so any
/// path round-trips and the usual ones stay readable.
mod bytes {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
        match p.to_str() {
            Some(t) => s.serialize_str(t),
            None => s.collect_seq(p.as_os_str().as_bytes()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<PathBuf, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Text(t) => PathBuf::from(t),
            Repr::Bytes(b) => PathBuf::from(std::ffi::OsString::from_vec(b)),
        })
    }
}

/// Send one request and read the reply. Connection failures name the fix: no socket means no
/// daemon, a refused connection means a daemon died and left its socket.
pub fn call(socket: &Path, req: &Request) -> Result<Reply> {
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => Error::new(socket, ErrorKind::DaemonNotRunning),
        Some(libc::ECONNREFUSED) => Error::new(socket, ErrorKind::StaleSocket),
        _ => Error::io(socket, "cannot connect to the zmount daemon", e),
    })?;
    // Registering loads manifests; give it time, but never hang forever.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut line = serde_json::to_vec(req).expect("requests serialise");
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| Error::io(socket, "cannot talk to the zmount daemon", e))?;
    let mut reply = String::new();
    BufReader::new(stream.take(16 << 20))
        .read_line(&mut reply)
        .map_err(|e| Error::io(socket, "no answer from the zmount daemon", e))?;
    if reply.is_empty() {
        return Err(Error::new(
            socket,
            ErrorKind::Daemon("the daemon closed the connection".into()),
        ));
    }
    match serde_json::from_str(&reply) {
        Ok(Reply::Error { path, message }) => Err(Error::new(path, ErrorKind::Daemon(message))),
        Ok(r) => Ok(r),
        Err(e) => Err(Error::new(
            socket,
            ErrorKind::Daemon(format!("bad reply from the daemon: {e}")),
        )),
    }
}

/// Who is on the other end of a connection, as the kernel says.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub uid: u32,
    pub pid: u32,
}

pub fn peer(stream: &UnixStream) -> std::io::Result<Peer> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let cred = rustix::net::sockopt::socket_peercred(stream)?;
        Ok(Peer {
            uid: cred.uid.as_raw(),
            pid: cred.pid.as_raw_nonzero().get() as u32,
        })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let uid = crate::sys::peer_uid(stream)?;
        Ok(Peer { uid, pid: 0 })
    }
}

/// Serve one connection: read a bounded request, answer it with `handle`. A malformed request
/// gets an error reply; I/O trouble (a dying client) just ends the connection.
pub fn serve_connection(stream: UnixStream, handle: impl FnOnce(Peer, Request) -> Reply) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let reply = match peer(&stream) {
        Err(e) => {
            tracing::warn!(error = %e, "cannot read peer credentials; dropping connection");
            return;
        }
        Ok(peer) => {
            let mut line = Vec::new();
            let read = BufReader::new((&stream).take(MAX_REQUEST)).read_until(b'\n', &mut line);
            match read {
                Err(e) => {
                    tracing::debug!(peer.pid, error = %e, "client went away mid-request");
                    return;
                }
                Ok(_) if !line.ends_with(b"\n") => error_reply(
                    "request",
                    "incomplete request: one JSON object on one line, at most 64 KiB",
                ),
                Ok(_) => match serde_json::from_slice::<Request>(&line) {
                    Ok(req) => handle(peer, req),
                    Err(e) => {
                        tracing::warn!(peer.uid, peer.pid, error = %e, "malformed control request");
                        error_reply("request", &format!("malformed request: {e}"))
                    }
                },
            }
        }
    };
    let mut out = serde_json::to_vec(&reply).expect("replies serialise");
    out.push(b'\n');
    let _ = (&stream).write_all(&out);
}

pub fn error_reply(path: &str, message: &str) -> Reply {
    Reply::Error {
        path: path.to_string(),
        message: message.to_string(),
    }
}

impl From<Error> for Reply {
    fn from(e: Error) -> Reply {
        let message = match e.hint() {
            Some(h) => format!("{} ({h})", e.kind),
            None => e.kind.to_string(),
        };
        Reply::Error {
            path: e.path.to_string_lossy().into_owned(),
            message,
        }
    }
}

/// A name or path as one token of a line, quoted as `ls` and zcommit quote names
/// ([`crate::quote::shell_escape`]): a newline or space in a name can neither break a
/// line nor fake one for a line-based reader; the JSON output carries the exact bytes.
pub fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&crate::quote::shell_escape(bytes)).into_owned()
}

fn shown_path(p: &Path) -> String {
    shown(p.as_os_str().as_bytes())
}

/// `zmount status` for people (`verbose`: each view's start time, runtime and layers, one
/// per line). Every name goes through [`shown`].
pub fn render_status(s: &Status, verbose: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "zmount {} (pid {}), up {}s",
        s.version, s.pid, s.uptime_secs
    );
    let _ = writeln!(out, "mount point: {}", shown_path(&s.mountpoint));
    let _ = writeln!(
        out,
        "health: {}",
        if s.healthy {
            "ok"
        } else {
            "mount point not answering"
        }
    );
    let total = s.cache_hits + s.cache_misses;
    let _ = writeln!(
        out,
        "ancestry cache: {} hits, {} misses{}",
        s.cache_hits,
        s.cache_misses,
        if total > 0 {
            format!(" ({:.1}% hits)", 100.0 * s.cache_hits as f64 / total as f64)
        } else {
            String::new()
        }
    );
    let _ = writeln!(out, "views: {}", s.views.len());
    for v in &s.views {
        let layers: Vec<String> = v.layers.iter().map(|l| shown(l.as_bytes())).collect();
        let edit = match (&v.runtime, v.kept_nodes) {
            (Some(r), Some(kept)) => {
                format!(", {kept} kept, editing runtime {}", shown(r.as_bytes()))
            }
            (Some(r), None) => format!(", editing runtime {}", shown(r.as_bytes())),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  view {}: pid {} (uid {}), {}s old, {} nodes{edit}: {}",
            v.id,
            v.root_pid,
            v.uid,
            v.age_secs,
            v.nodes,
            layers.join(" ")
        );
        if verbose {
            let _ = writeln!(
                out,
                "    root process start: {} (clock ticks since boot)",
                v.root_start
            );
            for (i, l) in layers.iter().enumerate() {
                let _ = writeln!(out, "    layer {}: {l}", i + 1);
            }
        }
    }
    out
}
