//! `zcommit du`: what layers cost (see [`crate::store::usage`]), as a table or JSON.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::usage::{LayerUsage, StoreUsage};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tags, digests or unique digest prefixes [default: every tag, and the store's totals]
    #[arg(value_name = "LAYER",
          add = clap_complete::ArgValueCompleter::new(crate::cli::complete::layer))]
    pub layers: Vec<OsString>,

    /// One JSON object on standard output: {"layers": [...], "store": {...}}
    #[command(flatten)]
    pub format: crate::cli::lists::Format,
}

pub fn run(store: &Store, args: &Args) -> Result<ExitCode> {
    // A row per layer; a stack's rows are named NAME[1/3] ... bottom first.
    let stacks: Vec<(String, Vec<Digest>)> = match args.layers.is_empty() {
        true => store.tags()?.sound,
        false => args
            .layers
            .iter()
            .map(|l| Ok((l.to_string_lossy().into_owned(), store.resolve_stack(l)?)))
            .collect::<Result<_>>()?,
    };
    let (names, digests): (Vec<String>, Vec<Digest>) = stacks
        .into_iter()
        .flat_map(|(name, stack)| {
            let n = stack.len();
            stack.into_iter().enumerate().map(move |(i, d)| match n {
                1 => (name.clone(), d),
                _ => (format!("{name}[{}/{n}]", i + 1), d),
            })
        })
        .unzip();
    let usage = store.layer_usage(&digests)?;
    let total = match args.layers.is_empty() {
        true => Some(store.store_usage()?),
        false => None,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.format.json {
        true => json(&names, &usage, total.as_ref(), &mut out),
        false => table(&names, &usage, total.as_ref(), &mut out),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Error::io(Path::new("stdout"), "cannot write", e)),
    }
}

fn table(
    names: &[String],
    usage: &[LayerUsage],
    total: Option<&StoreUsage>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>9} {:>14} {:>14} {:>14}  LAYER",
        "ENTRIES", "BYTES", "UNIQUE", "SHARED"
    )?;
    for (name, u) in names.iter().zip(usage) {
        writeln!(
            out,
            "{:>9} {:>14} {:>14} {:>14}  {name}",
            u.entries, u.bytes, u.unique, u.shared
        )?;
    }
    if let Some(t) = total {
        writeln!(
            out,
            "store: {} blobs, {}; {} layers, {}; reclaimable by `zcommit gc`: {}",
            t.blobs,
            super::gc::bytes(t.blob_bytes),
            t.layers,
            super::gc::bytes(t.layer_bytes),
            super::gc::bytes(t.reclaimable_bytes),
        )?;
    }
    Ok(())
}

fn json(
    names: &[String],
    usage: &[LayerUsage],
    total: Option<&StoreUsage>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let layers: Vec<serde_json::Value> = names
        .iter()
        .zip(usage)
        .map(|(name, u)| {
            let mut v = serde_json::to_value(u).unwrap_or_default();
            v["name"] = name.as_str().into();
            v
        })
        .collect();
    let mut value = serde_json::json!({ "layers": layers });
    if let Some(t) = total {
        value["store"] = serde_json::to_value(t).unwrap_or_default();
    }
    serde_json::to_writer(&mut *out, &value)?;
    out.write_all(b"\n")
}
