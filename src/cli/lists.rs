//! zcommit's listings of the store (`ls`, `tags`, `layers`, `runtimes`, `verify`) as lines for
//! people and line-based tools, NUL-terminated records, or JSON for scripts.
//!
//! Tag and runtime names are checked when made (letters, digits, `._+-@=`, `/`), so they can
//! never hold a newline; paths can, and are quoted as `ls` quotes them, raw with `-z`, or
//! exact bytes in JSON ([`super::json::path`]).

use crate::cli::{self, json};
use crate::error::{Error, Result};
use crate::manifest::{Kind, Manifest};
use crate::quote::shell_escape;
use crate::runtime;
use crate::store::{Report, Store};
use serde_json::{Value, json};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How a listing is printed.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct Format {
    /// Print one JSON value on standard output instead of lines
    #[arg(long)]
    pub json: bool,
}

pub fn ls(store: &Store, layer: &OsStr, null: bool, format: Format) -> Result<ExitCode> {
    let (_, manifest) = store.open_layer(layer)?;
    if format.json {
        return print_json(&entries_json(&manifest));
    }
    match null {
        true => print_terminated(&listing(&manifest, |n| n.to_vec()), b"\0"),
        false => print_lines(&listing(&manifest, shell_escape)),
    }
}

pub fn tags(store: &Store, format: Format) -> Result<ExitCode> {
    let tags = store.tags()?;
    if format.json {
        print_json(&json!({
            "tags": tags.sound.iter().map(|(name, stack)| json!({
                "name": name,
                "layers": stack.iter().map(|d| d.to_hex()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "damaged": tags.bad.iter().map(json::error).collect::<Vec<_>>(),
        }))?;
    } else {
        print_lines(
            &tags
                .sound
                .iter()
                .map(|(name, stack)| format!("{}  {name}", stack_string(stack)).into_bytes())
                .collect::<Vec<_>>(),
        )?;
    }
    for bad in &tags.bad {
        cli::report("zcommit", bad);
    }
    Ok(failed_if(!tags.bad.is_empty()))
}

pub fn layers(store: &Store, format: Format) -> Result<ExitCode> {
    let layers = store.layers()?;
    match format.json {
        true => print_json(&Value::from(
            layers.iter().map(|d| d.to_hex()).collect::<Vec<_>>(),
        )),
        false => print_lines(
            &layers
                .iter()
                .map(|d| d.to_hex().into_bytes())
                .collect::<Vec<_>>(),
        ),
    }
}

pub fn runtimes(store: &Store, verbose: bool, format: Format) -> Result<ExitCode> {
    let list = runtime::list(store)?;
    if format.json {
        return print_json(&Value::from(
            list.iter()
                .map(|rt| {
                    json!({
                        "name": rt.name,
                        "changed": rt.changed,
                        "in_use": rt.in_use,
                        "base": rt.base.iter().map(|d| d.to_hex()).collect::<Vec<_>>(),
                    })
                })
                .collect::<Vec<_>>(),
        ));
    }
    print_lines(
        &list
            .iter()
            .map(|rt| {
                // Short digests fit a terminal line; -v gives them whole.
                let base: Vec<String> = rt
                    .base
                    .iter()
                    .map(|d| match verbose {
                        true => d.to_hex(),
                        false => d.to_hex()[..12].to_string(),
                    })
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
    )
}

/// Print what `verify` found in the store and its meta images: each problem and removal on
/// stderr, then the summary (a line, or JSON with every problem in it) on stdout unless
/// `quiet`.
pub fn verify(
    store: &Store,
    report: &Report,
    meta: &crate::overlay::meta::Report,
    quiet: bool,
    format: Format,
) -> Result<ExitCode> {
    let problems: Vec<&Error> = report.problems.iter().chain(&meta.problems).collect();
    for problem in &problems {
        cli::report("zcommit", problem);
    }
    let meta_dir = crate::overlay::meta::dir(store);
    let removed: Vec<&PathBuf> = report.removed.iter().chain(&meta.removed).collect();
    for path in &removed {
        let mut line = b"zcommit: ".to_vec();
        line.extend_from_slice(path.as_os_str().as_bytes());
        line.extend_from_slice(match path.starts_with(&meta_dir) {
            true => b": removed (the next kernel mount of its layer builds it again)\n",
            false => b": removed (commit or import its content again to restore it)\n",
        });
        let _ = std::io::stderr().write_all(&line);
    }
    let code = failed_if(!problems.is_empty());
    if format.json {
        print_json(&json!({
            "blobs": report.blobs,
            "layers": report.layers,
            "tags": report.tags,
            "meta_images": meta.checked,
            "damaged": problems.iter().map(|e| json::error(e)).collect::<Vec<_>>(),
            "removed": removed.iter()
                .map(|p| json::path(p.as_os_str().as_bytes())).collect::<Vec<_>>(),
        }))?;
    } else if !quiet {
        let meta_images = match meta.checked {
            0 => String::new(),
            n => format!(", {}", count(n, "meta image")),
        };
        let summary = format!(
            "{}, {}, {}{meta_images}: {}{}",
            count(report.blobs, "blob"),
            count(report.layers, "layer"),
            count(report.tags, "tag"),
            match problems.len() {
                0 => "all good".to_string(),
                n => format!("{n} damaged"),
            },
            match removed.len() {
                0 => String::new(),
                n => format!(", {n} removed"),
            }
        );
        print_lines(&[summary.into_bytes()])?;
    }
    Ok(code)
}

/// A stack's digests, bottom first, joined by commas (the form `diff` takes).
fn stack_string(stack: &[crate::digest::Digest]) -> String {
    let hex: Vec<String> = stack.iter().map(|d| d.to_hex()).collect();
    hex.join(",")
}

fn failed_if(failed: bool) -> ExitCode {
    match failed {
        true => ExitCode::from(cli::EXIT_FAILURE),
        false => ExitCode::SUCCESS,
    }
}

/// Every entry as a JSON object, depth first: path, kind, mode, mtime and what the kind has.
fn entries_json(m: &Manifest) -> Value {
    let list = m.walk().map(|(path, i)| {
        let e = m.entry(i);
        let mut obj = json!({
            "path": json::path(path.as_os_str().as_bytes()),
            "mode": e.mode,
            "mtime": {"secs": e.mtime.secs, "nanos": e.mtime.nanos},
        });
        let (kind, more) = match e.kind {
            Kind::Dir { opaque, .. } => ("dir", json!({"opaque": opaque})),
            Kind::File { size, digest } => {
                ("file", json!({"size": size, "digest": digest.to_hex()}))
            }
            Kind::Symlink { .. } => (
                "symlink",
                json!({"target": m.target(i).map(|t| json::path(t.as_bytes()))}),
            ),
            Kind::Whiteout => ("whiteout", json!({})),
            Kind::Fifo => ("fifo", json!({})),
            Kind::Device(d) => (
                if d.block { "block" } else { "char" },
                json!({"major": d.major, "minor": d.minor}),
            ),
        };
        obj["kind"] = Value::from(kind);
        if let (Value::Object(o), Value::Object(more)) = (&mut obj, more) {
            o.extend(more);
        }
        obj
    });
    Value::from(list.collect::<Vec<_>>())
}

/// One line per entry, depth first: `drwxr-xr-x  SIZE  DIGEST  PATH`, with paths and link
/// targets given by `name` (quoted, or as their bytes).
pub fn listing(m: &Manifest, name: impl Fn(&[u8]) -> Vec<u8>) -> Vec<Vec<u8>> {
    m.walk()
        .map(|(path, i)| {
            let e = m.entry(i);
            let (kind, size, digest) = match e.kind {
                Kind::Dir { .. } => ('d', "-".to_string(), "-".to_string()),
                Kind::File { size, digest } => ('-', size.to_string(), digest.to_hex()),
                Kind::Symlink { .. } => ('l', "-".to_string(), "-".to_string()),
                Kind::Whiteout => ('w', "-".to_string(), "-".to_string()),
                Kind::Fifo => ('p', "-".to_string(), "-".to_string()),
                // ls -l shows a device's numbers where a file's size would be.
                Kind::Device(d) => (
                    if d.block { 'b' } else { 'c' },
                    format!("{}, {}", d.major, d.minor),
                    "-".to_string(),
                ),
            };
            let perms = match e.kind {
                Kind::Whiteout => "---------".to_string(),
                _ => mode_string(e.mode),
            };
            let mut line = format!("{kind}{perms} {size:>12} {digest:<64} ").into_bytes();
            line.extend_from_slice(&name(path.as_os_str().as_bytes()));
            if let Some(target) = m.target(i) {
                line.extend_from_slice(b" -> ");
                line.extend_from_slice(&name(target.as_bytes()));
            }
            if let Kind::Dir { opaque: true, .. } = e.kind {
                line.extend_from_slice(b" (opaque)");
            }
            line
        })
        .collect()
}

/// `1 dir`, `2 dirs`; `1 entry`, `0 entries`.
pub fn count(n: usize, what: &str) -> String {
    crate::link::Count(n as u64, what).to_string()
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

fn print_json(value: &Value) -> Result<ExitCode> {
    let mut text = value.to_string().into_bytes();
    text.push(b'\n');
    print_terminated(&[text], b"")
}

/// Write lines to stdout; a closed pipe (`| head`) is not an error.
pub fn print_lines(lines: &[Vec<u8>]) -> Result<ExitCode> {
    print_terminated(lines, b"\n")
}

/// Write records to stdout, each followed by `end`.
pub fn print_terminated(lines: &[Vec<u8>], end: &[u8]) -> Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = lines
        .iter()
        .try_for_each(|l| out.write_all(l).and_then(|()| out.write_all(end)))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Error::io(Path::new("stdout"), "cannot write", e)),
    }
}
