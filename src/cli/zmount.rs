//! `zmount`'s command line.

use crate::cli::complete;
use clap::{Parser, Subcommand};
use clap_complete::engine::ArgValueCompleter;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "zmount",
    version,
    about = "Show stacks of layers at one mount point, a different stack to each process tree (kernel overlayfs or FUSE)",
    long_about = "Show a stack of layers (bottom first; later layers win, whiteouts hide, opaque \
        directories hide what is below) as a read-only directory tree.\n\n\
        `zmount run` shows a stack to one command and all its descendants at the daemon's \
        mount point, while other processes see their own stack, or an empty directory, at the \
        same path: one FUSE mount routes each request by the caller's process ancestry. \
        `zmount mount` makes a plain single-view mount, the fastest way to read a stack.\n\n\
        Layers are named by tag, full digest or unique digest prefix in the store (--store, \
        else $ZKIT_STORE, else $XDG_DATA_HOME/zkit, else ~/.local/share/zkit).\n\n\
        Files: the daemon keeps its socket, log and default mount point in DIR (--dir, else \
        $ZMOUNT_DIR, else /run/zmount for root, $XDG_RUNTIME_DIR/zmount for other users, \
        /tmp/zmount-UID without XDG_RUNTIME_DIR): DIR/control/socket (in a 0700 directory; \
        the daemon checks each client's credentials), DIR/control/serve.log, DIR/mnt.",
    after_help = "Examples:\n  \
        zmount run app/1.0 -- sh -c 'ls \"$ZKIT_MOUNT\"'   # starts the daemon if needed\n  \
        zmount run base/1 app/1.0 -- make -C \"$PWD\" test\n  \
        zmount status --json\n  \
        zmount mount app/1.0 /mnt/app && tar cf app.tar -C /mnt/app . && zmount umount /mnt/app\n  \
        zmount stop\n\n\
        Exit status: `run` exits with CMD's status (128+N if signal N killed it, 127 if CMD \
        was not found); others 0 on success, 1 on failure, 2 on usage errors.\n\
        Logs: --log-level or $ZMOUNT_LOG (error, warn, info, debug, trace)."
)]
pub struct Args {
    /// Directory for the socket, log and default mount point [env: ZMOUNT_DIR]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "ZMOUNT_DIR",
        hide_env = true
    )]
    pub dir: Option<PathBuf>,

    /// Log level or filter (error, warn, info, debug, trace) [env: ZMOUNT_LOG]
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run CMD with the stack of LAYERs visible to it and all its descendants
    #[command(
        long_about = "Run CMD so that it and every descendant see the stack of LAYERs \
            (bottom first) at the daemon's mount point, which CMD finds in $ZKIT_MOUNT. \
            Starts the daemon if it is not running. zmount becomes a child subreaper, so \
            descendants that daemonise stay in the view until they exit; zmount waits for \
            them, unregisters the view and exits with CMD's status. With the kernel backend \
            (--backend kernel, or auto as root on Linux 6.8+) CMD runs in a mount namespace of \
            its own with kernel overlayfs at the mount point instead, and no daemon.",
        after_help = "Examples:\n  \
            zmount run app/1.0 -- sh -c 'ls \"$ZKIT_MOUNT\"'\n  \
            zmount run --store ./store base/1 tools/2 -- bash"
    )]
    Run {
        /// Store directory [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit, ~/.local/share/zkit]
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Mount point for a daemon started on demand [default: DIR/mnt]
        #[arg(long, value_name = "M")]
        mountpoint: Option<PathBuf>,
        /// Writable view: changes go to a runtime's scratch dir in the store, which outlives
        /// the run; `zcommit --runtime NAME` makes them a layer
        #[arg(long)]
        edit: bool,
        /// With --edit: the runtime to create, or to resume (then LAYERs may be left out)
        /// [default: a fresh name, printed; removed again if the run changes nothing]
        #[arg(long, value_name = "NAME", requires = "edit",
              add = ArgValueCompleter::new(complete::runtime))]
        name: Option<String>,
        #[command(flatten)]
        backend: BackendArgs,
        /// With --name: if the runtime exists on other layers, move its changes (scratch and
        /// the layers committed from it) onto LAYERs instead of refusing; its own copies of
        /// files win over the new layers' (refused while a mount uses it)
        #[arg(long, requires_all = ["name", "layers"])]
        rebase: bool,
        /// Layers, bottom first: tag, digest or digest prefix, or an image REGISTRY/REPO:TAG
        /// (pulled into tag oci/REGISTRY/REPO+TAG when the store lacks it)
        #[arg(required_unless_present = "name", value_name = "LAYER",
              add = ArgValueCompleter::new(complete::layer))]
        layers: Vec<OsString>,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },

    /// Run the daemon: one routed FUSE mount and the control socket
    #[command(
        long_about = "Run the daemon: one FUSE mount at M and the control socket. Each request \
            is answered from the view of the caller's nearest registered ancestor; other \
            processes see an empty read-only directory. Returns once the daemon is ready and \
            keeps it running in the background (log in DIR/control/serve.log), unless \
            --foreground. A mount or socket left by a crashed daemon is cleaned up first.",
        after_help = "Examples:\n  zmount serve\n  zmount serve --mountpoint /views --foreground --log-level debug"
    )]
    Serve {
        /// Mount point [default: DIR/mnt, created if missing]
        #[arg(long, value_name = "M")]
        mountpoint: Option<PathBuf>,
        /// Stay attached; log to stderr
        #[arg(long)]
        foreground: bool,
        /// Serve read-only views only: the mount is read-only and `run --edit` is refused
        #[arg(long)]
        read_only: bool,
    },

    /// Mount one stack at MOUNTPOINT, without routing (fastest)
    #[command(
        long_about = "Mount the stack of LAYERs (bottom first) at MOUNTPOINT for every process, \
            with the kernel caching everything. Returns once the mount is ready and serves it \
            in the background, unless --foreground. `zmount umount MOUNTPOINT` ends it.",
        after_help = "Example:\n  zmount mount base/1 app/1.0 /mnt/app"
    )]
    Mount {
        /// Store directory [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit, ~/.local/share/zkit]
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Stay attached until unmounted or signalled
        #[arg(long)]
        foreground: bool,
        /// Writable view: changes go to a runtime's scratch dir in the store (as with
        /// `run --edit`); `zcommit --runtime NAME` makes them a layer
        #[arg(long)]
        edit: bool,
        /// With --edit: the runtime to create, or to resume (then LAYERs may be left out)
        /// [default: a fresh name, printed; removed again at unmount if nothing changed]
        #[arg(long, value_name = "NAME", requires = "edit",
              add = ArgValueCompleter::new(complete::runtime))]
        name: Option<String>,
        /// Plumbing (the background server of `mount --edit` without --name): remove the
        /// runtime at unmount if nothing changed
        #[arg(long, hide = true, requires = "name")]
        fresh_runtime: bool,
        #[command(flatten)]
        backend: BackendArgs,
        /// With --name: if the runtime exists on other layers, move its changes onto LAYERs
        /// (as with `run --rebase`)
        #[arg(long, requires = "name")]
        rebase: bool,
        /// Layers, bottom first, then the mount point
        #[arg(required = true, num_args = 1.., value_name = "LAYER... MOUNTPOINT",
              add = ArgValueCompleter::new(complete::layer_or_dir))]
        args: Vec<OsString>,
    },

    /// Unmount a mount made by `zmount mount`
    Umount {
        /// Detach even if files are still open in it
        #[arg(short, long)]
        lazy: bool,
        mountpoint: PathBuf,
    },

    /// Show the daemon's mount point, views, cache figures and health
    #[command(
        long_about = "Show the daemon's version, mount point, health, ancestry-cache figures \
            and views (root process, owner, age, runtime, layers). Names and paths that are \
            not plain printable text (a newline, a space, bytes that are not UTF-8) are \
            quoted as ls quotes them on a terminal ('m nt', 'a'$'\\n''b'), so every line is \
            one fact. Exits 0 when \
            the daemon answers and its mount point is healthy, 1 otherwise.",
        after_help = "Examples:\n  zmount status -q && echo up\n  zmount status --json | jq '.views[].root_pid'"
    )]
    Status {
        /// Print JSON (fields: version, pid, uptime_secs, mountpoint, views, cache_hits,
        /// cache_misses, healthy; each view's nodes are its layers' merged nodes and, for an
        /// editable view, kept_nodes the node records the daemon keeps while the kernel
        /// holds them; a path that is not UTF-8 is an array of bytes)
        #[arg(long)]
        json: bool,
        /// Print nothing; the exit status says whether the daemon is up and healthy
        #[arg(short, long, conflicts_with_all = ["json", "verbose"])]
        quiet: bool,
        /// Also print the socket and log, and each view's start time and layers, one a line
        #[arg(short, long, conflicts_with = "json")]
        verbose: bool,
    },

    /// Stop the daemon and unmount its mount point (refused while views are in use)
    #[command(
        long_about = "Stop the daemon and unmount its mount point. While views are registered \
            (a `zmount run` is still going) stop refuses, names them and exits 1: unmounting \
            under them would send their writes to the directory beneath the mount point. \
            With --force the daemon stops anyway and leaves the mount in place without a \
            server, so every later access by those processes fails (ENOTCONN); the next \
            `zmount serve` or `zmount run` replaces it, `zmount umount` removes it. A daemon \
            that is killed leaves the same dead mount behind."
    )]
    Stop {
        /// Stop even while views are in use; their processes get errors from then on
        #[arg(short, long)]
        force: bool,
    },

    /// Plumbing: show LAYERs to an existing process tree (yours) rooted at PID
    #[command(
        long_about = "Register a view of LAYERs for the process tree rooted at PID, which must \
            be yours (root may register any). Prefer `zmount run`, which also unregisters; \
            a registration ends when PID exits or with `zmount unregister PID`."
    )]
    Register {
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        pid: u32,
        #[arg(required = true, value_name = "LAYER", add = ArgValueCompleter::new(complete::layer))]
        layers: Vec<OsString>,
    },

    /// Plumbing: remove the view registered for PID
    Unregister { pid: u32 },
}

