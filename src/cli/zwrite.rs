//! `zwrite`'s command line.
//!
//! Exit statuses (the help text, and so the man page, and README.md list the same):
//! 0 written or unchanged; 1 failed, FILE left as it was; 2 usage error, or stdin is a
//! terminal; 3 ([`EXIT_NOT_PROTECTED`]) `-i` could not set the flag again; 4
//! ([`EXIT_NOT_DURABLE`]) FILE holds the new content but a sync failed; 5 ([`EXIT_PARTLY_WRITTEN`])
//! `--in-place` failed midway.

use crate::atomic::{self, Options, Source};
use crate::error::ErrorKind;
use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "zwrite",
    version,
    about = "Replace a file atomically and durably with what comes on standard input",
    long_about = "Replace FILE atomically and durably with standard input (or --from INPUT).\n\n\
        The new content is written to a temporary file in FILE's directory, synced, and renamed \
        over FILE, and the directory is synced: readers see the old or the new content, never a \
        mix, whatever is killed when. Mode (setuid/setgid/sticky included), owner, group, \
        extended attributes (ACLs, security labels) and inode flags are kept; if any of them cannot \
        be, nothing is replaced (see --allow-metadata-loss). A symlink FILE is written through: \
        its target gets the content and the link stays.",
    after_help = "Examples:\n  \
        echo 'port = 8080' | zwrite /etc/app.conf\n  \
        generate-config | zwrite -u -c 600 secrets.conf   # untouched if nothing changed\n  \
        echo 'nameserver 10.0.0.1' | zwrite -i /etc/resolv.conf   # even when chattr +i\n  \
        echo 'one more line' | zwrite -a log.txt\n\n\
        Exit status:\n  \
        0  written (or unchanged with -u)\n  \
        1  failed; FILE was left as it was\n  \
        2  usage error, nothing was done (also: standard input is a terminal; use a pipe or --from INPUT)\n  \
        3  -i: the flag could not be set again; the message says whether FILE holds the new or \
        the old content, and the chattr command that protects it\n  \
        4  FILE holds the new content, but the directory (--in-place: the file) could not be \
        synced: a crash may still bring \
        the old one back (run sync)\n  \
        5  --in-place: the write failed midway; FILE holds part old, part new content\n\n\
        A FILE that cannot be replaced (bind-mounted: rename fails with EBUSY; in a directory \
        you cannot write) fails with exit 1 and says so; --in-place writes into it instead. \
        Replacing a FILE with other hard links makes a new inode: the other names keep the old \
        content, and zwrite warns.\n\n\
        With -i, SIGINT, SIGTERM and SIGHUP wait until the flag is set again. A SIGKILL or power \
        loss in that short window leaves FILE (old or new) without the flag; the next zwrite of \
        FILE removes any temporary it left."
)]
pub struct Args {
    /// The file to replace; created if missing (see -e, -c)
    pub file: PathBuf,

    /// Read the new content from INPUT instead of standard input
    #[arg(long = "from", value_name = "INPUT")]
    pub input: Option<PathBuf>,

    /// The old short form of --from: still accepted, with a warning (-f means --force in
    /// the other tools)
    #[arg(
        short = 'f',
        value_name = "INPUT",
        hide = true,
        conflicts_with = "input"
    )]
    pub input_short: Option<PathBuf>,

    /// Append: keep the old content and add the input after it, still atomically
    #[arg(short, long, conflicts_with = "truncate")]
    pub append: bool,

    /// Replace the whole content (the default; accepted for zeugl compatibility)
    #[arg(long)]
    pub truncate: bool,

    /// The old short form of --truncate: still accepted, with a warning (-t means --tag in
    /// zcommit)
    #[arg(short = 't', hide = true, conflicts_with = "append")]
    pub truncate_short: bool,

    /// Mode (octal) of FILE if it has to be created [default: 0666 less the umask]
    #[arg(short = 'c', long = "create-mode", value_name = "MODE", value_parser = parse_mode)]
    pub create_mode: Option<u32>,

    /// Fail if FILE does not exist instead of creating it
    #[arg(short, long)]
    pub existing: bool,

    /// Lift FILE's immutable or append-only flag for the replacement and set it again after
    #[arg(short = 'i', long = "immutable")]
    pub immutable: bool,

    /// With -a or -i: fail at once if another zwrite holds FILE's lock instead of waiting
    #[arg(long = "no-wait")]
    pub no_wait: bool,

    /// The old short form of --no-wait: still accepted, with a warning (-n means --dry-run
    /// in zcommit gc)
    #[arg(short = 'n', hide = true)]
    pub no_wait_short: bool,

    /// Leave FILE (and its mtime) untouched when the new content is identical
    #[arg(short = 'u', long = "if-changed")]
    pub if_changed: bool,

    /// Skip the fsyncs: still atomic, but not durable across a power cut
    #[arg(long = "no-sync")]
    pub no_sync: bool,

    /// Replace FILE even if its owner, mode, ACL or xattrs cannot be kept (warns about each;
    /// the mode is never widened). Without it such a loss fails and FILE is left as it was
    #[arg(long = "allow-metadata-loss")]
    pub allow_metadata_loss: bool,

    /// Write into FILE itself instead of replacing it, for a FILE that cannot be replaced (a
    /// bind mount, a directory you cannot write). NOT atomic: readers may see it half-written,
    /// and a crash or I/O error mid-write leaves old and new mixed (exit 5). Keeps the inode,
    /// so hard links see the new content
    #[arg(long = "in-place", conflicts_with = "immutable")]
    pub in_place: bool,

    /// Say what was done on standard error
    #[arg(short, long, conflicts_with = "quiet")]
    pub verbose: bool,

    /// No warnings (e.g. about an owner --allow-metadata-loss did not keep); errors are still printed
    #[arg(short, long)]
    pub quiet: bool,
}

