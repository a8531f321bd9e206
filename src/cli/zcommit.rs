//! `zcommit`'s command line, and the runs it drives: commit a tree, list a layer, list and set
//! tags, verify the store, materialise a stack of layers.

use crate::checkout;
use crate::cli;
use crate::cli::complete;
use crate::cli::lists::{self, count, print_lines};
use crate::commit::{self, Options};
use crate::error::{Error, ErrorKind, Result};
use crate::link::Mode;
use clap_complete::engine::ArgValueCompleter;

use crate::runtime;
use crate::store::{self, Store};
use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "zcommit",
    version,
    subcommand_negates_reqs = true,
    about = "Turn a directory into a content-addressed layer; list, tag, verify and materialise layers",
    long_about = "Turn DIR into a layer in the store and print the layer's digest (64 hex \
        characters, and nothing else) on standard output, so that L=$(zcommit DIR) works.\n\n\
        Every file's content becomes a blob named by its BLAKE3 digest; only blobs the store \
        lacks are written, brought in by reflink where the file system shares blocks, else by \
        copy (never by hard link: a later edit of your file would change the stored blob). \
        The layer is a manifest of every path with its kind, permission bits, modification \
        time, size and digest, link target or device numbers; owners and xattrs are not \
        recorded. --reproducible records one fixed time instead, so that the same content \
        gives the same digest wherever and whenever it is committed. FIFOs and device nodes \
        are recorded; sockets are left out with a warning, and so is the store when DIR \
        holds it (DIR cannot be the store itself).\n\n\
        Every object is written to a temporary file, synced, and renamed to its digest: a \
        crash or a concurrent commit never leaves a partial object under a real name. An \
        unchanged tree commits again in a fraction of the time: files whose size, mtime, \
        ctime and inode are unchanged since the last commit of DIR are not read again.\n\n\
        The store is --store DIR, else $ZKIT_STORE, else $XDG_DATA_HOME/zkit, else \
        ~/.local/share/zkit, created on first use. A LAYER is named by tag, full digest or \
        unique digest prefix.",
    after_help = "Examples:\n  \
        L=$(zcommit ./build)                         # commit, keep the digest\n  \
        zcommit --tag app/1.0 ./build                # and point the tag app/1.0 at it\n  \
        zcommit ls app/1.0                           # list the layer, ls -l style\n  \
        zcommit tags                                 # list tags and their layers\n  \
        zcommit tag app/stable 3fa9c0                # point a tag at a layer (by prefix)\n  \
        zcommit checkout out/ base/1.0 app/1.0       # materialise a stack, later layers win\n  \
        zcommit verify                               # rehash every blob, check every layer\n  \
        zcommit --whiteouts --tag app/1.1 scratch/   # .wh.NAME deletes NAME from lower layers\n  \
        zcommit --runtime dev --tag app/1.2          # an editable runtime's changes, as a layer\n  \
        zcommit runtimes                             # list runtimes: changed?, in use?, base\n  \
        zcommit discard dev                          # remove a runtime and its changes\n\n\
        A directory named like a subcommand is committed as ./NAME.\n\n\
        Exit status: 0 done, 1 failed (one line on stderr names the path and what to do; \
        verify and tags: the store is damaged, each damaged object named), 2 usage error."
)]
pub struct Args {
    /// The directory to commit
    #[arg(required_unless_present = "runtime", conflicts_with = "runtime")]
    pub dir: Option<PathBuf>,

    /// Commit the changes of the editable runtime NAME (`zmount run --edit --name NAME`) as a
    /// layer over its base: new and changed files, deletions as whiteouts, replaced dirs
    /// opaque. The runtime then continues on its base plus the new layer with no changes
    /// (or is removed with --discard). A runtime without changes makes no layer: zcommit
    /// says so and exits 0 with nothing on standard output; --tag then points the tag at the
    /// top layer of the runtime's stack (what it shows), and fails if the stack is empty
    #[arg(long, value_name = "NAME", add = ArgValueCompleter::new(complete::runtime))]
    pub runtime: Option<String>,

    /// With --runtime: remove the runtime after committing it
    #[arg(long, requires = "runtime")]
    pub discard: bool,

