//! `zcommit`'s command line, and the runs it drives: commit a tree, list a layer, list and set
//! tags, verify the store, materialise a stack of layers.

use crate::checkout;
use crate::cli;
use crate::commit::{self, Options};
use crate::error::{Error, ErrorKind, Result};
use crate::link::Mode;
use crate::manifest::{Kind, Manifest};
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
        The layer is a manifest of every path with its kind, permission bits, size and digest \
        or link target; owners, times and xattrs are not recorded, so the same tree always \
        gives the same digest. Sockets, FIFOs and devices are left out with a warning.\n\n\
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
        verify: the store is damaged, each damaged object named), 2 usage error."
)]
pub struct Args {
    /// The directory to commit
    #[arg(required_unless_present = "runtime", conflicts_with = "runtime")]
    pub dir: Option<PathBuf>,

    /// Commit the changes of the editable runtime NAME (`zmount run --edit --name NAME`) as a
    /// layer over its base: new and changed files, deletions as whiteouts, replaced dirs
    /// opaque. The runtime then continues on its base plus the new layer with no changes
    /// (or is removed with --discard). A runtime without changes makes no layer: zcommit
    /// says so and exits 0 with nothing on standard output
    #[arg(long, value_name = "NAME")]
    pub runtime: Option<String>,

    /// With --runtime: remove the runtime after committing it
    #[arg(long, requires = "runtime")]
    pub discard: bool,

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
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Mode::CloneOrCopy)]
    pub link_mode: Mode,

    /// Read .wh.NAME as "NAME is deleted" (a whiteout) and .wh..wh..opq as "this directory
    /// hides the lower layers' one" (opaque), as in an editable view's scratch directory
    #[arg(long)]
    pub whiteouts: bool,

    /// Read every file again, ignoring and not updating the commit cache
    #[arg(long)]
    pub no_cache: bool,

    /// Print what was done on standard error (files, hashed, new blobs, bytes)
    #[arg(short, long)]
    pub verbose: bool,

    /// No progress bar and no warnings; errors are still printed
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List a layer's entries, ls -l style: kind and mode, size, blob digest, path (-> target);
    /// whiteouts show as `w---------`, opaque dirs end in `(opaque)`
    Ls {
        /// Tag, full digest or unique digest prefix
        layer: OsString,
    },
    /// List tags and the layers they point at
    Tags,
    /// Point tag NAME at LAYER, atomically
    Tag { name: String, layer: OsString },
    /// List every layer's digest
    Layers,
    /// Rehash every blob, check every layer and tag; exit 1 naming each damaged object
    Verify,
    /// List editable runtimes: name, `changed` or `clean`, `in-use` or `idle`, base layers
    Runtimes,
    /// Remove an editable runtime and its uncommitted changes (refused while in use)
    Discard { name: String },
    /// Materialise a stack of layers (bottom first; later layers win, whiteouts and opaque
    /// dirs hide lower paths) into DEST, which must not exist or be empty
    Checkout {
        /// How files come out of the store: clone-or-copy never shares the store's inodes;
        /// hardlink (or auto) does, with the store's read-only mode, and an edit through such a
        /// link damages the store
        #[arg(long, value_enum, value_name = "MODE", default_value_t = Mode::CloneOrCopy)]
        link_mode: Mode,
        dest: PathBuf,
        #[arg(required = true)]
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
        || args.link_mode != Mode::CloneOrCopy;
    if args.command.is_some() && commit_only {
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--tag, --runtime, --link-mode, --whiteouts, --no-cache and -v are for \
                 committing a DIR or a runtime, not for a subcommand",
            )
            .exit();
    }
    let outcome = store::root_from(args.store.as_deref()).and_then(|root| {
        let store = Store::open(&root)?;
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
        link_mode: args.link_mode,
        markers: args.whiteouts,
        cache: !args.no_cache,
        progress: !args.quiet,
    };
    if let Some(tag) = &args.tag
        && !store::valid_tag(tag)
    {
        // Before the work, not after it.
        return Err(Error::new(
            tag,
            ErrorKind::Invalid("invalid tag name (letters, digits, `._+-@=`, `/`)".into()),
        ));
    }
    let outcome = commit::commit(store, dir, &opts)?;
    if let Some(tag) = &args.tag {
        store.set_tag(tag, &outcome.digest)?;
    }
    if !args.quiet {
        for path in &outcome.skipped {
            let mut line = b"zcommit: ".to_vec();
            line.extend_from_slice(dir.join(path).as_os_str().as_bytes());
            line.extend_from_slice(b": warning: not a file, directory or symlink; left out\n");
            let _ = std::io::stderr().write_all(&line);
        }
    }
    if args.verbose {
        crate::errln!(
            "zcommit: {} entries, {} files, {} hashed, {} new blobs ({} bytes, {} reflinked)",
            outcome.entries,
            outcome.files,
            outcome.hashed,
            outcome.new_blobs,
            outcome.new_bytes,
            outcome.reflinked
        );
    }
    print_lines(&[outcome.digest.to_hex().into_bytes()])
}

