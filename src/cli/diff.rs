//! `zcommit diff`: what changed between two stacks, or what a runtime's commit would record
//! (see [`crate::diff`]), as lines, NUL-terminated records or JSON.

use crate::cli::complete;
use crate::commit::walk;
use crate::diff::{self, Change, Item, Stack};
use crate::error::{IoContext, Result};
use crate::manifest::Manifest;
use crate::quote::shell_escape;
use crate::runtime::Runtime;
use crate::store::Store;
use clap_complete::engine::ArgValueCompleter;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stack before: a layer, or layers bottom first joined by commas (base/1,app/1)
    #[arg(required_unless_present = "runtime", conflicts_with = "runtime",
          add = ArgValueCompleter::new(complete::stack))]
    pub a: Option<OsString>,

    /// The stack after, named the same way
    #[arg(required_unless_present = "runtime", conflicts_with = "runtime",
          add = ArgValueCompleter::new(complete::stack))]
    pub b: Option<OsString>,

    /// Compare the editable runtime NAME with its base: what `zcommit --runtime NAME` would
    /// record (a scratch file counts as changed unless its size and time are the lower one's)
    #[arg(long, value_name = "NAME", add = ArgValueCompleter::new(complete::runtime))]
    pub runtime: Option<String>,

    /// Also list paths whose only change is their modification time (`m`)
    #[arg(short, long)]
    pub verbose: bool,

    /// A JSON array of {"status", "path"} on standard output (a path that is not UTF-8 is an
    /// array of bytes)
    #[arg(long, conflicts_with = "null")]
    pub json: bool,

    /// End each record with a NUL instead of a newline, and print paths as their bytes
    #[arg(short = 'z', long = "null")]
    pub null: bool,
}

pub fn run(store: &Store, args: &Args, jobs: usize) -> Result<ExitCode> {
    let changes = match &args.runtime {
        Some(name) => {
            let rt = Runtime::open(store, name)?;
            let layers: Vec<Manifest> = rt
                .base()
                .iter()
                .map(|d| store.load_layer(d))
                .collect::<Result<_>>()?;
            let merged = crate::manifest::merge(&layers);
            let base = Item::of_node(&merged);
            let scratch = rt.scratch_path();
            let root = std::fs::File::open(&scratch).at(&scratch, "cannot open directory")?;
            // A kernel runtime's scratch is an overlayfs upper dir (see commit::overlay).
            let kernel = crate::backend::of_runtime(rt.dir())? == crate::backend::Backend::Kernel;
            let opts = walk::Options {
                jobs,
                markers: !kernel,
                overlay: kernel,
                ..Default::default()
            };
            let mut found = walk::walk(&root, &scratch, &opts)?;
            if kernel {
                crate::commit::overlay::resolve(&mut found.dirs, &scratch, &merged)?;
            }
            diff::diff(
                &base,
                &diff::with_scratch(base.clone(), &found),
                args.verbose,
            )
        }
        None => {
            let names = |s: &Option<OsString>| -> Vec<OsString> {
                let s = s.as_deref().expect("clap requires both");
                s.as_bytes()
                    .split(|&b| b == b',')
                    .map(|n| OsStr::from_bytes(n).to_owned())
                    .collect()
            };
            // Reading and checking a manifest is most of a diff's time: one stack per core.
            // Without a second thread (the system may refuse one), one after the other.
            let (a, b) = std::thread::scope(|s| {
                let load_a = || stack(store, names(&args.a));
                match std::thread::Builder::new().spawn_scoped(s, load_a) {
                    Ok(a) => {
                        let b = stack(store, names(&args.b));
                        (a.join().expect("a stack's load does not panic"), b)
                    }
                    Err(_) => (load_a(), stack(store, names(&args.b))),
                }
            });
            diff::diff(&a?, &b?, args.verbose)
        }
    };
    let written = write(
        &changes,
        args,
        &mut std::io::BufWriter::new(std::io::stdout().lock()),
    );
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(crate::error::Error::io(
            Path::new("stdout"),
            "cannot write",
            e,
        )),
    }
}

/// The tree the layers `names` (bottom first) show.
fn stack(store: &Store, names: Vec<OsString>) -> Result<Stack> {
    let layers: Vec<Manifest> = store
        .resolve_stacks(&names)?
        .iter()
        .map(|d| store.load_layer(d))
        .collect::<Result<_>>()?;
    Ok(Stack::of(layers))
}

fn write(changes: &[(Change, PathBuf)], args: &Args, out: &mut impl Write) -> std::io::Result<()> {
    if args.json {
        let list: Vec<serde_json::Value> = changes
            .iter()
            .map(|(c, p)| {
                serde_json::json!({
                    "status": c.letter().to_string(),
                    "path": crate::cli::json::path(p.as_os_str().as_bytes()),
                })
            })
            .collect();
        serde_json::to_writer(&mut *out, &list)?;
        out.write_all(b"\n")?;
        return out.flush();
    }
    for (change, path) in changes {
        write!(out, "{}\t", change.letter())?;
        match args.null {
            true => {
                out.write_all(path.as_os_str().as_bytes())?;
                out.write_all(b"\0")?;
            }
            false => {
                out.write_all(&shell_escape(path.as_os_str().as_bytes()))?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()
}