/// Which backend shows a view, and how durable its changes are.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// kernel: overlayfs over the store in a mount namespace of the run's own (Linux, root;
    /// no daemon). fuse: the PID-routed FUSE daemon. auto: kernel where this process may mount
    /// overlayfs with data-only lower layers over a store not on tmpfs, ramfs or overlayfs,
    /// else fuse. A runtime keeps the backend that wrote it [env: ZMOUNT_BACKEND]
    #[cfg(zkit_fuse)]
    #[arg(
        long,
        value_enum,
        default_value_t,
        value_name = "B",
        env = "ZMOUNT_BACKEND",
        hide_env = true
    )]
    pub backend: crate::zmount::backend::Wanted,
    /// With --edit: skip the syncs that make changes durable (overlayfs `volatile`; FUSE
    /// copy-ups unsynced; none at the end either). A crash of the machine may lose or garble
    /// them: until a commit or a run without --volatile syncs them, a reboot leaves the
    /// runtime refused until discarded
    #[arg(long, requires = "edit")]
    pub volatile: bool,
    /// Say which backend was chosen and why
    #[arg(short, long)]
    pub verbose: bool,
}

impl Args {
    /// Parse the command line; usage errors exit 2. `run` without `--` (clap would take CMD
    /// for more layers and then miss CMD) gets a line that says to use `--`.
    pub fn parse_or_exit() -> Args {
        let argv: Vec<OsString> = std::env::args_os().collect();
        match <Args as clap::Parser>::try_parse_from(&argv) {
            Ok(args) => args,
            Err(e)
                if e.kind() == clap::error::ErrorKind::MissingRequiredArgument
                    && e.to_string().contains("<CMD>")
                    && !argv.iter().any(|a| a == "--") =>
            {
                crate::errln!(
                    "zmount: run: the command must come after `--` (zmount run LAYER... -- \
                     CMD [ARG...]; without `--` every word is taken for a layer)"
                );
                std::process::exit(super::EXIT_USAGE.into());
            }
            Err(e) => e.exit(),
        }
    }

