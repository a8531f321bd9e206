use std::process::ExitCode;
use zkit::cli::zmount::{self, Args};

fn main() -> ExitCode {
    zmount::run(Args::parse_or_exit())
}
