//! `zcommit gc` and `zcommit du`: what goes, what stays (tags, runtimes, pins, --keep), what a
//! dry run promises, and what the numbers say; beside commits and mounts, and killed.

mod util;

#[path = "gc/concurrent.rs"]
mod concurrent;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use util::{Scratch, bin};
use zkit::digest::Digest;
use zkit::manifest::Kind;
use zkit::process::ProcId;
use zkit::store::Store;

/// `zcommit --store STORE`.
fn zc(store: &Path) -> assert_cmd::Command {
    let mut cmd = bin("zcommit");
    cmd.arg("--store").arg(store);
    cmd
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Write `files` (path, content) below `dir`, and commit it with `args`; the digest.
fn commit(store: &Path, dir: &Path, files: &[(&str, &str)], args: &[&str]) -> String {
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    // No commit cache: whether one has entries depends on the clock's tick (see
    // `store::index`); the tests that want caches write them.
    let out = zc(store)
        .arg("--no-cache")
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    ok(out, "commit").trim().to_string()
}

/// A commit cache in `store` whose entries name the blobs of `contents`; its path.
fn cache_naming(store: &Path, name: &str, contents: &[&str]) -> PathBuf {
    use zkit::store::index::{self, Stamp};
    let stamp = Stamp {
        dev: 1,
        ino: 1,
        size: 1,
        mtime: (0, 0),
        ctime: (0, 0),
    };
    let rels: Vec<String> = (0..contents.len()).map(|i| format!("f{i}")).collect();
    let bytes = index::encode(
        rels.iter()
            .zip(contents)
            .map(|(r, c)| (r.as_bytes(), stamp, Digest::of_blob(c.as_bytes()))),
        (i64::MAX, 0),
    );
    let rel = Path::new("index").join(Digest::of_blob(name.as_bytes()).to_hex());
    fs::write(store.join(&rel), bytes).unwrap();
    rel
}

/// Every path below `root`, relative, directories included.
fn paths(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(root).unwrap().to_owned());
        }
    }
    out
}

/// `zcommit gc --dry-run`'s lines: (kind, bytes, path).
fn dry_run(store: &Path, args: &[&str]) -> Vec<(String, u64, PathBuf)> {
    let out = zc(store)
        .args(["gc", "--dry-run"])
        .args(args)
        .output()
        .unwrap();
    ok(out, "gc --dry-run")
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let kind = f.next().unwrap().to_string();
            let bytes = f.next().unwrap().parse().unwrap();
            (kind, bytes, PathBuf::from(f.next().unwrap()))
        })
        .collect()
}

/// `zcommit gc --json` (with `args`).
fn gc_json(store: &Path, args: &[&str]) -> serde_json::Value {
    let out = zc(store)
        .args(["gc", "--json"])
        .args(args)
        .output()
        .unwrap();
    serde_json::from_str(&ok(out, "gc")).unwrap()
}

fn verify_clean(store: &Path) {
    let out = zc(store).arg("verify").output().unwrap();
    let text = ok(out, "verify");
    assert!(text.contains("all good"), "{text}");
}

fn layer_path(hex: &str) -> PathBuf {
    Path::new("layers").join(hex)
}

fn blob_path(content: &str) -> PathBuf {
    let hex = Digest::of_blob(content.as_bytes()).to_hex();
    Path::new("blobs").join(&hex[..2]).join(hex)
}

/// A per-layer area entry like the kernel backend's metadata trees: read-only dirs, files.
fn area_tree(store: &Path, area: &str, name: &str) -> PathBuf {
    let top = store.join(area).join(name);
    fs::create_dir_all(top.join("usr/lib")).unwrap();
    for i in 0..5 {
        fs::write(top.join(format!("usr/lib/f{i}")), "meta").unwrap();
    }
    for d in ["usr/lib", "usr"] {
        fs::set_permissions(top.join(d), fs::Permissions::from_mode(0o555)).unwrap();
    }
    top
}

fn own_id() -> ProcId {
    zkit::process::stat(std::process::id()).unwrap().id
}

