//! `zcommit diff` against `diff -r` of the two checkouts, and `zcommit diff --runtime`
//! against what the runtime's commit then records.

mod util;

use std::collections::BTreeSet;
use std::path::Path;
use util::{Scratch, sh};

fn zcommit(store: &Path, args: &[&str]) -> String {
    let out = util::bin("zcommit")
        .arg("--store")
        .arg(store)
        .args(args)
        .env("ZMOUNT_DIR", store.with_file_name("zm"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "zcommit {args:?}: {err}");
    String::from_utf8(out.stdout).unwrap()
}

/// Two trees with one change of every kind between them (see the names).
fn before_and_after(s: &Scratch) {
    sh(&format!(
        "set -e; cd '{}'; mkdir a; cd a; \
         echo same > same; echo old > edited; echo x > chmodded; echo t > touched; \
         mkdir -p gone/deep && echo g > gone/deep/f; echo f > became-dir; \
         mkdir became-file && echo c > became-file/c; ln -s same link; mkfifo pipe-to-file; \
         mkdir kept && echo k > kept/k; \
         cd ..; cp -a a b; cd b; \
         echo new > edited; chmod 755 chmodded; touch -d 2001-01-01 touched; \
         rm -r gone; rm became-dir; mkdir became-dir && echo n > became-dir/n; \
         rm -r became-file; echo f > became-file; ln -sfn edited link; \
         rm pipe-to-file; echo p > pipe-to-file; mkdir -p added/sub && echo a > added/sub/a; \
         echo k2 > kept/new",
        s.root().display()
    ));
}

#[test]
fn diff_names_what_diff_r_of_the_checkouts_names_and_the_modes_it_cannot_see() {
    let s = Scratch::new();
    let store = s.path("store");
    before_and_after(&s);
    let a = zcommit(&store, &[s.path("a").to_str().unwrap()]);
    let b = zcommit(&store, &[s.path("b").to_str().unwrap()]);
    let (a, b) = (a.trim(), b.trim());
    let ours = zcommit(&store, &["diff", a, b]);

    // What diff -r says, as (letter, path) of the topmost changed paths.
    for (side, layer) in [("ca", a), ("cb", b)] {
        zcommit(&store, &["checkout", s.path(side).to_str().unwrap(), layer]);
    }
    let theirs = sh(&format!(
        "cd '{}' && diff -rq --no-dereference ca cb || true",
        s.root().display()
    ));
    let mut expected = BTreeSet::new();
    for line in theirs.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let entry = match words.as_slice() {
            ["Only", "in", dir, name] => {
                let dir = dir.trim_end_matches(':');
                let letter = if dir.starts_with("ca") { 'D' } else { 'A' };
                let rel = format!("{}/{name}", dir.split_once('/').map_or("", |d| d.1));
                (letter, rel.trim_start_matches('/').to_string())
            }
            ["Files", x, "and", _, "differ"] | ["Symbolic", "links", x, "and", _, "differ"] => {
                ('M', x.trim_start_matches("ca/").to_string())
            }
            ["File", x, "is", ..] => ('T', x.trim_start_matches("ca/").to_string()),
            _ => panic!("unexpected diff -r line: {line}"),
        };
        expected.insert(entry);
    }
    // Ours lists every path below an added or deleted directory; diff -r only the top.
    let mut tops = BTreeSet::new();
    let mut under: Vec<String> = Vec::new();
    for line in ours.lines() {
        let (letter, path) = line.split_once('\t').expect("LETTER<TAB>PATH");
        let letter = letter.chars().next().unwrap();
        if under.iter().any(|u| path.starts_with(&format!("{u}/"))) {
            assert!(matches!(letter, 'A' | 'D'), "{line}");
            continue;
        }
        if matches!(letter, 'A' | 'D' | 'T') {
            under.push(path.to_string());
        }
        tops.insert((letter, path.to_string()));
    }
    // diff -r cannot see a mode change, and sees kept/ only through kept/new.
    assert!(tops.remove(&('M', "chmodded".to_string())), "{ours}");
    assert_eq!(tops, expected, "ours:\n{ours}\ndiff -r:\n{theirs}");
    assert!(
        ours.contains("A\tadded/sub/a\n") && ours.contains("D\tgone/deep/f\n"),
        "{ours}"
    );
    assert!(
        !ours.contains("touched"),
        "a time alone shows only with -v: {ours}"
    );

    let verbose = zcommit(&store, &["diff", "-v", a, b]);
    assert!(verbose.contains("m\ttouched\n"), "{verbose}");
    let json = zcommit(&store, &["diff", "--json", a, b]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json.as_array().unwrap().len(), ours.lines().count());
    assert_eq!(zcommit(&store, &["diff", a, a]), "");
    // A stack is merged first: b over a still holds what only a had (b has no whiteouts).
    assert_eq!(
        zcommit(&store, &["diff", b, &format!("{a},{b}")]),
        "A\tgone\nA\tgone/deep\nA\tgone/deep/f\n"
    );
}

#[test]
fn diff_of_a_runtime_is_what_its_commit_records() {
    require!(util::have_fuse(), "needs root and /dev/fuse");
    let s = Scratch::new();
    let store = s.path("store");
    before_and_after(&s);
    let base = zcommit(&store, &["--tag", "base", s.path("a").to_str().unwrap()]);
    let script = "set -e; cd \"$ZKIT_MOUNT\"; echo new > edited; chmod 755 chmodded; \
                  rm -r gone; mkdir added && echo a > added/a; cat same > /dev/null";
    let out = util::bin("zmount")
        .args([
            "run", "--edit", "--name", "ci", "base", "--", "sh", "-c", script,
        ])
        .env("ZKIT_STORE", &store)
        .env("ZMOUNT_DIR", s.path("zm"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = zcommit(&store, &["diff", "--runtime", "ci"]);
    assert_eq!(
        before,
        "A\tadded\nA\tadded/a\nM\tchmodded\nM\tedited\nD\tgone\nD\tgone/deep\nD\tgone/deep/f\n"
    );
    let top = zcommit(&store, &["--runtime", "ci"]);
    assert_eq!(
        zcommit(
            &store,
            &[
                "diff",
                base.trim(),
                &format!("{},{}", base.trim(), top.trim())
            ]
        ),
        before
    );
    let _ = util::bin("zmount")
        .arg("stop")
        .env("ZMOUNT_DIR", s.path("zm"))
        .output();
}