impl Args {
    pub fn options(&self) -> Options {
        Options {
            append: self.append,
            new_mode: self.create_mode,
            must_exist: self.existing,
            lift_flags: self.immutable,
            wait: !(self.no_wait || self.no_wait_short),
            if_changed: self.if_changed,
            sync: !self.no_sync,
            allow_metadata_loss: self.allow_metadata_loss,
            in_place: self.in_place,
        }
    }

    pub fn source(&self) -> Source<'_> {
        match self.input.as_ref().or(self.input_short.as_ref()) {
            Some(path) if path.as_os_str() != "-" => Source::File(path),
            _ => Source::Stdin,
        }
    }
}

/// FILE was replaced, or left as it was, but lost its immutable or append-only flag (`-i`).
pub const EXIT_NOT_PROTECTED: u8 = 3;
/// FILE holds the new content, but the directory sync failed: a crash may still undo it.
pub const EXIT_NOT_DURABLE: u8 = 4;

/// --in-place: FILE was partly written when the write failed.
pub const EXIT_PARTLY_WRITTEN: u8 = 5;

/// The exit status for a failed write; see the help text for the list.
fn exit_status(err: &crate::Error) -> u8 {
    match err.kind {
        ErrorKind::NoLongerProtected { .. } => EXIT_NOT_PROTECTED,
        ErrorKind::NotDurable { .. } => EXIT_NOT_DURABLE,
        ErrorKind::PartlyWritten { .. } => EXIT_PARTLY_WRITTEN,
        _ => super::EXIT_FAILURE,
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!("'{s}' is not an octal mode between 0 and 7777")),
    }
}

/// Replace the file, then report: warnings for metadata that could not be kept (unless -q),
/// what was done (with -v), or the one-line error.
pub fn run(args: &Args) -> ExitCode {
    // A person at a terminal who presses Ctrl-D (or hits it by mistake) would replace FILE with
    // whatever was typed, often nothing: refuse, as a usage error.
    if matches!(args.source(), Source::Stdin) && std::io::stdin().is_terminal() {
        crate::errln!(
            "zwrite: {}: standard input is a terminal (pipe the content in, `cmd | zwrite FILE`, \
             or name a file with --from INPUT)",
            args.file.display()
        );
        return ExitCode::from(super::EXIT_USAGE);
    }
    if !args.quiet {
        if args.input_short.is_some() {
            crate::errln!(
                "zwrite: warning: -f INPUT is deprecated: use --from INPUT (-f means --force in zlink and zmount)"
            );
        }
        if args.no_wait_short {
            crate::errln!(
                "zwrite: warning: -n is deprecated: use --no-wait (-n means --dry-run in zcommit gc)"
            );
        }
        if args.truncate_short {
            crate::errln!(
                "zwrite: warning: -t is deprecated: replacing the whole content is the default (-t means --tag in zcommit)"
            );
        }
    }
    let outcome = match atomic::replace(&args.file, args.source(), &args.options()) {
        Ok(outcome) => outcome,
        Err(err) => {
            super::report("zwrite", &err);
            return ExitCode::from(exit_status(&err));
        }
    };
    let path = outcome.path.display();
    if !args.quiet {
        for what in &outcome.not_kept {
            crate::errln!("zwrite: {path}: warning: could not keep {what}");
        }
        // Editors warn here too: the replacement is a new inode, so the file's other names
        // still show the old content.
        match outcome.other_links {
            0 => {}
            n => crate::errln!(
                "zwrite: {path}: warning: {n} other hard link{} to the old file still hold{} the \
                 old content (--in-place writes through every link)",
                if n == 1 { "" } else { "s" },
                if n == 1 { "s" } else { "" }
            ),
        }
    }
    if args.verbose {
        let did = match (outcome.changed, outcome.created) {
            (false, _) => "unchanged",
            (true, true) => "created",
            (true, false) => "replaced",
        };
        crate::errln!("zwrite: {path}: {did} ({} bytes)", outcome.bytes);
    }
    ExitCode::SUCCESS
}