fn commit_runtime(store: &Store, args: &Args) -> Result<ExitCode> {
    let name = args.runtime.as_deref().expect("checked by the caller");
    let opts = Options {
        jobs: jobs(args),
        link_mode: args.link_mode,
        progress: !args.quiet,
        ..Options::default()
    };
    let after = match args.discard {
        true => runtime::After::Discard,
        false => runtime::After::Continue,
    };
    match runtime::commit(store, name, &opts, args.tag.as_deref(), after)? {
        runtime::Committed::Unchanged => {
            if !args.quiet {
                crate::errln!("zcommit: runtime {name}: no changes, no layer made");
            }
            Ok(ExitCode::SUCCESS)
        }
        runtime::Committed::Layer(outcome) => {
            if args.verbose {
                crate::errln!(
                    "zcommit: runtime {name}: {} entries, {} files, {} new blobs ({} bytes, {} reflinked)",
                    outcome.entries,
                    outcome.files,
                    outcome.new_blobs,
                    outcome.new_bytes,
                    outcome.reflinked
                );
            }
            print_lines(&[outcome.digest.to_hex().into_bytes()])
        }
    }
}

fn subcommand(store: &Store, args: &Args, cmd: &Command) -> Result<ExitCode> {
    match cmd {
        Command::Ls { layer } => {
            let (_, manifest) = store.open_layer(layer)?;
            print_lines(&listing(&manifest))
        }
        Command::Tags => {
            let tags = store.tags()?;
            print_lines(
                &tags
                    .iter()
                    .map(|(name, d)| format!("{d}  {name}").into_bytes())
                    .collect::<Vec<_>>(),
            )
        }
        Command::Tag { name, layer } => {
            let digest = store.resolve(layer)?;
            store.set_tag(name, &digest)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Layers => print_lines(
            &store
                .layers()?
                .iter()
                .map(|d| d.to_hex().into_bytes())
                .collect::<Vec<_>>(),
        ),
        Command::Verify => {
            let report = store.verify(jobs(args))?;
            for problem in &report.problems {
                cli::report("zcommit", problem);
            }
            let summary = format!(
                "{} blobs, {} layers, {} tags: {}",
                report.blobs,
                report.layers,
                report.tags,
                match report.problems.len() {
                    0 => "all good".to_string(),
                    n => format!("{n} damaged"),
                }
            );
            print_lines(&[summary.into_bytes()])?;
            Ok(match report.problems.is_empty() {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(cli::EXIT_FAILURE),
            })
        }
        Command::Runtimes => print_lines(
            &runtime::list(store)?
                .iter()
                .map(|rt| {
                    let base: Vec<String> = rt
                        .base
                        .iter()
                        .map(|d| d.to_hex()[..12].to_string())
                        .collect();
                    format!(
                        "{}  {}  {}  {}",
                        rt.name,
                        if rt.changed { "changed" } else { "clean" },
                        if rt.in_use { "in-use" } else { "idle" },
                        base.join(" ")
                    )
                    .into_bytes()
                })
                .collect::<Vec<_>>(),
        ),
        Command::Discard { name } => {
            runtime::discard(store, name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Checkout {
            link_mode,
            dest,
            layers,
        } => {
            let manifests = layers
                .iter()
                .map(|l| store.open_layer(l).map(|(_, m)| m))
                .collect::<Result<Vec<_>>>()?;
            let outcome = checkout::checkout(store, &manifests, dest, *link_mode, jobs(args))?;
            if !args.quiet {
                let [hard, reflink, copy] = outcome.tiers;
                crate::errln!(
                    "zcommit: {}: {} dirs, {} files ({hard} hardlink, {reflink} reflink, \
                     {copy} copy), {} symlinks",
                    dest.display(),
                    outcome.dirs,
                    outcome.files,
                    outcome.symlinks
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line per entry, depth first: `drwxr-xr-x  SIZE  DIGEST  PATH`. Paths are written as
/// their bytes.
pub fn listing(m: &Manifest) -> Vec<Vec<u8>> {
    m.walk()
        .map(|(path, i)| {
            let e = m.entry(i);
            let (kind, size, digest) = match e.kind {
                Kind::Dir { .. } => ('d', "-".to_string(), "-".to_string()),
                Kind::File { size, digest } => ('-', size.to_string(), digest.to_hex()),
                Kind::Symlink { .. } => ('l', "-".to_string(), "-".to_string()),
                Kind::Whiteout => ('w', "-".to_string(), "-".to_string()),
            };
            let perms = match e.kind {
                Kind::Whiteout => "---------".to_string(),
                _ => mode_string(e.mode),
            };
            let mut line = format!("{kind}{perms} {size:>12} {digest:<64} ").into_bytes();
            line.extend_from_slice(path.as_os_str().as_bytes());
            if let Some(target) = m.target(i) {
                line.extend_from_slice(b" -> ");
                line.extend_from_slice(target.as_bytes());
            }
            if let Kind::Dir { opaque: true, .. } = e.kind {
                line.extend_from_slice(b" (opaque)");
            }
            line
        })
        .collect()
}

/// `rwsr-xr-t` from permission bits, as ls prints them.
fn mode_string(mode: u32) -> String {
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let special = |x: u32, s: u32, lower: char, upper: char| match (mode & x != 0, mode & s != 0) {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// Write lines to stdout; a closed pipe (`| head`) is not an error.
fn print_lines(lines: &[Vec<u8>]) -> Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = lines
        .iter()
        .try_for_each(|l| out.write_all(l).and_then(|()| out.write_all(b"\n")))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Error::io(Path::new("stdout"), "cannot write", e)),
    }
}
