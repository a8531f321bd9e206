//! Background servers that report readiness: the parent starts `zmount ... --foreground`
//! with its stdout on a pipe and returns only when the child writes `ready` (mounted and
//! answering), or fails with the child's own error message when it exits first.

use crate::error::{Error, ErrorKind, IoContext, Result};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

const ENV: &str = "ZMOUNT_NOTIFY_READY";

/// Start this program again with `args` (which must include `--foreground`), detached from
/// our terminal's process group, and wait for it to be ready.
pub fn spawn_and_wait(args: &[OsString]) -> Result<u32> {
    let exe = std::env::current_exe().at(Path::new("zmount"), "cannot find own executable")?;
    let mut child = Command::new(&exe)
        .args(args)
        .env(ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .at(&exe, "cannot start the server")?;
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
    if line.trim_end() == "ready" {
        return Ok(child.id());
    }
    let mut err = String::new();
    let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
    let _ = child.wait();
    Err(relay(&err))
}

/// Run this program with `args` to completion, its error (if any) becoming ours.
pub fn run_to_end(args: &[OsString]) -> Result<()> {
    let exe = std::env::current_exe().at(Path::new("zmount"), "cannot find own executable")?;
    let out = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .at(&exe, "cannot start the server")?;
    match out.status.success() {
        true => Ok(()),
        false => Err(relay(&String::from_utf8_lossy(&out.stderr))),
    }
}

/// Another zmount printed `zmount: PATH: message (hint)`; hand it on as our own error.
fn relay(stderr: &str) -> Error {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the server exited");
    let last = last.strip_prefix("zmount: ").unwrap_or(last);
    let (path, message) = last.split_once(": ").unwrap_or(("zmount", last));
    Error::new(path, ErrorKind::Daemon(message.to_string()))
}

/// Tell a waiting parent we are ready, then point stdout and stderr at `log` (or nowhere) so
/// the parent's pipes can close. A no-op when we were not started by [`spawn_and_wait`].
pub fn notify(log: Option<&Path>) -> Result<()> {
    if std::env::var_os(ENV).is_none() {
        return Ok(());
    }
    let target = log.unwrap_or(Path::new("/dev/null"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .at(target, "cannot open log")?;
    crate::outln!("ready");
    rustix::stdio::dup2_stdout(&file).at(target, "cannot redirect output")?;
    rustix::stdio::dup2_stderr(&file).at(target, "cannot redirect output")?;
    Ok(())
}
