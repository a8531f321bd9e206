use clap::Parser;
use std::process::ExitCode;
use zkit::cli::{self, zmount::Args};

#[cfg(zkit_fuse)]
fn main() -> ExitCode {
    use zkit::cli::zmount::Command;
    use zkit::zmount::{Paths, control, daemon, run, single};
    let args = Args::parse();
    let paths = Paths::new(args.dir.as_deref());
    let level = args.log_level.clone();
    let daemonish = matches!(args.command, Command::Serve { .. } | Command::Mount { .. });
    cli::log::init(
        level.as_deref(),
        "ZMOUNT_LOG",
        if daemonish {
            "info,fuser=error"
        } else {
            "warn"
        },
    );
    let result = match args.command {
        Command::Run {
            store,
            mountpoint,
            edit,
            name,
            layers,
            command,
        } => {
            let opts = run::RunOptions {
                paths,
                store,
                mountpoint,
                layers,
                command,
                log_level: level,
                edit,
                name,
            };
            match run::run(&opts) {
                Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => Err(e),
            }
        }
        Command::Serve {
            mountpoint,
            foreground,
            read_only,
        } => {
            let mountpoint = mountpoint.map(|m| zkit::zmount::absolute(&m));
            if foreground {
                daemon::serve(daemon::ServeOptions {
                    paths,
                    mountpoint,
                    read_only,
                })
            } else {
                daemon::start_background(&paths, mountpoint.as_deref(), level.as_deref(), read_only)
                    .map(drop)
            }
        }
        Command::Mount {
            store,
            foreground,
            edit,
            args,
        } => {
            let (layers, mountpoint) = Args::mount_parts(&args);
            if layers.is_empty() && edit.is_none() {
                <Args as clap::CommandFactory>::command()
                    .error(
                        clap::error::ErrorKind::TooFewValues,
                        "give LAYER... MOUNTPOINT",
                    )
                    .exit();
            }
            single::mount(&single::MountOptions {
                store,
                layers,
                mountpoint,
                foreground,
                log_level: level,
                edit,
            })
        }
        Command::Umount { lazy, mountpoint } => single::umount(&mountpoint, lazy),
        Command::Status { json } => {
            control::call(&paths.socket, &control::Request::Status).map(|r| {
                if let control::Reply::Status(s) = r {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&s).expect("status serialises")
                        );
                    } else {
                        print!("{}", control::render_status(&s));
                    }
                }
            })
        }
        Command::Stop => daemon::stop(&paths),
        Command::Register { store, pid, layers } => run::register(
            &paths,
            store.as_deref(),
            None,
            &layers,
            pid,
            level.as_deref(),
            run::Editing::ReadOnly,
        )
        .map(|m| println!("{}", m.display())),
        Command::Unregister { pid } => run::unregister(&paths, pid),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => cli::report("zmount", &err),
    }
}

#[cfg(not(zkit_fuse))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("zmount: built without FUSE support (Linux, or macOS with --features macfuse)");
    ExitCode::from(cli::EXIT_FAILURE)
}
