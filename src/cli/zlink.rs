//! `zlink`'s command line, and the run it drives: sources paired with destinations, the
//! tree mirror, `-v` lines, a progress line on a terminal, the summary.

use crate::cli;
use crate::error::{Error, ErrorKind};
use crate::link::{Bytes, Count, Linker, Mode, Placed, Stats, Summary, tree};
use clap::{CommandFactory, Parser};
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "zlink",
    version,
    override_usage = "zlink [OPTIONS] SOURCE DEST\n       zlink [OPTIONS] SOURCE... DIR",
    about = "Link files and trees by the cheapest means that works: hard link, reflink, copy",
    long_about = "Give DEST the content of SOURCE by the cheapest means that works, per file: a \
        hard link (same inode, O(1)), else a reflink (a new inode sharing data blocks \
        copy-on-write, on XFS, btrfs, bcachefs), else a copy.\n\n\
        A tier gives way for one file on EPERM (immutable or append-only sources, \
        protected_hardlinks, macOS signed bundles), EMLINK (too many links) and \
        EOPNOTSUPP/EINVAL (no reflinks here). EXDEV (another file system) is learnt once per \
        pair of devices, so a cross-device run pays one failing link(), not one per file. \
        ENOENT, EACCES, ENOSPC and EIO are errors, never reasons to fall back.\n\n\
        With one SOURCE, DEST is the name to create, or an existing directory to create it in. \
        With several SOURCEs, DEST must be a directory. An existing DEST that already is \
        SOURCE's inode is fine (re-runs are idempotent; not in reflink, copy and clone-or-copy, \
        which promise a separate inode); anything else there is an error unless -f replaces it \
        atomically (link or copy to a temporary name beside it, then rename).\n\n\
        With -r, directories are recreated with their modes and times, symlinks are recreated \
        (never followed; hard-linked where hard links are allowed, as cp -al does) and regular \
        files are linked in parallel. FIFOs, sockets and devices are refused. A reflink or copy \
        keeps the mode, the times, the extended attributes (ACLs, security labels) and, as \
        root, the owner.\n\n\
        A summary goes to standard error: files per tier, bytes copied, time.",
    after_help = "Examples:\n  \
        zlink big.iso /srv/mirror/big.iso           # hard link, else reflink, else copy\n  \
        zlink -r node_modules /ci/cache/nm          # mirror a tree, all CPUs\n  \
        zlink -r -m clone-or-copy layer/ work/      # never share an inode: safe to edit work/\n  \
        zlink -r -m reflink src/ /xfs/snapshot      # fail unless every file can be reflinked\n  \
        zlink -f new.conf /etc/app.conf             # replace DEST atomically\n  \
        zlink -r -q --json a b | jq .copied         # the summary as JSON on stdout\n\n\
        Modes: auto (hardlink, reflink, copy), hardlink, reflink, copy, clone-or-copy \
        (reflink, copy). A strict mode fails on the first file its tier cannot serve, naming \
        the errno and the mode that would work.\n\n\
        Exit status: 0 done (also when everything was already linked), 1 failed (one line on \
        stderr names the path, the errno and what to do; what was linked before stays), \
        2 usage error."
)]
pub struct Args {
    /// SOURCE... DEST: the files or trees to link, and where
    #[arg(value_name = "PATH", num_args = 2.., required = true)]
    pub paths: Vec<PathBuf>,

    /// Mirror directory trees: dirs recreated, symlinks recreated, files linked in parallel
    #[arg(short, long)]
    pub recursive: bool,

    /// Which tiers may be used
    #[arg(short, long, value_enum, default_value_t = Mode::Auto)]
    pub mode: Mode,

    /// Replace an existing, different DEST atomically instead of failing
    #[arg(short, long)]
    pub force: bool,

    /// Treat DEST as the name to create even when it is a directory (re-runs of -r stay
    /// idempotent instead of nesting SOURCE inside DEST)
    #[arg(short = 'T', long)]
    pub no_target_directory: bool,

    /// Worker threads for -r [default: all CPUs]
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,

    /// Print each file with the tier that served it, on stderr
    #[arg(short, long)]
    pub verbose: bool,

    /// No summary line and no progress; errors are still printed
    #[arg(short, long)]
    pub quiet: bool,

