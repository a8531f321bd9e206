use clap::{CommandFactory, Parser};
use std::process::ExitCode;
use zkit::atomic;
use zkit::cli::zlink::{self, Args};

fn main() -> ExitCode {
    zkit::cli::complete::handle("zlink", Args::command);
    let args = Args::parse();
    atomic::remove_temporaries_on_signals();
    zkit::cli::finish("zlink", zlink::run(&args))
}
