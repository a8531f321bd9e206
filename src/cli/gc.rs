//! `zcommit gc`: remove what nothing reaches (see [`crate::gc`]), or with `--dry-run`
//! list it; a summary on stderr, or everything as JSON.

use crate::cli::lists::count;
use crate::error::{Error, Result};
use crate::gc::{Options, Swept, What};
use crate::store::Store;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// List what would be removed (kind, bytes, path below the store), remove nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Keep this layer (tag, digest or unique prefix; a stack tag keeps its layers) and what
    /// it names, as if tagged
    #[arg(long, value_name = "LAYER", num_args = 1..,
          add = clap_complete::ArgValueCompleter::new(crate::cli::complete::layer))]
    pub keep: Vec<OsString>,

    /// One JSON object on standard output: what went (or would go) and the totals
    #[arg(long)]
    pub json: bool,
}

pub fn run(store: &Store, args: &Args, jobs: usize, quiet: bool) -> Result<ExitCode> {
    let keep = store.resolve_stacks(&args.keep)?;
    let swept = store.gc(&Options {
        keep,
        dry_run: args.dry_run,
        jobs,
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.json {
        true => json(&swept, args.dry_run, &mut out),
        false if args.dry_run => list(&swept, &mut out),
        false => Ok(()),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(Error::io(Path::new("stdout"), "cannot write", e)),
    }
    if !quiet && !args.json {
        crate::errln!("zcommit: gc: {}", summary(&swept, args.dry_run));
    }
    Ok(ExitCode::SUCCESS)
}

fn list(swept: &Swept, out: &mut impl Write) -> std::io::Result<()> {
    for item in &swept.items {
        write!(out, "{}\t{}\t", item.what.name(), item.bytes)?;
        out.write_all(item.path.as_os_str().as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn json(swept: &Swept, dry_run: bool, out: &mut impl Write) -> std::io::Result<()> {
    let items: Vec<serde_json::Value> = swept
        .items
        .iter()
        .map(|i| {
            serde_json::json!({
                "kind": i.what.name(),
                "path": i.path.to_string_lossy(),
                "bytes": i.bytes,
            })
        })
        .collect();
    let value = serde_json::json!({
        "dry_run": dry_run,
        "items": items,
        "layers": swept.count(What::Layer),
        "blobs": swept.count(What::Blob),
        "caches": swept.count(What::Cache),
        "per_layer": swept.count(What::Area),
        "pins": swept.count(What::Pin),
        "temporaries": swept.temporaries,
        "bytes": swept.bytes(),
    });
    serde_json::to_writer(&mut *out, &value)?;
    out.write_all(b"\n")
}

/// `removed 2 layers, 40 blobs, 1 commit cache: 1234567 bytes (1.2 MiB) freed`.
fn summary(swept: &Swept, dry_run: bool) -> String {
    let mut parts = vec![
        count(swept.count(What::Layer), "layer"),
        count(swept.count(What::Blob), "blob"),
    ];
    for (n, what) in [
        (swept.count(What::Cache), "commit cache"),
        (swept.count(What::Area), "per-layer dir"),
        (swept.count(What::Pin), "dead pin"),
        (swept.temporaries, "stale temporary"),
    ] {
        if n > 0 {
            parts.push(count(n, what));
        }
    }
    let size = bytes(swept.bytes());
    match dry_run {
        true => format!("would remove {}: {size} to free", parts.join(", ")),
        false => format!("removed {}: {size} freed", parts.join(", ")),
    }
}

/// `1234567 bytes (1.2 MiB)`; `12 bytes`.
pub fn bytes(n: u64) -> String {
    match n < 1024 {
        true => format!("{n} bytes"),
        false => format!("{n} bytes ({})", human(n)),
    }
}

/// 1536 -> `1.5 KiB`.
fn human(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} bytes"),
        _ => format!("{value:.1} {}", units[unit]),
    }
}