    /// Print the summary as one JSON object on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs slower than this get a progress line (when stderr is a terminal).
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Parse-free entry point for the binary: do what `args` say and return the exit code.
pub fn run(args: &Args) -> ExitCode {
    let (dest, sources) = args.paths.split_last().expect("clap requires two paths");
    let pairs = match pairs(sources, dest, args.no_target_directory) {
        Ok(pairs) => pairs,
        Err(Pairing::Usage(msg)) => Args::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit(),
        Err(Pairing::Failed(e)) => return cli::report("zlink", &e),
    };
    let linker = Linker::new(args.mode).replace_existing(args.force);
    let stats = Stats::default();
    let print_file = |dst: &Path, placed: &Placed| {
        let tier = placed.tier.map_or("same", |t| t.name());
        let mut line = format!("{tier:<8} ").into_bytes();
        line.extend_from_slice(dst.as_os_str().as_bytes());
        line.push(b'\n');
        let _ = std::io::stderr().lock().write_all(&line);
    };
    let opts = tree::Options {
        recursive: args.recursive,
        jobs: args
            .jobs
            .map_or_else(|| tree::Options::default().jobs, |n| n as usize),
        on_file: if args.verbose {
            Some(&print_file)
        } else {
            None
        },
    };
    let start = Instant::now();
    let done = AtomicBool::new(false);
    let show_progress = !args.quiet && !args.verbose && std::io::stderr().is_terminal();
    let result = std::thread::scope(|scope| {
        // Without a thread for it (the system may refuse one), no progress line.
        let shower = show_progress
            .then(|| {
                std::thread::Builder::new().spawn_scoped(scope, || progress(&stats, start, &done))
            })
            .and_then(Result::ok);
        let result = pairs
            .iter()
            .try_for_each(|(src, dst)| tree::mirror(&linker, src, dst, &opts, &stats));
        done.store(true, Relaxed);
        if let Some(shower) = shower {
            shower.thread().unpark();
        }
        result
    });
    let summary = stats.summary(start.elapsed());
    // After a failure the summary tells how far the run got; with nothing done it is noise.
    let did_something = summary.files() + summary.dirs + summary.symlinks > 0;
    if !args.quiet && (result.is_ok() || did_something) {
        crate::errln!("zlink: {summary}");
    }
    if args.json {
        crate::outln!("{}", summary.to_json());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::report("zlink", &e),
    }
}

enum Pairing {
    Usage(String),
    Failed(Error),
}

/// `SOURCE DEST` or `SOURCE... DIR` into (source, destination) pairs, the way cp does.
fn pairs(
    sources: &[PathBuf],
    dest: &Path,
    no_target_dir: bool,
) -> Result<Vec<(PathBuf, PathBuf)>, Pairing> {
    let into_dir = !no_target_dir && dest.is_dir();
    if sources.len() > 1 && !into_dir {
        let why = if no_target_dir {
            "-T takes exactly one SOURCE"
        } else {
            "is not a directory, and several SOURCEs need one"
        };
        return Err(Pairing::Usage(format!("'{}' {why}", dest.display())));
    }
    if !into_dir {
        return Ok(vec![(sources[0].clone(), dest.to_owned())]);
    }
    sources
        .iter()
        .map(|src| {
            // `.` and `..` have no name of their own; the directory they resolve to does.
            let name = match src.file_name() {
                Some(name) => name.to_owned(),
                None => src
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(ToOwned::to_owned))
                    .ok_or_else(|| {
                        let why = "has no name to create in the destination directory; name \
                                   the destination instead";
                        Pairing::Failed(Error::new(src, ErrorKind::Invalid(why.into())))
                    })?,
            };
            Ok((src.clone(), dest.join(name)))
        })
        .collect()
}

/// `zlink: 12034 files, 1.2 GiB copied` redrawn in place until the run is done, then erased.
fn progress(stats: &Stats, start: Instant, done: &AtomicBool) {
    let mut shown = false;
    while !done.load(Relaxed) {
        // Unparked when the run ends, so a short run never waits for the display.
        std::thread::park_timeout(PROGRESS_EVERY);
        if start.elapsed() < PROGRESS_AFTER || done.load(Relaxed) {
            continue;
        }
        let s: Summary = stats.summary(start.elapsed());
        crate::errprint!(
            "\r\x1b[Kzlink: {} ({} hard-linked, {} reflinked, {} copied: {}), {}...",
            Count(s.files(), "file"),
            s.hardlinked,
            s.reflinked,
            s.copied,
            Bytes(s.bytes_copied),
            Count(s.dirs, "dir")
        );
        shown = true;
    }
    if shown {
        crate::errprint!("\r\x1b[K");
    }
}
