//! gc beside a commit loop and live mounts, and gc killed at random moments.
// Tests: a thread the system refuses may fail them.
#![allow(clippy::disallowed_methods)]

use super::*;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

/// A fixed tree `k` of the commit loop: its own files, and one every tree shares.
fn tree(k: usize) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert("common".to_string(), "in every tree".to_string());
    for i in 0..12 {
        files.insert(format!("d{}/f{i}", i % 3), format!("tree {k} file {i}"));
    }
    files
}

fn write_tree(dir: &Path, files: &BTreeMap<String, String>) {
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
}

/// The regular files below `root`, relative, with their content.
fn read_tree(root: &Path) -> BTreeMap<String, String> {
    paths(root)
        .into_iter()
        .filter(|p| fs::symlink_metadata(root.join(p)).unwrap().is_file())
        .map(|p| {
            let content = fs::read_to_string(root.join(&p)).unwrap();
            (p.to_str().unwrap().to_string(), content)
        })
        .collect()
}

fn zc_timed(store: &Path) -> assert_cmd::Command {
    let mut c = zc(store);
    c.timeout(TIMEOUT);
    c
}

/// Unmounts (lazily) on drop, panics included.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if util::mounted(&self.0) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn gc_beside_a_commit_loop_and_mounts_never_leaves_a_layer_without_its_blobs() {
    let s = Scratch::new();
    let store = s.path("store");
    const TREES: usize = 4;
    const ROUNDS: usize = 200;
    let trees: Vec<BTreeMap<String, String>> = (0..TREES).map(tree).collect();
    for (k, t) in trees.iter().enumerate() {
        write_tree(&s.path(&format!("src{k}")), t);
    }
    let done = Arc::new(AtomicBool::new(false));
    // Untagged layers just committed, for the mount loop: (digest, content of `f`).
    let fresh: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mounting = util::have_fuse();

    let gcs = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !done.load(Ordering::Relaxed) || rounds == 0 {
                let out = zc_timed(&store).args(["-q", "gc"]).output().unwrap();
                ok(out, "gc");
                rounds += 1;
            }
            rounds
        })
    };
    let mounts = {
        let (store, done, fresh) = (store.clone(), done.clone(), fresh.clone());
        let mnt = s.path("mnt");
        fs::create_dir(&mnt).unwrap();
        std::thread::spawn(move || {
            let mut shown = 0;
            while mounting && !done.load(Ordering::Relaxed) {
                let Some((digest, content)) = fresh.lock().unwrap().last().cloned() else {
                    std::thread::yield_now();
                    continue;
                };
                let out = util::bin("zmount")
                    .args(["mount", "--store"])
                    .arg(&store)
                    .arg(&digest)
                    .arg(&mnt)
                    .timeout(TIMEOUT)
                    .output()
                    .unwrap();
                if !out.status.success() {
                    // Swept before the mount resolved it: refused by name, nothing mounted.
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(err.contains("no such layer"), "{err}");
                    continue;
                }
                let _guard = Unmount(mnt.clone());
                assert_eq!(fs::read_to_string(mnt.join("f")).unwrap(), content);
                // A gc while the untagged layer is on show: the pin keeps it.
                ok(zc_timed(&store).args(["-q", "gc"]).output().unwrap(), "gc");
                assert!(store.join("layers").join(&digest).exists());
                assert_eq!(
                    read_tree(&mnt),
                    BTreeMap::from([("f".to_string(), content)])
                );
                let out = util::bin("zmount")
                    .arg("umount")
                    .arg(&mnt)
                    .timeout(TIMEOUT)
                    .output()
                    .unwrap();
                ok(out, "umount");
                shown += 1;
            }
            shown
        })
    };

    let mut kept = Vec::new();
    for i in 0..ROUNDS {
        let k = i % TREES;
        let src = s.path(&format!("src{k}"));
        // Each tree comes back after its layer lost its tag: the commit finds its blobs in
        // the cache and the store, which a sweep may be about to remove.
        let out = zc_timed(&store)
            .args(["--tag", "live"])
            .arg(&src)
            .output()
            .unwrap();
        let digest = ok(out, "commit").trim().to_string();
        if i % 20 == 0 {
            let tag = format!("keep/{i}");
            zc_timed(&store)
                .args(["tag", &tag, &digest])
                .assert()
                .success();
            kept.push((tag, k));
        }
        let generation = s.path("generation");
        let content = format!("generation {}", i % 10);
        fs::create_dir_all(&generation).unwrap();
        fs::write(generation.join("f"), &content).unwrap();
        let out = zc_timed(&store)
            .arg("--no-cache")
            .arg(&generation)
            .output()
            .unwrap();
        let untagged = ok(out, "commit").trim().to_string();
        fresh.lock().unwrap().push((untagged, content));
    }
    done.store(true, Ordering::Relaxed);
    let gc_rounds = gcs.join().unwrap();
    let shown = mounts.join().unwrap();
    eprintln!("{gc_rounds} gcs beside {ROUNDS} commit rounds, {shown} mounts");
    kept.push(("live".to_string(), (ROUNDS - 1) % TREES));
    for (tag, k) in &kept {
        let dest = s.path(&format!("out-{}", tag.replace('/', "-")));
        zc_timed(&store)
            .arg("checkout")
            .arg(&dest)
            .arg(tag)
            .assert()
            .success();
        assert_eq!(read_tree(&dest), trees[*k], "{tag}");
    }
    verify_clean(&store);
    // A mount's server lets go of its pin as it exits, a moment after `umount` returns.
    let no_pins = || fs::read_dir(store.join("pins")).map_or(true, |d| d.count() == 0);
    let drained = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        no_pins()
    });
    assert!(drained, "a pin outlived its mount");
    ok(zc_timed(&store).arg("gc").output().unwrap(), "final gc");
    only_what_tags_reach(&store);
    assert!(
        fs::read_dir(store.join("pins")).map_or(true, |mut d| d.next().is_none()),
        "pins left behind"
    );
    verify_clean(&store);
}

