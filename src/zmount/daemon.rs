//! `zmount serve`: one routed FUSE mount plus the control socket.
//!
//! Start-up, in order: take `control/lock` (one daemon per directory; the lock dies with the
//! process, so a crash never blocks the next start), clear what a crashed daemon left (a dead
//! FUSE mount is replaced, a socket nobody answers is removed), mount, listen, report ready.
//! Shutdown (`zmount stop`, SIGTERM, SIGINT, SIGHUP): stop accepting, then leave the mount
//! (see [`super::Ending`]), remove the socket. `stop` is refused while views are registered,
//! unless forced; with views left (forced, or a signal) the mount is left in place without a
//! server, so their processes get ENOTCONN instead of reaching the directory beneath. A
//! crashed daemon leaves the same dead mount, which the next daemon replaces (see
//! [`super::attach`]).

use super::control::{self, Peer, Reply, Request, Status, ViewStatus};
use super::{Paths, mounts, ready};
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::fuse::{Fs, Mode, Served};
use crate::process::{self, ProcId};
use crate::router::Router;
use crate::view::{Meta, View};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Control connections served at once.
const MAX_CONNECTIONS: usize = 64;

pub struct ServeOptions {
    pub paths: Paths,
    pub mountpoint: Option<PathBuf>,
    /// Serve read-only views only (faster opens; `run --edit` is refused).
    pub read_only: bool,
}

struct Daemon {
    router: Arc<Router<Served>>,
    mountpoint: PathBuf,
    socket: PathBuf,
    started: Instant,
    next_view: AtomicU32,
    stopping: AtomicBool,
    /// Held while a registration is checked against `stopping` and added, and while `stop`
    /// checks for views and sets `stopping`: no view can slip in behind a stop's check.
    gate: Mutex<()>,
    read_only: bool,
    /// Connections being served.
    busy: AtomicUsize,
    uid: u32,
    /// The listening socket, to wake the accept loop when stopping.
    listener: UnixListener,
}