#[test]
fn dry_run_lists_exactly_what_gc_removes_and_what_is_reached_stays() {
    let s = Scratch::new();
    let store = s.path("store");
    let tagged = commit(
        &store,
        &s.path("t"),
        &[("a", "shared"), ("b", "tagged")],
        &["--tag", "app/1"],
    );
    let gone = commit(
        &store,
        &s.path("g"),
        &[("a", "shared"), ("c", "only gone")],
        &[],
    );
    let rt_base = commit(&store, &s.path("r"), &[("r", "runtime's")], &[]);
    let pinned = commit(
        &store,
        &s.path("p"),
        &[("p", "pinned by a live process")],
        &[],
    );
    let dead = commit(&store, &s.path("d"), &[("d", "pinned by a dead one")], &[]);
    let kept = commit(&store, &s.path("k"), &[("k", "kept by --keep")], &[]);
    let st = Store::open(&store).unwrap();
    let d = |hex: &str| Digest::parse(hex).unwrap();
    drop(zkit::runtime::Runtime::create(&st, "dev", &[d(&rt_base)]).unwrap());
    let mut sleeper = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let sleeper_id = zkit::process::stat(sleeper.id()).unwrap().id;
    st.pin(&[d(&pinned)], Some(sleeper_id)).unwrap().keep();
    let mut done = std::process::Command::new("true").spawn().unwrap();
    let done_id = ProcId {
        pid: done.id(),
        start: zkit::process::stat(done.id()).map_or(1, |s| s.id.start),
    };
    done.wait().unwrap();
    st.pin(&[d(&dead)], Some(done_id)).unwrap().keep();
    // Per-layer data: a swept layer's goes, a kept layer's stays, a killed gc's leftover goes.
    area_tree(&store, "meta", &gone);
    fs::create_dir_all(store.join("oci")).unwrap();
    fs::write(store.join("oci").join(&gone), "sha256:...").unwrap();
    // A real meta image (the kernel backend's), which verify checks against its layer.
    zkit::overlay::meta::ensure(&st, &d(&tagged)).unwrap();
    area_tree(&store, "meta", &format!(".gc-{pinned}"));
    // Commit caches: one nothing can read, one of swept blobs only, one naming a kept blob.
    fs::write(
        store.join("index").join(Digest::of_blob(b"x").to_hex()),
        "garbage",
    )
    .unwrap();
    let swept_cache = cache_naming(&store, "/src/g", &["only gone"]);
    let kept_cache = cache_naming(&store, "/src/t", &["only gone", "shared"]);

    let before = paths(&store);
    let listed = dry_run(&store, &["--keep", &kept[..10]]);
    // The dry run changed nothing.
    assert_eq!(paths(&store), before);
    let json = gc_json(&store, &["--keep", &kept[..10]]);
    let after = paths(&store);
    let removed: BTreeSet<PathBuf> = before.difference(&after).cloned().collect();
    // Exactly what was listed went, per-layer dirs with everything below them.
    let expected: BTreeSet<PathBuf> = before
        .iter()
        .filter(|p| listed.iter().any(|(_, _, l)| p.starts_with(l)))
        .cloned()
        .collect();
    assert_eq!(removed, expected);
    let kinds: Vec<(&str, &Path)> = listed
        .iter()
        .map(|(k, _, p)| (k.as_str(), p.as_path()))
        .collect();
    for want in [
        ("layer", layer_path(&gone)),
        ("layer", layer_path(&dead)),
        ("blob", blob_path("only gone")),
        ("blob", blob_path("pinned by a dead one")),
        ("per-layer", Path::new("meta").join(&gone)),
        ("per-layer", Path::new("oci").join(&gone)),
        ("per-layer", Path::new("meta").join(format!(".gc-{pinned}"))),
        (
            "cache",
            Path::new("index").join(Digest::of_blob(b"x").to_hex()),
        ),
        ("cache", swept_cache),
    ] {
        assert!(
            kinds.contains(&(want.0, want.1.as_path())),
            "{want:?} not in {kinds:?}"
        );
    }
    let dead_pin = format!("{}-{}-", done_id.pid, done_id.start);
    assert!(kinds.iter().any(|(k, p)| {
        *k == "pin"
            && p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&dead_pin)
    }));
    let caches: Vec<&Path> = kinds
        .iter()
        .filter(|(k, _)| *k == "cache")
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(caches.len(), 2, "{caches:?}");
    assert_eq!(
        listed.iter().filter(|(k, _, _)| k == "layer").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        listed.iter().filter(|(k, _, _)| k == "blob").count(),
        2,
        "{kinds:?}"
    );
    for stays in [
        layer_path(&tagged),
        layer_path(&rt_base),
        layer_path(&pinned),
        layer_path(&kept),
        blob_path("shared"),
        blob_path("runtime's"),
        blob_path("pinned by a live process"),
        blob_path("kept by --keep"),
        Path::new("meta").join(&tagged),
        kept_cache,
    ] {
        assert!(after.contains(&stays), "{} went", stays.display());
    }
    let bytes: u64 = listed.iter().map(|(_, b, _)| b).sum();
    assert_eq!(json["bytes"], bytes);
    assert_eq!(json["layers"], 2);
    assert_eq!(json["blobs"], 2);
    verify_clean(&store);
    // Nothing more to do; then the live pin's process ends, and its layer goes.
    assert!(dry_run(&store, &["--keep", &kept]).is_empty());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let listed = dry_run(&store, &["--keep", &kept]);
    let layers: Vec<&PathBuf> = listed
        .iter()
        .filter(|(k, _, _)| k == "layer")
        .map(|(_, _, p)| p)
        .collect();
    assert_eq!(layers, vec![&layer_path(&pinned)]);
    gc_json(&store, &[]);
    // Without --keep, its layer goes too; tags and the runtime stay.
    assert!(!store.join(layer_path(&kept)).exists());
    assert!(store.join(layer_path(&rt_base)).exists());
    assert_eq!(
        fs::read_to_string(store.join("tags/app/1")).unwrap().trim(),
        tagged
    );
    verify_clean(&store);
}