/// How many blobs the store holds.
fn st_blobs(store: &Path) -> usize {
    fs::read_dir(store.join("blobs"))
        .unwrap()
        .map(|f| fs::read_dir(f.unwrap().path()).map_or(0, |d| d.count()))
        .sum()
}

/// Unreachable objects for a gc to remove: a layer of `n` files no other layer has, its
/// per-layer data, and data of a layer that is not there (removed by `verify --repair`,
/// say). Made once and stashed (hard links), so that [`Garbage::restore`] brings back what
/// a gc removed without the cost of a commit.
struct Garbage {
    stash: PathBuf,
    /// Files below blobs/ and layers/ and oci/, relative.
    files: Vec<PathBuf>,
    /// Per-layer trees, relative to meta/.
    trees: Vec<String>,
}

impl Garbage {
    fn new(store: &Path, dir: &Path, stash: &Path, n: usize) -> Garbage {
        for i in 0..n {
            let p = dir.join(format!("d{}/f{i}", i % 16));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, format!("garbage {i}")).unwrap();
        }
        let out = zc(store).arg("--no-cache").arg(dir).output().unwrap();
        let layer = ok(out, "commit").trim().to_string();
        fs::create_dir_all(store.join("oci")).unwrap();
        fs::write(store.join("oci").join(&layer), "sha256").unwrap();
        let orphan = Digest::of_blob(b"no such layer").to_hex();
        let mut files = vec![
            Path::new("layers").join(&layer),
            Path::new("oci").join(&layer),
        ];
        let st = Store::open(store).unwrap();
        for e in st
            .load_layer(&Digest::parse(&layer).unwrap())
            .unwrap()
            .entries()
        {
            if let Kind::File { digest, .. } = e.kind {
                let hex = digest.to_hex();
                files.push(Path::new("blobs").join(&hex[..2]).join(hex));
            }
        }
        for f in &files {
            fs::create_dir_all(stash.join(f).parent().unwrap()).unwrap();
            fs::hard_link(store.join(f), stash.join(f)).unwrap();
        }
        let garbage = Garbage {
            stash: stash.to_owned(),
            files,
            trees: vec![layer, orphan],
        };
        garbage.restore(store);
        garbage
    }

    fn restore(&self, store: &Path) {
        for f in &self.files {
            if !store.join(f).exists() {
                fs::create_dir_all(store.join(f).parent().unwrap()).unwrap();
                fs::hard_link(self.stash.join(f), store.join(f)).unwrap();
            }
        }
        for t in &self.trees {
            // Whole or not there: a gc renames a tree before it removes it.
            if !store.join("meta").join(t).exists() {
                let top = area_tree(store, "meta", t);
                for i in 0..100 {
                    fs::write(top.join(format!("m{i}")), "x").unwrap();
                }
            }
        }
    }
}

