use clap::{CommandFactory, Parser};
use std::process::ExitCode;
use zkit::atomic;
use zkit::cli::zcommit::{self, Args};

fn main() -> ExitCode {
    zkit::cli::complete::handle("zcommit", Args::command);
    let args = Args::parse();
    atomic::remove_temporaries_on_signals();
    zkit::cli::finish("zcommit", zcommit::run(&args))
}