#[test]
fn a_pin_held_by_this_process_keeps_its_layer_until_dropped() {
    let s = Scratch::new();
    let store = s.path("store");
    let layer = commit(&store, &s.path("a"), &[("f", "pinned")], &[]);
    let st = Store::open(&store).unwrap();
    let pin = st.pin(&[Digest::parse(&layer).unwrap()], None).unwrap();
    // Locked by its holder: live even under another pid namespace's numbers.
    let name = pin
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with(&format!("{}-{}-", own_id().pid, own_id().start)));
    assert!(dry_run(&store, &[]).is_empty());
    drop(pin);
    let listed = dry_run(&store, &[]);
    assert!(
        listed
            .iter()
            .any(|(k, _, p)| k == "layer" && *p == layer_path(&layer))
    );
}

#[test]
fn keep_takes_tags_digests_and_prefixes_and_refuses_unknown_layers() {
    let s = Scratch::new();
    let store = s.path("store");
    let a = commit(&store, &s.path("a"), &[("f", "a")], &["--tag", "x"]);
    let b = commit(&store, &s.path("b"), &[("f", "b")], &[]);
    zc(&store).args(["untag", "x"]).assert().success();
    assert_eq!(dry_run(&store, &["--keep", &a, &b[..12]]), vec![]);
    let out = zc(&store).args(["gc", "--keep", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope: no such layer"));
    // Nothing was removed by the refused run.
    assert!(store.join(layer_path(&a)).exists() && store.join(layer_path(&b)).exists());
    let out = zc(&store).args(["gc"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("removed 2 layers, 2 blobs"), "{err}");
    assert!(
        zc(&store)
            .args(["-q", "gc"])
            .output()
            .unwrap()
            .stderr
            .is_empty()
    );
    verify_clean(&store);
}

#[test]
fn gc_refuses_to_guess_when_a_root_cannot_be_read() {
    let s = Scratch::new();
    let store = s.path("store");
    let a = commit(&store, &s.path("a"), &[("f", "a")], &["--tag", "x"]);
    commit(&store, &s.path("b"), &[("f", "b")], &[]);
    fs::write(store.join("tags/bad"), "not a digest\n").unwrap();
    let out = zc(&store).args(["gc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tags/bad") && err.contains("untag"), "{err}");
    fs::remove_file(store.join("tags/bad")).unwrap();
    // A kept layer whose manifest is damaged: what it names is unknown.
    let path = store.join(layer_path(&a));
    let mut bytes = fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    fs::remove_file(&path).unwrap();
    fs::write(&path, bytes).unwrap();
    let out = zc(&store).args(["gc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("verify --repair"), "{err}");
    assert_eq!(
        zkit::store::Store::open(&store)
            .unwrap()
            .layers()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn du_counts_distinct_unique_and_shared_bytes_as_by_hand() {
    let s = Scratch::new();
    let store = s.path("store");
    // A: aaaa (shared with B), bb twice (one blob, only A's). B: aaaa, ccccc (shared with C).
    // C, untagged: ccccc, d (only C's).
    let a = commit(
        &store,
        &s.path("a"),
        &[("x", "aaaa"), ("y", "bb"), ("sub/y2", "bb")],
        &["--tag", "a"],
    );
    let b = commit(
        &store,
        &s.path("b"),
        &[("x", "aaaa"), ("z", "ccccc")],
        &["--tag", "b"],
    );
    let c = commit(&store, &s.path("c"), &[("z", "ccccc"), ("w", "d")], &[]);
    let out = zc(&store).args(["du", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(out, "du")).unwrap();
    let row = |i: usize| &v["layers"][i];
    assert_eq!(row(0)["name"], "a");
    assert_eq!(row(0)["digest"], a.as_str());
    // root, x, y, sub, sub/y2
    assert_eq!(row(0)["entries"], 5);
    assert_eq!(row(0)["files"], 3);
    assert_eq!(row(0)["blobs"], 2);
    assert_eq!(row(0)["bytes"], 4 + 2);
    assert_eq!(row(0)["unique"], 2);
    assert_eq!(row(0)["shared"], 4);
    assert_eq!(row(1)["name"], "b");
    assert_eq!(row(1)["digest"], b.as_str());
    assert_eq!(row(1)["bytes"], 4 + 5);
    assert_eq!(row(1)["unique"], 0);
    assert_eq!(row(1)["shared"], 9);
    assert_eq!(v["layers"].as_array().unwrap().len(), 2);
    let total = &v["store"];
    assert_eq!(total["blobs"], 4);
    assert_eq!(total["blob_bytes"], 4 + 2 + 5 + 1);
    assert_eq!(total["layers"], 3);
    let c_manifest = fs::metadata(store.join(layer_path(&c))).unwrap().len();
    // gc would free C's manifest and the blob only C names.
    assert_eq!(total["reclaimable_bytes"], c_manifest + 1);
    // Named layers: C alone owns d, and shares ccccc with B.
    let out = zc(&store).args(["du", &c[..8]]).output().unwrap();
    let text = ok(out, "du C");
    let line = text.lines().nth(1).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols, vec!["3", "6", "1", "5", &c[..8]], "{text}");
    assert_eq!(
        text.lines().count(),
        2,
        "no store line for named layers: {text}"
    );
    let out = zc(&store).args(["du", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Every blob the tags' layers name, and those layers.
fn reached_by_tags(st: &Store) -> (HashSet<Digest>, HashSet<Digest>) {
    let mut layers = HashSet::new();
    let mut blobs = HashSet::new();
    for d in st
        .tags()
        .unwrap()
        .sound
        .into_iter()
        .flat_map(|(_, stack)| stack)
    {
        layers.insert(d);
        for e in st.load_layer(&d).unwrap().entries() {
            if let Kind::File { digest, .. } = e.kind {
                blobs.insert(digest);
            }
        }
    }
    (layers, blobs)
}

/// After a final gc, the store holds what the tags reach and nothing else.
fn only_what_tags_reach(store: &Path) {
    let st = Store::open(store).unwrap();
    let (layers, blobs) = reached_by_tags(&st);
    let on_disk: HashSet<Digest> = st.layers().unwrap().into_iter().collect();
    assert_eq!(on_disk, layers);
    let mut found = HashSet::new();
    for fan in fs::read_dir(store.join("blobs")).unwrap() {
        for b in fs::read_dir(fan.unwrap().path()).unwrap() {
            let name = b.unwrap().file_name();
            let name = name.to_str().unwrap();
            assert!(!name.starts_with('.'), "temporary left: {name}");
            found.insert(Digest::parse(name).unwrap());
        }
    }
    assert_eq!(found, blobs);
    for area in ["meta", "oci"] {
        if let Ok(entries) = fs::read_dir(store.join(area)) {
            for e in entries {
                let name = e.unwrap().file_name();
                let d = Digest::parse(name.to_str().unwrap());
                assert!(
                    d.is_some_and(|d| layers.contains(&d)),
                    "{area}/{name:?} left"
                );
            }
        }
    }
}