    /// With --runtime: first rebase the runtime onto these LAYERs (bottom first), as
    /// `zmount run --edit --rebase` does: its changes and the layers committed from it move
    /// over LAYERs in place of the layers it was made or last rebased on; then commit. The
    /// runtime continues on LAYERs, its own layers and the new one
    #[arg(long, value_name = "LAYER", num_args = 1.., requires = "runtime",
          conflicts_with = "discard")]
    pub rebase: Vec<OsString>,

    /// The store [default: $ZKIT_STORE, $XDG_DATA_HOME/zkit or ~/.local/share/zkit]
    #[arg(long, value_name = "DIR", global = true)]
    pub store: Option<PathBuf>,

    /// Point tag NAME (like app/1.0) at the new layer, atomically
    #[arg(short, long, value_name = "NAME")]
    pub tag: Option<String>,

    /// Threads for walking, hashing and linking [default: 4 per CPU: most of a commit is
    /// waiting for the file system]
    #[arg(short, long, value_name = "N", global = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,

    /// How files enter the store: clone-or-copy (reflink, else copy), reflink (fail unless
    /// every file can be reflinked) or copy. Hard links are refused: they would let a later
    /// edit of a file change the store
    #[arg(long, value_enum, value_name = "MODE", default_value_t = IntoStore::CloneOrCopy)]
    pub link_mode: IntoStore,

    /// Read .wh.NAME as "NAME is deleted" (a whiteout) and .wh..wh..opq as "this directory
    /// hides the lower layers' one" (opaque), as in an editable view's scratch directory
    #[arg(long)]
    pub whiteouts: bool,

    /// Read every file again, ignoring and not updating the commit cache
    #[arg(long)]
    pub no_cache: bool,

    /// Record one fixed modification time for every entry ($SOURCE_DATE_EPOCH, else
    /// 1970-01-01 00:00:01), so the same content gives the same digest wherever it is
    /// committed. Without it, a set $SOURCE_DATE_EPOCH clamps later times to it
    #[arg(long)]
    pub reproducible: bool,

    /// Print what was done on standard error (files, hashed, new blobs, bytes)
    #[arg(short, long)]
    pub verbose: bool,

    /// No progress bar and no warnings; errors are still printed
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How files enter the store: zlink's modes less the two that hard-link (`hardlink`, `auto`),
/// so that --help and completions offer only what a commit accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IntoStore {
    /// Reflink, else copy: the store never shares an inode with your file
    CloneOrCopy,
    /// Reflinks only: fail unless the store's file system can share every file's blocks
    Reflink,
    /// Copies only: the store gets its own blocks (the kernel may still share them)
    Copy,
}

