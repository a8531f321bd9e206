//! Shell completion, answered by the tools themselves, so that layer, tag and runtime names
//! come from the store at the moment of the Tab.
//!
//! The scripts in `completions/` only register the tool with the shell: on Tab the shell runs
//! `COMPLETE=bash zcommit -- WORDS...` ([`handle`]), and clap's completion engine answers from
//! the command-line definition, calling the completers below for names. They read the store
//! that `$ZKIT_STORE` (else the default) names, never create one, and answer nothing when
//! there is none: a completion must never fail loudly or change anything.

use crate::runtime;
use crate::store::{self, Store};
use clap_complete::engine::{CompletionCandidate, PathCompleter, ValueCompleter};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Answer a completion request and exit, if this run is one (`COMPLETE=SHELL` is set); do
/// nothing otherwise. Called first thing by each binary.
pub fn handle(tool: &'static str, command: fn() -> clap::Command) {
    clap_complete::CompleteEnv::with_factory(command)
        .bin(tool)
        .completer(tool)
        .complete();
}

/// The default store, if one exists.
fn store() -> Option<Store> {
    let root = store::root_from(None).ok()?;
    std::fs::metadata(root.join("zkit-store")).ok()?;
    Store::open(&root).ok()
}

fn matching(current: &OsStr, names: impl Iterator<Item = String>) -> Vec<CompletionCandidate> {
    let prefix = current.as_bytes();
    names
        .filter(|n| n.as_bytes().starts_with(prefix))
        .map(CompletionCandidate::new)
        .collect()
}

/// Tag names.
pub fn tag(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(store) = store() else {
        return Vec::new();
    };
    let tags = store.tags().map(|t| t.sound).unwrap_or_default();
    matching(current, tags.into_iter().map(|(name, _)| name))
}

/// A layer: a tag, or a digest once a hex prefix is typed.
pub fn layer(current: &OsStr) -> Vec<CompletionCandidate> {
    let mut found = tag(current);
    if !current.is_empty() && current.as_bytes().iter().all(u8::is_ascii_hexdigit) {
        let digests = store().and_then(|s| s.layers().ok()).unwrap_or_default();
        found.extend(matching(current, digests.iter().map(|d| d.to_hex())));
    }
    found
}

/// A stack: layers joined by commas (`base/1,app/1`); the part after the last comma is
/// completed.
pub fn stack(current: &OsStr) -> Vec<CompletionCandidate> {
    let bytes = current.as_bytes();
    let cut = bytes.iter().rposition(|&b| b == b',').map_or(0, |i| i + 1);
    let (done, last) = bytes.split_at(cut);
    layer(OsStr::from_bytes(last))
        .into_iter()
        .map(|c| c.add_prefix(OsStr::from_bytes(done)))
        .collect()
}

/// A layer or, for the last argument of `zmount mount`, a directory.
pub fn layer_or_dir(current: &OsStr) -> Vec<CompletionCandidate> {
    let mut found = layer(current);
    found.extend(PathCompleter::dir().complete(current));
    found
}

/// Runtime names.
pub fn runtime(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(store) = store() else {
        return Vec::new();
    };
    let list = runtime::list(&store).unwrap_or_default();
    matching(current, list.into_iter().map(|rt| rt.name))
}
