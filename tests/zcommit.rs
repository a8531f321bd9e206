//! zcommit end to end: round trips through the store, dedupe, concurrent commits, SIGKILL at
//! random moments, damaged and forged objects, stacks with whiteouts and opaque dirs.
// Tests: a thread the system refuses may fail them.
#![allow(clippy::disallowed_methods)]

mod util;

// The cases, by what they guard; they share the helpers below.
#[path = "zcommit/cli.rs"]
mod cli;
#[path = "zcommit/damage.rs"]
mod damage;
#[path = "zcommit/depth.rs"]
mod depth;
#[path = "zcommit/store.rs"]
mod store;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;
use util::{Scratch, bin, sh};
use zkit::digest::Digest;

/// `zcommit` with the scratch store.
fn zc(store: &Path) -> assert_cmd::Command {
    let mut cmd = bin("zcommit");
    cmd.arg("--store").arg(store);
    cmd
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Commit `dir`, check that stdout is exactly one digest, and return it.
fn commit(store: &Path, args: &[&str], dir: &Path) -> String {
    let out = zc(store).args(args).arg(dir).output().unwrap();
    assert!(out.status.success(), "zcommit failed: {}", stderr_of(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let digest = stdout.strip_suffix('\n').expect("one line");
    assert!(
        Digest::parse(digest).is_some(),
        "stdout is not a digest: {stdout:?}"
    );
    digest.to_string()
}

fn checkout(store: &Path, dest: &Path, layers: &[&str]) {
    let out = zc(store)
        .arg("checkout")
        .arg(dest)
        .args(layers)
        .output()
        .unwrap();
    assert!(out.status.success(), "checkout failed: {}", stderr_of(&out));
}

fn blobs(store: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for fan in fs::read_dir(store.join("blobs")).unwrap() {
        for b in fs::read_dir(fan.unwrap().path()).unwrap() {
            let p = b.unwrap().path();
            if !p.file_name().unwrap().as_bytes().starts_with(b".") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// Where the blob of `content` is in `store`.
fn blob_of(store: &Path, content: &[u8]) -> PathBuf {
    let hex = Digest::of_blob(content).to_hex();
    store.join("blobs").join(&hex[..2]).join(hex)
}

fn verify_clean(store: &Path) {
    let out = zc(store).arg("verify").output().unwrap();
    assert!(out.status.success(), "verify: {}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("all good"));
}

/// Every path below `root` with its kind, permission bits and content or link target.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let mode = m.mode() & 0o7777;
            let v = if m.is_dir() {
                stack.push(p.clone());
                ('d', mode, vec![])
            } else if m.file_type().is_symlink() {
                (
                    'l',
                    0,
                    fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
                )
            } else {
                ('f', mode, fs::read(&p).unwrap())
            };
            out.insert(rel, v);
        }
    }
    out
}

/// A tree with every kind of thing a layer holds, and names that are not text.
fn odd_tree(root: &Path) {
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("bin/suid"), b"suid").unwrap();
    fs::set_permissions(root.join("bin/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("bin/sgid"), b"sgid").unwrap();
    fs::set_permissions(root.join("bin/sgid"), fs::Permissions::from_mode(0o2750)).unwrap();
    fs::create_dir(root.join("sticky")).unwrap();
    fs::set_permissions(root.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(root.join("private"), b"secret").unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("bin/tool", root.join("link")).unwrap();
    symlink("../../nowhere/at all", root.join("dangling")).unwrap();
    fs::write(root.join(OsStr::from_bytes(b"new\nline")), b"newline").unwrap();
    fs::write(
        root.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")),
        b"not utf-8",
    )
    .unwrap();
    fs::write(
        root.join(OsStr::from_bytes(b" spaces and \\ and \t ")),
        b"x",
    )
    .unwrap();
    // A long path: 12 levels of 200-byte names, and a 255-byte file name at the bottom.
    let mut deep = root.to_path_buf();
    for i in 0..12 {
        deep.push(format!("{i:0>200}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f".repeat(255)), b"deep").unwrap();
    fs::write(root.join("big"), vec![7u8; 3 << 20]).unwrap();
}

#[test]
fn round_trip_keeps_content_modes_symlinks_and_odd_names() {
    let s = Scratch::new();
    let (store, src, out) = (s.path("store"), s.path("src"), s.path("out"));
    odd_tree(&src);
    let layer = commit(&store, &[], &src);
    checkout(&store, &out, &[&layer]);
    sh(&format!(
        "diff -r --no-dereference '{}' '{}'",
        src.display(),
        out.display()
    ));
    assert_eq!(snapshot(&src), snapshot(&out));
    let listing = zc(&store).args(["ls", "-z"]).arg(&layer).output().unwrap();
    assert!(listing.status.success());
    let listing = listing.stdout;
    assert!(
        listing.windows(11).any(|w| w == b"-rwsr-xr-x "),
        "setuid shown"
    );
    assert!(
        listing.windows(8).any(|w| w == b"new\nline"),
        "with -z, names are bytes"
    );
    verify_clean(&store);
}

#[test]
fn ls_prints_one_line_per_entry_whatever_the_names_and_a_shell_reads_them_back() {
    require!(util::have("bash"), "bash reads $'...' quoting back");
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    odd_tree(&src);
    fs::write(src.join("it's"), b"q").unwrap();
    symlink(OsStr::from_bytes(b"to\nthe \xff"), src.join("odd-link")).unwrap();
    let layer = commit(&store, &[], &src);
    let quoted = zc(&store).arg("ls").arg(&layer).output().unwrap();
    let raw = zc(&store).args(["ls", "-z"]).arg(&layer).output().unwrap();
    assert!(quoted.status.success() && raw.status.success());
    let quoted = String::from_utf8(quoted.stdout);
    let quoted =
        quoted.unwrap_or_else(|e| panic!("not text at byte {}", e.utf8_error().valid_up_to()));
    let quoted: Vec<&str> = quoted.lines().collect();
    let raw: Vec<&[u8]> = raw
        .stdout
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(quoted.len(), raw.len());
    assert_eq!(raw.len(), snapshot(&src).len());
    // Mode, size and digest columns, then the name (and ` -> target`).
    let names_at = 10 + 1 + 12 + 1 + 64 + 1;
    for (q, r) in quoted.iter().zip(&raw) {
        assert_eq!(q.as_bytes()[..names_at], r[..names_at]);
        // A quoted name is one shell word (no name here holds ` -> `): bash undoes the quoting.
        let shell_word = |word: &str| -> Vec<u8> {
            let said = std::process::Command::new("bash")
                .arg("-c")
                .arg(format!("printf '%s' {word}"))
                .output()
                .unwrap();
            assert!(said.status.success(), "{word}");
            said.stdout
        };
        let back = match q[names_at..].split_once(" -> ") {
            Some((name, target)) => [shell_word(name), shell_word(target)].join(&b" -> "[..]),
            None => shell_word(&q[names_at..]),
        };
        assert_eq!(back, r[names_at..], "{q}");
    }
}

#[test]
fn same_tree_twice_gives_the_same_layer_and_no_new_blob() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    odd_tree(&src);
    let first = commit(&store, &[], &src);
    let before = blobs(&store);
    // Once through the cache and once reading every file again.
    assert_eq!(commit(&store, &[], &src), first);
    assert_eq!(commit(&store, &["--no-cache"], &src), first);
    // A copy elsewhere (new inodes, new times) is the same layer too.
    sh(&format!(
        "cp -a '{}' '{}'",
        src.display(),
        s.path("copy").display()
    ));
    assert_eq!(commit(&store, &[], &s.path("copy")), first);
    assert_eq!(blobs(&store), before);
}

#[test]
fn thousand_identical_files_are_one_blob() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    for i in 0..1000 {
        fs::write(src.join(format!("f{i}")), b"the same content").unwrap();
    }
    let layer = commit(&store, &[], &src);
    assert_eq!(blobs(&store).len(), 1);
    let listing = zc(&store).arg("ls").arg(&layer).output().unwrap().stdout;
    assert_eq!(
        listing
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        1000
    );
}

#[test]
fn an_unchanged_stamp_is_never_trusted_for_a_file_changed_in_the_same_tick() {
    // Digests of content alone: each rewrite below also moves the file's time.
    const R: &[&str] = &["--reproducible"];
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    let f = src.join("f");
    fs::write(&f, b"AAAA").unwrap();
    let a = commit(&store, R, &src);
    // Same size, rewritten at once (likely the same mtime tick), then its mtime put back:
    // only the ctime tells, and it must.
    let mtime = fs::metadata(&f).unwrap().mtime();
    fs::write(&f, b"BBBB").unwrap();
    sh(&format!("touch -m -d @{mtime} '{}'", f.display()));
    let b = commit(&store, R, &src);
    assert_ne!(a, b);
    fs::write(&f, b"AAAA").unwrap();
    assert_eq!(commit(&store, R, &src), a);
    fs::write(&f, b"CCCC").unwrap();
    assert_ne!(commit(&store, R, &src), a);
}

#[test]
fn four_concurrent_overlapping_commits_succeed_and_verify_clean() {
    let s = Scratch::new();
    let store = s.path("store");
    let trees: Vec<PathBuf> = (0..4)
        .map(|t| {
            let dir = s.path(&format!("t{t}"));
            fs::create_dir(&dir).unwrap();
            for i in 0..300 {
                // Half shared by all trees, half each tree's own.
                let body = if i % 2 == 0 {
                    format!("shared {i}")
                } else {
                    format!("t{t} {i}")
                };
                fs::write(dir.join(format!("f{i}")), body.repeat(500)).unwrap();
            }
            dir
        })
        .collect();
    let outs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = trees
            .iter()
            .map(|t| {
                let store = &store;
                scope.spawn(move || zc(store).arg(t).output().unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, out) in trees.iter().zip(&outs) {
        assert!(out.status.success(), "{}", stderr_of(out));
        let layer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dest = s.path(&format!("out-{}", t.file_name().unwrap().to_string_lossy()));
        checkout(&store, &dest, &[&layer]);
        assert_eq!(snapshot(t), snapshot(&dest));
    }
    assert_eq!(blobs(&store).len(), 150 + 4 * 150);
    verify_clean(&store);
}

#[test]
fn sigkill_at_random_moments_leaves_no_corrupt_object_and_a_rerun_completes() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    for i in 0..400 {
        fs::write(src.join(format!("small{i}")), format!("{i}").repeat(4000)).unwrap();
    }
    for i in 0..4 {
        fs::write(src.join(format!("large{i}")), vec![i as u8; 16 << 20]).unwrap();
    }
    for round in 0..6 {
        let delay = std::time::Duration::from_millis(util::random_u64() % 400);
        let mut child = std::process::Command::new(util::bin_path("zcommit"))
            .arg("--store")
            .arg(&store)
            .arg("--no-cache")
            .arg(&src)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let out = zc(&store).arg("verify").output().unwrap();
        assert!(
            out.status.success(),
            "round {round} (killed after {delay:?}): {}",
            stderr_of(&out)
        );
    }
    let layer = commit(&store, &[], &src);
    verify_clean(&store);
    checkout(&store, &s.path("out"), &[&layer]);
    assert_eq!(snapshot(&src), snapshot(&s.path("out")));
}

#[test]
fn a_flipped_byte_in_a_blob_is_found_and_named() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"precious data").unwrap();
    fs::write(src.join("b"), b"other data").unwrap();
    commit(&store, &[], &src);
    let victim = store
        .join("blobs")
        .join(&Digest::of_blob(b"precious data").to_hex()[..2])
        .join(Digest::of_blob(b"precious data").to_hex());
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    bytes[3] ^= 0x20;
    fs::write(&victim, bytes).unwrap();
    let out = zc(&store).arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&victim.display().to_string()) && err.contains("corrupt"),
        "{err}"
    );
}

/// A manifest with one entry called `name` in the root, hand-encoded (version 1).
fn manifest_with_name(name: &[u8]) -> Vec<u8> {
    let mut m = b"ZKITLAYR\x01\x02".to_vec();
    m.extend_from_slice(&[0, 0, 0xed, 0x03, 0, 1]); // root: dir, no name, mode 0755, 1 child
    m.extend_from_slice(&[0, name.len() as u8]); // a dir called `name`
    m.extend_from_slice(name);
    m.extend_from_slice(&[0xed, 0x03, 0, 0]); // mode 0755, no flags, no children
    m
}

#[test]
fn a_forged_manifest_with_a_dot_dot_entry_fails_cleanly() {
    let s = Scratch::new();
    let store = s.path("store");
    zc(&store).arg("tags").assert().success();
    // Sanity: the same bytes with an ordinary name are a valid layer.
    for (name, ok) in [
        (&b"fine"[..], true),
        (b"..", false),
        (b"a/b", false),
        (b".", false),
    ] {
        let bytes = manifest_with_name(name);
        let digest = Digest::of_layer(&bytes).to_hex();
        fs::write(store.join("layers").join(&digest), &bytes).unwrap();
        let out = zc(&store).arg("ls").arg(&digest).output().unwrap();
        let err = stderr_of(&out);
        if ok {
            assert!(out.status.success(), "{err}");
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with("zcommit: ") && err.contains("invalid name"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let out = zc(&store)
            .arg("checkout")
            .arg(s.path("o"))
            .arg(&digest)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(!s.path("o").exists() || fs::read_dir(s.path("o")).unwrap().next().is_none());
    }
}

#[test]
fn a_whiteout_hides_a_lower_file_and_an_opaque_dir_hides_the_lower_dir() {
    let s = Scratch::new();
    let store = s.path("store");
    let (lower, upper) = (s.path("lower"), s.path("upper"));
    for d in ["etc", "lib/old", "keep"] {
        fs::create_dir_all(lower.join(d)).unwrap();
    }
    fs::write(lower.join("etc/passwd"), b"root").unwrap();
    fs::write(lower.join("etc/hosts"), b"localhost").unwrap();
    fs::write(lower.join("lib/a.so"), b"a").unwrap();
    fs::write(lower.join("lib/old/b.so"), b"b").unwrap();
    fs::write(lower.join("keep/k"), b"k").unwrap();
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::create_dir_all(upper.join("lib")).unwrap();
    fs::write(upper.join("etc/.wh.passwd"), b"").unwrap();
    fs::write(upper.join("etc/hosts"), b"upper wins").unwrap();
    fs::write(upper.join("lib/.wh..wh..opq"), b"").unwrap();
    fs::write(upper.join("lib/c.so"), b"c").unwrap();
    let l = commit(&store, &[], &lower);
    let u = commit(&store, &["--whiteouts"], &upper);
    let listing = String::from_utf8_lossy(&zc(&store).arg("ls").arg(&u).output().unwrap().stdout)
        .into_owned();
    assert!(listing.contains("etc/passwd") && listing.lines().any(|l| l.starts_with('w')));
    assert!(listing.contains("lib (opaque)"), "{listing}");
    let out = s.path("out");
    checkout(&store, &out, &[&l, &u]);
    let seen: Vec<String> = snapshot(&out)
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        seen,
        ["etc", "etc/hosts", "keep", "keep/k", "lib", "lib/c.so"]
    );
    assert_eq!(fs::read(out.join("etc/hosts")).unwrap(), b"upper wins");
    // Without --whiteouts the markers are ordinary files.
    let literal = commit(&store, &[], &upper);
    assert_ne!(literal, u);
}

#[test]
fn layers_resolve_by_tag_and_prefix_and_an_ambiguous_prefix_lists_candidates() {
    let s = Scratch::new();
    let store = s.path("store");
    let mut layers = Vec::new();
    for i in 0..17 {
        let dir = s.path(&format!("d{i}"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), format!("{i}")).unwrap();
        let tag = format!("app/{i}");
        layers.push(commit(&store, &["--tag", &tag], &dir));
    }
    let tags = String::from_utf8(zc(&store).arg("tags").output().unwrap().stdout).unwrap();
    assert!(tags.contains(&format!("{}  app/3", layers[3])), "{tags}");
    let by_tag = zc(&store).args(["ls", "app/3"]).output().unwrap();
    let by_prefix = zc(&store).arg("ls").arg(&layers[3][..12]).output().unwrap();
    assert!(by_tag.status.success() && by_tag.stdout == by_prefix.stdout);
    // 17 layers: at least two share their first hex digit.
    let shared = (0..17)
        .map(|i| &layers[i][..1])
        .find(|p| layers.iter().filter(|l| l.starts_with(p)).count() > 1)
        .unwrap();
    let out = zc(&store).args(["ls", shared]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    let candidates = layers.iter().filter(|l| l.starts_with(shared));
    for c in candidates {
        assert!(err.contains(c.as_str()), "{err}");
    }
    let out = zc(&store).args(["ls", "no/such/tag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("no such layer"));
}

#[test]
fn files_enter_an_xfs_store_by_reflink_and_never_by_hard_link() {
    require!(util::is_root(), "loop mounts need root");
    require!(util::have("mkfs.xfs"), "xfsprogs");
    let xfs = util::LoopFs::new("xfs");
    let (store, src) = (xfs.path("store"), xfs.path("src"));
    fs::create_dir(&src).unwrap();
    for i in 0..5 {
        fs::write(src.join(format!("f{i}")), vec![i as u8; 1 << 20]).unwrap();
    }
    let out = zc(&store)
        .args(["-v", "--link-mode", "reflink"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("5 reflinked"),
        "{}",
        stderr_of(&out)
    );
    verify_clean(&store);
    // Hard-linking modes are not offered: a usage error (see
    // usage_errors_are_usage_errors_and_a_missing_dir_is_not_to_be_created).
    // Across file systems there is no reflink: the default copies, strict reflink fails.
    let other = Scratch::new();
    let far = other.path("store");
    let out = zc(&far)
        .args(["--link-mode", "reflink"])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    commit(&far, &[], &src);
    verify_clean(&far);
}

#[test]
fn untag_removes_named_and_matching_tags_and_names_what_it_could_not() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    for tag in ["app/1.0", "app/1.1", "app/rc/2", "base/1"] {
        commit(&store, &["--tag", tag], &src);
    }
    let tags = |store: &Path| -> Vec<String> {
        let out = zc(store).arg("tags").output().unwrap().stdout;
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect()
    };
    zc(&store).args(["untag", "app/*"]).assert().success();
    assert_eq!(
        tags(&store),
        ["app/rc/2", "base/1"],
        "`*` stays within one part"
    );
    let out = zc(&store)
        .args(["untag", "base/1", "nosuch", "app/x*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("nosuch: no such tag") && err.contains("app/x*: no such tag"),
        "{err}"
    );
    assert_eq!(tags(&store), ["app/rc/2"], "the other names were removed");
    // The layer is still there: untag removes names, not layers.
    assert_eq!(zc(&store).arg("layers").output().unwrap().stdout.len(), 65);
    assert!(
        !store.join("tags/base").exists(),
        "an emptied tag directory goes too"
    );
}
