use clap::Parser;
use std::process::ExitCode;
use zkit::atomic;
use zkit::cli::{self, zwrite::Args};

fn main() -> ExitCode {
    let args = Args::parse();
    atomic::remove_temporaries_on_signals();
    match atomic::replace(&args.file, args.source(), &args.options()) {
        Ok(outcome) => {
            if !args.quiet {
                for what in &outcome.not_kept {
                    eprintln!(
                        "zwrite: {}: warning: could not keep {what}",
                        outcome.path.display()
                    );
                }
            }
            if args.verbose {
                let did = match (outcome.changed, outcome.created) {
                    (false, _) => "unchanged",
                    (true, true) => "created",
                    (true, false) => "replaced",
                };
                eprintln!(
                    "zwrite: {}: {did} ({} bytes)",
                    outcome.path.display(),
                    outcome.bytes
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => cli::report("zwrite", &err),
    }
}