    /// Split `mount`'s positional arguments into layers and the mount point.
    pub fn mount_parts(args: &[OsString]) -> (Vec<OsString>, PathBuf) {
        let (mp, layers) = args.split_last().expect("clap requires two");
        (layers.to_vec(), PathBuf::from(mp))
    }
}

/// Dispatch a parsed command line: set up logging, run the subcommand, map the result to an
/// exit code (`run` exits with CMD's status).
#[cfg(zkit_fuse)]
pub fn run(args: Args) -> std::process::ExitCode {
    use crate::zmount::{Paths, daemon, run, single};
    use std::process::ExitCode;
    let paths = Paths::new(args.dir.as_deref());
    let level = args.log_level.clone();
    let daemonish = matches!(args.command, Command::Serve { .. } | Command::Mount { .. });
    super::log::init(
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
            backend,
            rebase,
            layers,
            command,
        } => {
            let opts = run::RunOptions {
                backend: backend.backend,
                volatile: backend.volatile,
                paths,
                store,
                mountpoint,
                layers,
                command,
                log_level: level,
                edit,
                name,
                rebase,
            };
            if backend.verbose {
                say_backend(opts.backend, opts.store.as_deref());
            }
            match crate::zmount::backend::run(&opts) {
                Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => Err(e),
            }
        }
        Command::Serve {
            mountpoint,
            foreground,
            read_only,
        } => {
            let mountpoint = mountpoint.map(|m| crate::zmount::absolute(&m));
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
            name,
            fresh_runtime,
            backend,
            rebase,
            args,
        } => {
            let (layers, mountpoint) = Args::mount_parts(&args);
            if backend.verbose {
                say_backend(backend.backend, store.as_deref());
            }
            if layers.is_empty() && (name.is_none() || rebase) {
                <Args as clap::CommandFactory>::command()
                    .error(
                        clap::error::ErrorKind::TooFewValues,
                        "give LAYER... MOUNTPOINT (--rebase needs the layers to move onto)",
                    )
                    .exit();
            }
            crate::zmount::backend::mount(&single::MountOptions {
                paths,
                backend: backend.backend,
                volatile: backend.volatile,
                store,
                layers,
                mountpoint,
                foreground,
                log_level: level,
                edit: edit.then_some(name),
                fresh: fresh_runtime,
                rebase,
            })
        }
        Command::Umount { lazy, mountpoint } => single::umount(&mountpoint, lazy).map(|()| {
            #[cfg(target_os = "linux")]
            crate::zmount::kernel_mount::wait_released(&paths, &mountpoint);
        }),
        Command::Status {
            json,
            quiet,
            verbose,
        } => status(&paths, json, quiet, verbose),
        Command::Stop { force } => daemon::stop(&paths, force),
        Command::Register { store, pid, layers } => run::register(
            &paths,
            store.as_deref(),
            None,
            &layers,
            pid,
            level.as_deref(),
            run::Editing::ReadOnly,
        )
        .map(|r| {
            crate::outln!("{}", r.mountpoint.display());
            // The registration outlives us: PID's end lets `zcommit gc` drop the pin.
            r.pin.keep();
        }),
        Command::Unregister { pid } => run::unregister(&paths, pid),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => super::report("zmount", &err),
    }
}