impl From<IntoStore> for Mode {
    fn from(m: IntoStore) -> Mode {
        match m {
            IntoStore::CloneOrCopy => Mode::CloneOrCopy,
            IntoStore::Reflink => Mode::Reflink,
            IntoStore::Copy => Mode::Copy,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List a layer's entries, ls -l style: kind and mode, size, blob digest, path (-> target);
    /// FIFOs show as `p`, devices as `c`/`b` with their numbers for a size, whiteouts as
    /// `w---------`; opaque dirs end in `(opaque)`. Names are quoted as `ls` quotes them on a
    /// terminal ('two words', 'new'$'\n''line'), so every entry is one line
    Ls {
        /// End each entry with a NUL instead of a newline, and print names as their bytes,
        /// unquoted (for xargs -0, read -d '')
        #[arg(short = 'z', long = "null", conflicts_with = "json")]
        null: bool,
        #[command(flatten)]
        format: lists::Format,
        /// Tag, full digest or unique digest prefix
        #[arg(add = ArgValueCompleter::new(complete::layer))]
        layer: OsString,
    },
    /// List tags and the layers they point at (a stack tag's layers joined by commas, bottom
    /// first, as `diff` takes them); a damaged tag is named on stderr (exit 1) and the others
    /// are still listed
    Tags {
        #[command(flatten)]
        format: lists::Format,
    },
    /// Point tag NAME at LAYER, atomically; several LAYERs (or stack tags) make NAME a stack
    /// tag, which `zmount run NAME` and `zcommit checkout DEST NAME` show whole
    Tag {
        #[arg(add = ArgValueCompleter::new(complete::tag))]
        name: String,
        #[arg(required = true, value_name = "LAYER", add = ArgValueCompleter::new(complete::layer))]
        layers: Vec<OsString>,
    },
    /// Remove tags, each atomically (the layers stay until `zcommit gc`). A NAME with `*` or
    /// `?` is a pattern, matched one `/`-separated part at a time (`app/*`, quoted from the
    /// shell); exit 1 if a NAME names no tag
    Untag {
        #[arg(required = true, value_name = "NAME", add = ArgValueCompleter::new(complete::tag))]
        names: Vec<String>,
    },
    /// List every layer's digest
    Layers {
        #[command(flatten)]
        format: lists::Format,
    },
    /// What changed between two stacks A and B (each LAYER or LAYER,LAYER,... bottom first),
    /// or what `zcommit --runtime NAME` would record: a line per path, `A` added, `D`
    /// deleted, `T` kind changed, `M` content, mode, link target or device changed (with -v
    /// also `m`: only the time). Manifests are compared, never file contents
    Diff(crate::cli::diff::Args),
    /// Remove the layers, blobs, commit caches and per-layer data that no tag, no runtime,
    /// no live view (`zmount run`, `zmount mount`) and no --keep reaches; a summary of what
    /// was freed on stderr. Safe beside commits, checkouts, mounts and other gcs: they hold
    /// the store's lock shared, the sweep exclusively, and what appears after gc starts stays
    Gc(crate::cli::gc::Args),
    /// What layers cost: entries, bytes of the distinct blobs each names, bytes unique to it
    /// (no other layer in the store names them: removing it frees them) and shared. Without
    /// LAYER: every tag, then the store's blobs, layers and what `zcommit gc` would free
    Du(crate::cli::du::Args),
    /// Rehash every blob, check every layer and tag; exit 1 naming each damaged object
    Verify {
        /// Remove damaged blobs and layers (content that does not hash to its name), so that
        /// no reader is ever given them; committing or importing the same content again
        /// restores them. Exit status is still 1 when anything was damaged
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        format: lists::Format,
    },
    /// List editable runtimes: name, `changed` or `clean`, `in-use` or `idle`, base layers
    /// (their digests' first 12 characters; whole with -v)
    Runtimes {
        /// Print the base layers' full digests
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        format: lists::Format,
    },
    /// Remove an editable runtime and its uncommitted changes (refused while in use)
    Discard {
        #[arg(add = ArgValueCompleter::new(complete::runtime))]
        name: String,
    },
    /// Write a stack as an OCI image layout: one image layer per zkit layer, deterministic
    /// tar bytes; prints the manifest's digest
    Export(crate::cli::oci::ExportArgs),
    /// Import an OCI image layout or a docker archive as a stack, one layer per image layer;
    /// every blob is checked against its digest and a hostile archive changes nothing;
    /// prints the layers' digests, bottom first
    Import(crate::cli::oci::ImportArgs),
    /// Push a stack to an OCI registry as an image; blobs the registry has are not sent;
    /// prints the manifest's digest
    Push(crate::cli::oci::PushArgs),
    /// Pull an image from an OCI registry as a stack; layers the store has are not
    /// transferred; prints the layers' digests, bottom first
    Pull(crate::cli::oci::PullArgs),
    /// Materialise a stack of layers (bottom first; later layers win, whiteouts and opaque
    /// dirs hide lower paths) into DEST, which must not exist or be empty
    Checkout {
        /// How files come out of the store: clone-or-copy never shares the store's inodes;
        /// hardlink (or auto) does, with the store's read-only mode, and an edit through such a
        /// link damages the store
        #[arg(long, value_enum, value_name = "MODE", default_value_t = Mode::CloneOrCopy)]
        link_mode: Mode,
        /// Hash every file checked out against its digest. Copies are always checked (they
        /// are read anyway); this also reads the reflinked and hard-linked ones
        #[arg(long)]
        verify: bool,
        dest: PathBuf,
        #[arg(required = true, add = ArgValueCompleter::new(complete::layer))]
        layers: Vec<OsString>,
    },
}

/// Parse-free entry point for the binary: do what `args` say and return the exit code.
pub fn run(args: &Args) -> ExitCode {
    let commit_only = args.tag.is_some()
        || args.runtime.is_some()
        || args.whiteouts
        || args.no_cache
        || args.verbose
        || args.link_mode != IntoStore::CloneOrCopy;
    if args.discard && args.runtime.is_none() {
        Args::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--discard removes a runtime after committing it: it needs --runtime NAME",
            )
            .exit();
    }
    if args.command.is_some() && commit_only {
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--tag, --runtime, --link-mode, --whiteouts, --no-cache and -v are for \
                 committing a DIR or a runtime, not for a subcommand",
            )
            .exit();
    }
    if !args.rebase.is_empty() && args.runtime.is_none() {
        Args::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--rebase moves a runtime onto other layers: it needs --runtime NAME",
            )
            .exit();
    }
    let outcome = store::root_from(args.store.as_deref()).and_then(|root| {
        let store = Store::open(&root)?;
        if let Some(mode) = store.exposed()
            && !args.quiet
        {
            let mut line = b"zcommit: ".to_vec();
            line.extend_from_slice(root.as_os_str().as_bytes());
            line.extend_from_slice(
                format!(
                    ": warning: the store is mode {mode:04o}, so other users can read every \
                     blob in it (chmod 700 it to keep it private)\n"
                )
                .as_bytes(),
            );
            let _ = std::io::stderr().write_all(&line);
        }
        // Writers hold the store lock shared from their first look at the store to their last
        // name (see `store::lock`); readers of blobs too, so that theirs stay.
        let _lock = match &args.command {
            None | Some(Command::Import(_) | Command::Pull(_)) => Some(store.write_lock()?),
            Some(Command::Checkout { .. } | Command::Export(_) | Command::Push(_)) => {
                store.read_lock()?
            }
            Some(_) => None,
        };
        match &args.command {
            None if args.runtime.is_some() => commit_runtime(&store, args),
            None => commit_dir(&store, args),
            Some(cmd) => subcommand(&store, args, cmd),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => cli::report("zcommit", &e),
    }
}

fn jobs(args: &Args) -> usize {
    args.jobs.map_or_else(commit::default_jobs, |n| n as usize)
}

fn commit_dir(store: &Store, args: &Args) -> Result<ExitCode> {
    let dir = args.dir.as_deref().expect("clap requires DIR");
    let opts = Options {
        jobs: jobs(args),
        link_mode: args.link_mode.into(),
        markers: args.whiteouts,
        cache: !args.no_cache,
        progress: !args.quiet,
        times: commit::Times::choose(
            args.reproducible,
            std::env::var_os("SOURCE_DATE_EPOCH").as_deref(),
        )?,
        overlay: None,
    };
    // Before the work, not after it.
    if let Some(tag) = &args.tag {
        crate::store::check_tag(tag)?;
    }
    let outcome = commit::commit(store, dir, &opts)?;
    if let Some(tag) = &args.tag {
        store.set_tag(tag, &outcome.digest)?;
    }
    warn_about(dir, &outcome, args.quiet);
    if args.verbose {
        crate::errln!(
            "zcommit: {}, {}, {} hashed, {} ({}, {} reflinked)",
            count(outcome.entries, "entry"),
            count(outcome.files, "file"),
            outcome.hashed,
            count(outcome.new_blobs, "new blob"),
            count(outcome.new_bytes as usize, "byte"),
            outcome.reflinked
        );
    }
    print_lines(&[outcome.digest.to_hex().into_bytes()])
}

/// A damaged blob replaced is worth a line even with -q: the store had been serving it.
/// One warning line per path a commit healed or left out, `dir` naming where they are. A
/// healed blob is said even with `-q`: the store was damaged.
fn warn_about(dir: &Path, outcome: &commit::Outcome, quiet: bool) {
    let warn = |rel: &Path, what: &[u8]| {
        let mut line = b"zcommit: ".to_vec();
        line.extend_from_slice(dir.join(rel).as_os_str().as_bytes());
        line.extend_from_slice(b": warning: ");
        line.extend_from_slice(what);
        line.push(b'\n');
        let _ = std::io::stderr().write_all(&line);
    };
    for rel in &outcome.healed {
        warn(
            rel,
            b"its blob in the store was damaged; replaced from this file",
        );
    }
    if quiet {
        return;
    }
    for rel in &outcome.store_left_out {
        warn(rel, b"this is the store; left out of the layer");
    }
    for rel in &outcome.skipped {
        warn(rel, b"a socket; left out (a layer cannot hold one)");
    }
}

fn commit_runtime(store: &Store, args: &Args) -> Result<ExitCode> {
    let name = args.runtime.as_deref().expect("checked by the caller");
    let opts = Options {
        jobs: jobs(args),
        link_mode: args.link_mode.into(),
        progress: !args.quiet,
        times: commit::Times::choose(
            args.reproducible,
            std::env::var_os("SOURCE_DATE_EPOCH").as_deref(),
        )?,
        ..Options::default()
    };
    let after = match args.discard {
        true => runtime::After::Discard,
        false => runtime::After::Continue,
    };
    // A stack tag gives all of its layers, as wherever a stack is taken.
    let onto = store.resolve_stacks(&args.rebase)?;
    let onto = (!args.rebase.is_empty()).then_some(onto.as_slice());
    match runtime::commit(store, name, &opts, args.tag.as_deref(), after, onto)? {
        runtime::Committed::Unchanged { tagged } => {
            if !args.quiet {
                match (tagged, &args.tag) {
                    (Some(top), Some(tag)) => crate::errln!(
                        "zcommit: runtime {name}: no changes, no layer made; tag {tag} points \
                         at its top layer {top}"
                    ),
                    _ => crate::errln!("zcommit: runtime {name}: no changes, no layer made"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        runtime::Committed::Layer(outcome) => {
            warn_about(Path::new(&format!("runtime {name}")), &outcome, args.quiet);
            if args.verbose {
                crate::errln!(
                    "zcommit: runtime {name}: {}, {}, {} ({}, {} reflinked)",
                    count(outcome.entries, "entry"),
                    count(outcome.files, "file"),
                    count(outcome.new_blobs, "new blob"),
                    count(outcome.new_bytes as usize, "byte"),
                    outcome.reflinked
                );
            }
            print_lines(&[outcome.digest.to_hex().into_bytes()])
        }
    }
}

fn subcommand(store: &Store, args: &Args, cmd: &Command) -> Result<ExitCode> {
    match cmd {
        Command::Ls {
            layer,
            null,
            format,
        } => lists::ls(store, layer, *null, *format),
        Command::Tags { format } => lists::tags(store, *format),
        Command::Tag { name, layers } => {
            store.set_stack_tag(name, &store.resolve_stacks(layers)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Layers { format } => lists::layers(store, *format),
        Command::Untag { names } => untag(store, names),
        Command::Diff(diff) => crate::cli::diff::run(store, diff, jobs(args)),
        Command::Gc(gc) => crate::cli::gc::run(store, gc, jobs(args), args.quiet),
        Command::Du(du) => crate::cli::du::run(store, du),
        Command::Verify { repair, format } => {
            let report = store.verify(jobs(args), *repair)?;
            // Meta trees (the kernel backend's): checked against their layers, removed
            // when damaged (the next mount builds them again).
            let meta = crate::overlay::meta::verify(store, *repair)?;
            lists::verify(store, &report, &meta, args.quiet, *format)
        }
        Command::Runtimes { verbose, format } => lists::runtimes(store, *verbose, *format),
        Command::Discard { name } => {
            runtime::discard(store, name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(a) => crate::cli::oci::export(store, a, args.quiet),
        Command::Import(a) => crate::cli::oci::import(store, a, args.quiet),
        Command::Push(a) => crate::cli::oci::push(store, a, args.quiet),
        Command::Pull(a) => crate::cli::oci::pull(store, a, args.quiet),
        Command::Checkout {
            link_mode,
            verify,
            dest,
            layers,
        } => {
            let manifests = store
                .resolve_stacks(layers)?
                .into_iter()
                .map(|d| Ok((d, store.load_layer(&d)?)))
                .collect::<Result<Vec<_>>>()?;
            let opts = checkout::Options {
                mode: *link_mode,
                jobs: jobs(args),
                verify: *verify,
            };
            let outcome = checkout::checkout(store, &manifests, dest, &opts)?;
            if !args.quiet {
                let [hard, reflink, copy] = outcome.tiers;
                crate::errln!(
                    "zcommit: {}: {}, {} ({hard} hardlink, {reflink} reflink, {copy} copy; \
                     {} verified), {}",
                    dest.display(),
                    count(outcome.dirs, "dir"),
                    count(outcome.files, "file"),
                    outcome.verified,
                    count(outcome.symlinks, "symlink"),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Remove each named tag, or every tag a pattern matches; one line on stderr for each NAME
/// that names none, and exit 1 then.
fn untag(store: &Store, names: &[String]) -> Result<ExitCode> {
    let mut missing = false;
    for name in names {
        let removed = if name.contains(['*', '?']) {
            let tags = store.tags()?;
            let mut any = false;
            for (tag, _) in tags
                .sound
                .iter()
                .filter(|(t, _)| store::tag_matches(name, t))
            {
                any |= store.remove_tag(tag)?;
            }
            any
        } else {
            store.remove_tag(name)?
        };
        if !removed {
            missing = true;
            cli::report(
                "zcommit",
                &Error::new(
                    name,
                    ErrorKind::Invalid("no such tag (zcommit tags lists them)".into()),
                ),
            );
        }
    }
    Ok(match missing {
        true => ExitCode::from(cli::EXIT_FAILURE),
        false => ExitCode::SUCCESS,
    })
}
