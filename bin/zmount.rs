use clap::CommandFactory;
use std::process::ExitCode;
use zkit::cli::zmount::{self, Args};

fn main() -> ExitCode {
    zkit::cli::complete::handle("zmount", Args::command);
    zkit::cli::finish("zmount", zmount::run(Args::parse_or_exit()))
}
