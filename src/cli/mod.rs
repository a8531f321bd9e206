//! What the binaries share: their argument definitions (so man pages can be generated from
//! them), the one-line error report, and exit codes scripts can rely on.

pub mod complete;
pub mod diff;
pub mod du;
pub mod gc;
pub mod json;
pub mod lists;
pub mod log;
pub mod oci;
pub mod zcommit;
pub mod zlink;
pub mod zmount;
pub mod zwrite;

use crate::Error;
use std::io;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Exit codes shared by every zkit tool. Usage errors exit 2 through clap.
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Print `TOOL: PATH: what happened (what to do)` on stderr and return the failure exit code.
pub fn report(tool: &str, err: &Error) -> ExitCode {
    match err.hint() {
        Some(hint) => crate::errln!("{tool}: {err} ({hint})"),
        None => crate::errln!("{tool}: {err}"),
    }
    ExitCode::from(EXIT_FAILURE)
}

// Output that never panics. `eprintln!` and `println!` panic when the write fails (stderr on
// /dev/full, stdout into a closed pipe), which turned a tool's documented exit status into 101.

/// `eprintln!` that ignores write errors: with stderr unwritable there is nowhere to say more,
/// and the exit status still tells.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::write_stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that ignores write errors (progress lines).
#[macro_export]
macro_rules! errprint {
    ($($arg:tt)*) => { $crate::cli::write_stderr(format_args!($($arg)*)) };
}

/// `println!` that never panics: a closed pipe (`| head`) silently ends the output; any other
/// error is kept for [`finish`], which reports it and makes the exit status a failure.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that never panics; see [`outln!`].
#[macro_export]
macro_rules! outprint {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!($($arg)*)) };
}

pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Set once stdout is a closed pipe: nothing more is written to it.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The first error other than a closed pipe, for [`finish`].
static STDOUT_ERROR: Mutex<Option<io::Error>> = Mutex::new(None);

pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if !STDOUT_CLOSED.load(Relaxed) {
        stdout_result(std::io::stdout().lock().write_fmt(args));
    }
}

fn stdout_result(result: io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => STDOUT_CLOSED.store(true, Relaxed),
        Err(e) => {
            STDOUT_CLOSED.store(true, Relaxed);
            let mut first = STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert(e);
        }
    }
}

/// A binary's last step: flush stdout and return `code`, or, if writing stdout failed for a
/// reason other than a closed pipe, say so and return the failure status instead of success.
pub fn finish(tool: &str, code: ExitCode) -> ExitCode {
    use std::io::Write;
    if !STDOUT_CLOSED.load(Relaxed) {
        stdout_result(std::io::stdout().lock().flush());
    }
    let failed = STDOUT_ERROR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match failed {
        Some(e) => {
            // No hint: the ones for the errno speak of files, and this is our output.
            crate::errln!(
                "{tool}: {}",
                Error::io("standard output", "cannot write", e)
            );
            if code == ExitCode::SUCCESS {
                ExitCode::from(EXIT_FAILURE)
            } else {
                code
            }
        }
        None => code,
    }
}

/// Every clap command of the package, for man pages and completions.
pub fn commands() -> Vec<clap::Command> {
    use clap::CommandFactory;
    vec![
        zwrite::Args::command(),
        zlink::Args::command(),
        zcommit::Args::command(),
        zmount::Args::command(),
    ]
}