/// `--verbose`: which backend `auto` (or the flag) picks here, and why. A backend that cannot
/// be chosen is said once, by the command's own error.
#[cfg(zkit_fuse)]
fn say_backend(wanted: crate::zmount::backend::Wanted, store: Option<&std::path::Path>) {
    use crate::zmount::backend::{choose, store_root};
    if let Ok(c) = choose(wanted, None, store_root(store).as_deref()) {
        crate::errln!("zmount: backend {}: {}", c.backend.name(), c.reason);
    }
}

/// `zmount status`: the report (unless `quiet`), then an error when the mount is unhealthy.
#[cfg(zkit_fuse)]
fn status(
    paths: &crate::zmount::Paths,
    json: bool,
    quiet: bool,
    verbose: bool,
) -> crate::error::Result<()> {
    use crate::error::{Error, ErrorKind};
    use crate::zmount::control::{self, Reply, Request, shown};
    use std::io::Write as _;
    use std::os::unix::ffi::OsStrExt;
    let kernel = crate::zmount::backend::kernel_views(paths);
    let s = match control::call(&paths.socket, &Request::Status) {
        Ok(Reply::Status(s)) => Some(s),
        Ok(other) => {
            let what = format!("unexpected reply from the daemon: {other:?}");
            return Err(Error::new(&paths.socket, ErrorKind::Daemon(what)));
        }
        // Kernel views need no daemon: report them without one.
        Err(Error {
            kind: ErrorKind::DaemonNotRunning | ErrorKind::StaleSocket,
            ..
        }) if !kernel.is_empty() => None,
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    if json {
        let mut value = match &s {
            Some(s) => serde_json::to_value(s).expect("status serialises"),
            None => serde_json::json!({ "daemon": null }),
        };
        crate::zmount::backend::add_json(&mut value, &kernel);
        text = serde_json::to_string_pretty(&value).expect("status serialises");
        text.push('\n');
    } else if !quiet {
        text = match &s {
            Some(s) => control::render_status(s, verbose),
            None => "daemon: not running\n".into(),
        };
        text += &crate::zmount::backend::render(&kernel, verbose);
        if verbose && s.is_some() {
            text += &format!("socket: {}\n", shown(paths.socket.as_os_str().as_bytes()));
            text += &format!("log: {}\n", shown(paths.log.as_os_str().as_bytes()));
        }
    }
    let healthy = s.as_ref().is_none_or(|s| s.healthy);
    // A closed pipe (`| head -1`) is not an error.
    let mut out = std::io::stdout().lock();
    match std::io::Write::write_all(&mut out, text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Error::io("stdout", "cannot write", e));
        }
        _ => {}
    }
    match (healthy, &s) {
        (true, _) | (_, None) => Ok(()),
        (false, Some(s)) => Err(Error::new(
            &s.mountpoint,
            ErrorKind::Daemon(
                "the mount point does not answer (`zmount stop --force`, then `zmount serve`)"
                    .into(),
            ),
        )),
    }
}

#[cfg(not(zkit_fuse))]
pub fn run(_args: Args) -> std::process::ExitCode {
    crate::errln!("zmount: built without FUSE support (Linux, or macOS with --features macfuse)");
    std::process::ExitCode::from(super::EXIT_FAILURE)
}
