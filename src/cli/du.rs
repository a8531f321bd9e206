//! `zcommit du`: what layers cost (see [`crate::store::usage`]), as a table or JSON.

use crate::error::{Error, Result};
use crate::gc::usage::{LayerUsage, StoreUsage};
use crate::store::Store;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tags, digests or unique digest prefixes [default: every tag, and the store's totals]
    #[arg(value_name = "LAYER")]
    pub layers: Vec<OsString>,

    /// One JSON object on standard output: {"layers": [...], "store": {...}}
    #[arg(long)]
    pub json: bool,
}

pub fn run(store: &Store, args: &Args) -> Result<ExitCode> {
    // A row per layer; a stack's layers are NAME[1] (the bottom) to NAME[n].
    let rows = |name: String, stack: Vec<crate::digest::Digest>| -> Vec<(String, _)> {
        match stack.len() {
            1 => vec![(name, stack[0])],
            _ => stack
                .into_iter()
                .enumerate()
                .map(|(i, d)| (format!("{name}[{}]", i + 1), d))
                .collect(),
        }
    };
    let (names, digests): (Vec<String>, Vec<_>) = match args.layers.is_empty() {
        true => store
            .tags()?
            .sound
            .into_iter()
            .flat_map(|(name, stack)| rows(name, stack))
            .unzip(),
        false => {
            let mut all = Vec::new();
            for l in &args.layers {
                all.extend(rows(
                    l.to_string_lossy().into_owned(),
                    store.resolve_stack(l)?,
                ));
            }
            all.into_iter().unzip()
        }
    };
    let usage = store.layer_usage(&digests)?;
    let total = match args.layers.is_empty() {
        true => Some(store.store_usage()?),
        false => None,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.json {
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