#[test]
fn gc_killed_at_random_moments_leaves_a_sound_store_and_the_next_one_finishes() {
    let s = Scratch::new();
    let store = s.path("store");
    let kept = tree(0);
    write_tree(&s.path("kept"), &kept);
    let out = zc(&store)
        .args(["--tag", "kept"])
        .arg(s.path("kept"))
        .output()
        .unwrap();
    ok(out, "commit");
    let st = Store::open(&store).unwrap();
    let (mut killed, mut halfway) = (0, 0);
    let rounds = 40;
    let garbage = Garbage::new(&store, &s.path("g"), &s.path("stash"), 2000);
    let count = |dir: &str| fs::read_dir(store.join(dir)).unwrap().count();
    for round in 0..rounds {
        // What the last gc removed comes back: each round has thousands of blobs to remove.
        garbage.restore(&store);
        let (layers_before, blobs_before) = (count("layers"), st_blobs(&store));
        let mut child = Command::new(util::bin_path("zcommit"))
            .arg("--store")
            .arg(&store)
            .args(["-q", "gc"])
            .spawn()
            .unwrap();
        let random = util::random_u64();
        // Any moment, the listing and marking included; or one of the sweep's: among the
        // per-layer data, the layers, or the blobs.
        let sweeping = |mode: u64| match mode {
            1 => fs::read_dir(store.join("meta"))
                .unwrap()
                .any(|e| e.unwrap().file_name().to_str().unwrap().starts_with(".gc-")),
            2 => count("layers") < layers_before,
            _ => st_blobs(&store) < blobs_before,
        };
        let mode = random % 4;
        if mode > 0 {
            while !sweeping(mode) && child.try_wait().unwrap().is_none() {
                std::thread::yield_now();
            }
        }
        std::thread::sleep(Duration::from_micros(random / 4 % 50_000));
        let _ = child.kill();
        let status = child.wait().unwrap();
        killed += usize::from(status.code().is_none());
        // One that finished, after others were killed at any point, did its whole job.
        assert!(
            status.code().is_none() || status.success(),
            "round {round}: {status}"
        );
        let leftovers = fs::read_dir(store.join("meta"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .starts_with(".gc-")
            })
            .count();
        halfway += usize::from(leftovers > 0);
        let report = st.verify(2, false).unwrap();
        assert!(
            report.problems.is_empty(),
            "round {round}: {:?}",
            report.problems
        );
        assert!(st.tag("kept").unwrap().is_some());
    }
    eprintln!("{killed} of {rounds} gcs killed, {halfway} halfway through per-layer data");
    ok(zc(&store).arg("gc").output().unwrap(), "final gc");
    only_what_tags_reach(&store);
    let dest = s.path("out");
    zc(&store)
        .arg("checkout")
        .arg(&dest)
        .arg("kept")
        .assert()
        .success();
    assert_eq!(read_tree(&dest), kept);
    verify_clean(&store);
}

/// Stops the test's daemon and lazily unmounts what it mounted, panics included.
struct Daemon(PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new(util::bin_path("zmount"))
            .env("ZMOUNT_DIR", &self.0)
            .args(["stop", "--force"])
            .stderr(Stdio::null())
            .status();
        drop(Unmount(self.0.join("mnt")));
    }
}

#[test]
fn a_run_of_an_untagged_layer_keeps_it_through_a_gc_inside_and_loses_it_after() {
    require!(util::have_fuse(), "zmount run needs root and /dev/fuse");
    let s = Scratch::new();
    let store = s.path("store");
    let layer = commit(&store, &s.path("a"), &[("f", "shown while untagged")], &[]);
    let daemon = Daemon(s.path("zm"));
    let script = format!(
        "{zc} --store {store} -q gc && cat \"$ZKIT_MOUNT/f\"",
        zc = util::bin_path("zcommit").display(),
        store = store.display()
    );
    let out = util::bin("zmount")
        .env("ZMOUNT_DIR", &daemon.0)
        .env("ZKIT_STORE", &store)
        .args(["run", &layer, "--", "sh", "-c", &script])
        .timeout(TIMEOUT)
        .output()
        .unwrap();
    assert_eq!(ok(out, "zmount run"), "shown while untagged");
    // The run is over: its pin went with it, and so does the layer.
    let listed = dry_run(&store, &[]);
    assert!(
        listed
            .iter()
            .any(|(k, _, p)| k == "layer" && *p == layer_path(&layer)),
        "{listed:?}"
    );
    assert!(!listed.iter().any(|(k, _, _)| k == "pin"), "{listed:?}");
}
