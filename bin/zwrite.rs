use clap::{CommandFactory, Parser};
use std::process::ExitCode;
use zkit::atomic;
use zkit::cli::zwrite::{self, Args};

fn main() -> ExitCode {
    zkit::cli::complete::handle("zwrite", Args::command);
    let args = Args::parse();
    atomic::remove_temporaries_on_signals();
    zkit::cli::finish("zwrite", zwrite::run(&args))
}
