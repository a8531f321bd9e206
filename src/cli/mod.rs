//! What the binaries share: their argument definitions (so man pages can be generated from
//! them), the one-line error report, and exit codes scripts can rely on.

pub mod diff;
pub mod log;
pub mod quote;
pub mod zcommit;
pub mod zlink;
pub mod zmount;
pub mod zwrite;

use crate::Error;
use std::process::ExitCode;

/// Exit codes shared by every zkit tool. Usage errors exit 2 through clap.
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Print `TOOL: PATH: what happened (what to do)` on stderr and return the failure exit code.
pub fn report(tool: &str, err: &Error) -> ExitCode {
    match err.hint() {
        Some(hint) => eprintln!("{tool}: {err} ({hint})"),
        None => eprintln!("{tool}: {err}"),
    }
    ExitCode::from(EXIT_FAILURE)
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