/// Run the daemon in this process until it is told to stop.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let paths = &opts.paths;
    paths.prepare()?;
    crate::sys::block_termination().at(&paths.control, "cannot set up signal handling")?;
    raise_fd_limit();
    let lock = lock_file(&paths.lock)?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(Error::new(&paths.socket, ErrorKind::AlreadyRunning));
    }
    let mountpoint = match &opts.mountpoint {
        Some(m) => m.clone(),
        None => {
            mounts::ensure_dir(&paths.default_mountpoint)?;
            paths.default_mountpoint.clone()
        }
    };
    mounts::check_fuse(&mountpoint)?;
    let dead = mounts::recover(&mountpoint)?;
    // A long-lived daemon must not keep the directory it was started from busy.
    let _ = std::env::set_current_dir("/");
    if std::fs::symlink_metadata(&paths.socket).is_ok() {
        tracing::warn!(socket = %paths.socket.display(), "removing the socket of a daemon that died");
        std::fs::remove_file(&paths.socket).at(&paths.socket, "cannot remove stale socket")?;
    }

    let router = Arc::new(Router::new());
    let uid = rustix::process::geteuid().as_raw();
    let empty = Arc::new(Served::read_only(View::empty(
        0,
        meta(vec![], uid, rustix::process::getegid().as_raw()),
    )));
    let fs = Fs::new(Mode::Routed {
        router: router.clone(),
        empty,
    });
    // Writable unless --read-only: editable views may register; read-only ones answer EROFS
    // themselves.
    let session = super::mount_session(fs, &mountpoint, !opts.read_only, dead)?;

    let listener = UnixListener::bind(&paths.socket).at(&paths.socket, "cannot create socket")?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))
        .at(&paths.socket, "cannot set socket permissions")?;
    let daemon = Arc::new(Daemon {
        router,
        mountpoint: std::fs::canonicalize(&mountpoint).unwrap_or(mountpoint.clone()),
        socket: paths.socket.clone(),
        started: Instant::now(),
        next_view: AtomicU32::new(1),
        stopping: AtomicBool::new(false),
        gate: Mutex::new(()),
        read_only: opts.read_only,
        busy: AtomicUsize::new(0),
        listener: listener
            .try_clone()
            .at(&paths.socket, "cannot duplicate socket")?,
        uid,
    });
    tracing::info!(
        mountpoint = %daemon.mountpoint.display(),
        socket = %paths.socket.display(),
        pid = std::process::id(),
        "zmount daemon ready"
    );
    let d = daemon.clone();
    let on_signal = move || {
        let sig = crate::sys::wait_termination();
        tracing::info!(signal = sig, "stopping on signal");
        d.stop();
    };
    let d = daemon.clone();
    let sweeper = move || {
        while !d.stopping.load(SeqCst) {
            for gone in d.router.sweep() {
                tracing::info!(
                    pid = gone.root.pid,
                    view = gone.view.view.id,
                    "unregistered: the tree's root process exited"
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let started = crate::threads::spawn(&paths.control, on_signal)
        .and_then(|_| crate::threads::spawn(&paths.control, sweeper));
    if let Err(e) = started {
        super::finish_session(session, &daemon.mountpoint, super::Ending::Unmount);
        return Err(e);
    }
    ready::notify(Some(&paths.log))?;

    for conn in listener.incoming() {
        if daemon.stopping.load(SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        // Each connection has a thread, bounded in time by the I/O timeouts and in number
        // here, so a flood of idle clients cannot exhaust the daemon.
        if daemon.busy.load(SeqCst) >= MAX_CONNECTIONS {
            tracing::warn!("too many control connections; dropping one");
            continue;
        }
        let d = daemon.clone();
        d.busy.fetch_add(1, SeqCst);
        let served = crate::threads::spawn(&paths.socket, move || {
            control::serve_connection(conn, |peer, req| d.handle(peer, req));
            d.busy.fetch_sub(1, SeqCst);
            // A `stop` is acted on only once its reply is out: the process must not exit
            // under the thread that is still writing it.
            if d.stopping.load(SeqCst) {
                d.stop();
            }
        });
        // The system refused a thread: drop the connection (its client sees it closed).
        if let Err(e) = served {
            daemon.busy.fetch_sub(1, SeqCst);
            tracing::warn!(error = %e, "dropping a control connection");
        }
    }

    drop(listener);
    // Let replies in flight (the `stop` one above all) reach their clients; bounded, since
    // a stuck client times out on its own anyway.
    let deadline = Instant::now() + control::IO_TIMEOUT;
    while daemon.busy.load(SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Views still registered (a forced stop, a signal) mean processes that may still use the
    // mount by path: the mount must not go, or their writes would land beneath it.
    daemon.router.sweep();
    let views = daemon.router.registrations().len();
    let ending = match views {
        0 => super::Ending::Unmount,
        _ => super::Ending::Abandon,
    };
    tracing::info!(views, ?ending, "leaving the mount");
    super::finish_session(session, &daemon.mountpoint, ending);
    // Last: a client waiting in `zmount stop` takes the socket's removal as "all gone".
    let _ = std::fs::remove_file(&paths.socket);
    tracing::info!("zmount daemon stopped");
    Ok(())
}

fn meta(layers: Vec<String>, uid: u32, gid: u32) -> Meta {
    Meta {
        layers,
        uid,
        gid,
        created: SystemTime::now(),
    }
}

impl Daemon {
    fn stop(&self) {
        self.stopping.store(true, SeqCst);
        // Wake the accept loop: shutting the listener down ends a blocked accept on Linux
        // even when the socket's name is gone (someone removed the directory); a connection
        // does elsewhere.
        let _ = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Read);
        let _ = UnixStream::connect(&self.socket);
    }

    fn handle(&self, peer: Peer, req: Request) -> Reply {
        match req {
            Request::Ping => Reply::Pong {
                mountpoint: self.mountpoint.clone(),
                pid: std::process::id(),
            },
            Request::Register {
                pid,
                start,
                store,
                layers,
                names,
                edit,
            } => match self.register(peer, pid, start, &store, &layers, names, edit.as_deref()) {
                Ok(view) => Reply::Registered {
                    view,
                    mountpoint: self.mountpoint.clone(),
                },
                Err(e) => {
                    tracing::warn!(peer.uid, peer.pid, pid, error = %e, "registration refused");
                    e.into()
                }
            },
            Request::Unregister { pid } => self.unregister(peer, pid),
            Request::Status => Reply::Status(self.status()),
            Request::Stop { force } => {
                if peer.uid != 0 && peer.uid != self.uid {
                    return control::error_reply(
                        "stop",
                        "only the daemon's user or root may stop it",
                    );
                }
                self.router.sweep();
                let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
                let views = self.router.registrations();
                if !views.is_empty() && !force {
                    return control::error_reply(
                        &self.mountpoint.to_string_lossy(),
                        &in_use_message(&views),
                    );
                }
                tracing::info!(
                    peer.uid,
                    peer.pid,
                    force,
                    views = views.len(),
                    "stop requested"
                );
                self.stopping.store(true, SeqCst);
                Reply::Stopped
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        peer: Peer,
        pid: u32,
        start: Option<u64>,
        store: &Path,
        layers: &[String],
        names: Vec<String>,
        edit: Option<&str>,
    ) -> Result<u32> {
        let refuse = |what: String| Error::new(format!("pid {pid}"), ErrorKind::Daemon(what));
        let stat = process::stat(pid).map_err(|_| refuse("no such process".into()))?;
        let owner = process::owner(pid).map_err(|_| refuse("no such process".into()))?;
        if peer.uid != 0 && owner != peer.uid {
            return Err(refuse(format!(
                "process belongs to uid {owner}, not to you (uid {}): a view can only be \
                 registered for your own processes",
                peer.uid
            )));
        }
        if let Some(s) = start
            && s != stat.id.start
        {
            return Err(refuse(
                "that process has exited (its pid now names another process)".into(),
            ));
        }
        // The daemon reads the store with its own rights; a user may only expose a store
        // that is theirs.
        let meta_store = std::fs::metadata(store).at(store, "cannot open store")?;
        if peer.uid != 0 && peer.uid != self.uid && meta_store.uid() != peer.uid {
            return Err(Error::new(
                store,
                ErrorKind::Daemon("the store is not yours".into()),
            ));
        }
        let gid = std::fs::metadata(format!("/proc/{pid}"))
            .map(|m| m.gid())
            .unwrap_or(0);
        if edit.is_some() && self.read_only {
            return Err(refuse(
                "this daemon serves read-only views (serve --read-only); `zmount stop` it \
                 and `run --edit` starts one that takes editable views"
                    .into(),
            ));
        }
        let id = self.next_view.fetch_add(1, SeqCst);
        let names = if names.len() == layers.len() {
            names
        } else {
            layers.to_vec()
        };
        let served = match edit {
            Some(runtime) => super::edit::view(store, runtime, id, meta(names, owner, gid))?,
            None => Served::read_only(super::build_view(
                store,
                layers,
                id,
                meta(names, owner, gid),
            )?),
        };
        tracing::info!(
            pid,
            start = stat.id.start,
            view = id,
            layers = ?served.view.meta.layers,
            nodes = served.view.len(),
            peer.uid,
            "registered"
        );
        let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if self.stopping.load(SeqCst) {
            return Err(refuse(
                "the daemon is stopping (run again once it is gone: a new one starts)".into(),
            ));
        }
        self.router.register(
            ProcId {
                pid,
                start: stat.id.start,
            },
            Arc::new(served),
        );
        Ok(id)
    }

    fn unregister(&self, peer: Peer, pid: u32) -> Reply {
        let regs = self.router.registrations();
        let Some(reg) = regs.iter().find(|r| r.root.pid == pid) else {
            return control::error_reply(&format!("pid {pid}"), "no view is registered for it");
        };
        if peer.uid != 0 && reg.view.view.meta.uid != peer.uid {
            return control::error_reply(&format!("pid {pid}"), "that view is not yours");
        }
        if let Some(r) = self.router.unregister(pid) {
            tracing::info!(pid, view = r.view.view.id, peer.pid, "unregistered");
        }
        Reply::Unregistered
    }

    fn status(&self) -> Status {
        let (cache_hits, cache_misses) = self.router.cache_stats();
        let now = SystemTime::now();
        let views = self
            .router
            .registrations()
            .into_iter()
            .map(|r| {
                let (view, edit) = (&r.view.view, r.view.edit());
                ViewStatus {
                    id: view.id,
                    root_pid: r.root.pid,
                    root_start: r.root.start,
                    layers: view.meta.layers.clone(),
                    age_secs: now
                        .duration_since(view.meta.created)
                        .unwrap_or_default()
                        .as_secs(),
                    uid: view.meta.uid,
                    nodes: view.len(),
                    kept_nodes: edit.map(|e| e.node_count()),
                    runtime: edit.map(|e| e.runtime_name().to_string()),
                }
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            mountpoint: self.mountpoint.clone(),
            views,
            cache_hits,
            cache_misses,
            healthy: std::fs::metadata(&self.mountpoint).is_ok(),
        }
    }
}

/// Why `stop` refuses: the views in use, each with its root process and layers.
fn in_use_message(views: &[crate::router::Registration<Served>]) -> String {
    let list: Vec<String> = views
        .iter()
        .map(|r| {
            format!(
                "view {} of pid {}: {}",
                r.view.view.id,
                r.root.pid,
                r.view.view.meta.layers.join(" ")
            )
        })
        .collect();
    format!(
        "{} in use ({}) (let them finish, or `zmount stop --force`: their processes then get \
         errors on every access)",
        match views.len() {
            1 => "1 view is".to_string(),
            n => format!("{n} views are"),
        },
        list.join("; ")
    )
}

/// Make sure a daemon answers at `paths`, starting one if none does; returns its mount
/// point. The daemon is started through a short-lived `zmount serve`, so it is never our
/// child: a `run` (a subreaper that waits for all its descendants) must not wait for it.
pub fn ensure_running(
    paths: &Paths,
    mountpoint: Option<&Path>,
    log_level: Option<&str>,
) -> Result<PathBuf> {
    if let Ok(mp) = ping(paths) {
        return Ok(mp);
    }
    ready::run_to_end(&super::serve_args(paths, mountpoint, log_level, false))?;
    ping(paths)
}

/// `zmount serve` without `--foreground`: start the daemon in the background and return
/// once it is ready. Concurrent callers start at most one daemon.
pub fn start_background(
    paths: &Paths,
    mountpoint: Option<&Path>,
    log_level: Option<&str>,
    read_only: bool,
) -> Result<PathBuf> {
    paths.prepare()?;
    let lock = lock_file(&paths.start_lock)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .at(&paths.start_lock, "cannot lock")?;
    if let Ok(mp) = ping(paths) {
        return Ok(mp);
    }
    let mut args = super::serve_args(paths, mountpoint, log_level, read_only);
    args.push("--foreground".into());
    ready::spawn_and_wait(&args)?;
    ping(paths)
}

/// The ancestry cache holds a pidfd per caller and every read opens a blob: lift the soft
/// descriptor limit (often 1024) to the hard one.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn lock_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path, "cannot open lock")
}

fn ping(paths: &Paths) -> Result<PathBuf> {
    match control::call(&paths.socket, &Request::Ping)? {
        Reply::Pong { mountpoint, .. } => Ok(mountpoint),
        other => Err(Error::new(
            &paths.socket,
            ErrorKind::Daemon(format!("unexpected reply {other:?}")),
        )),
    }
}

/// Ask the daemon to stop and wait until it is gone: its socket removed and its process
/// exited (only then has the kernel cut the connection of a mount it left to views).
/// Refused while views are registered, unless `force`.
pub fn stop(paths: &Paths, force: bool) -> Result<()> {
    let pid = match control::call(&paths.socket, &Request::Ping)? {
        Reply::Pong { pid, .. } => process::stat(pid).ok().map(|s| s.id),
        _ => None,
    };
    control::call(&paths.socket, &Request::Stop { force })?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::symlink_metadata(&paths.socket).is_ok() || pid.is_some_and(process::alive) {
        if Instant::now() > deadline {
            return Err(Error::new(
                &paths.socket,
                ErrorKind::Daemon("the daemon did not stop within 15 s".into()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
