//! The command line's promises: usage errors exit 2, hints that fit, counts in English.

use super::*;

#[test]
fn usage_errors_are_usage_errors_and_a_missing_dir_is_not_to_be_created() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let out = zc(&store).arg(s.path("nosuchdir")).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no such directory") && !err.contains("create"),
        "{err}"
    );
    assert!(!s.path("nosuchdir").exists());
    // --discard only means something with --runtime; nothing is committed without it.
    for args in [&["--discard"][..], &["--discard", "tags"]] {
        let mut cmd = zc(&store);
        cmd.args(args);
        if args.len() == 1 {
            cmd.arg(&src);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(stderr_of(&out).contains("--runtime"), "{}", stderr_of(&out));
    }
    assert!(
        !store.join("layers").exists()
            || fs::read_dir(store.join("layers")).unwrap().next().is_none()
    );
    // --link-mode offers what a commit accepts, and only that.
    let help = String::from_utf8(zc(&store).arg("--help").output().unwrap().stdout).unwrap();
    let offered: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.contains("--link-mode"))
        .take_while(|l| !l.contains("[default"))
        .filter_map(|l| l.trim().strip_prefix("- ")?.split(':').next())
        .collect();
    assert_eq!(offered, ["clone-or-copy", "reflink", "copy"], "{help}");
    for mode in ["clone-or-copy", "copy"] {
        commit(&store, &["--link-mode", mode], &src);
    }
    for mode in ["hardlink", "auto"] {
        let out = zc(&store)
            .args(["--link-mode", mode])
            .arg(&src)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{mode}: {}", stderr_of(&out));
    }
    let completions = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/fish/zcommit.fish"),
    )
    .unwrap();
    // The values offered after the commit's --link-mode, up to the next completion.
    let offered: Vec<&str> = completions
        .lines()
        .skip_while(|l| !l.contains("needs_command\" -l link-mode"))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || !l.starts_with("complete "))
        .map(|(_, l)| l.split(['"', '\\']).find(|w| !w.is_empty()).unwrap_or(""))
        .collect();
    assert!(offered.len() == 3, "{offered:?}");
    assert!(
        !offered
            .iter()
            .any(|l| l.contains("hardlink") || l.starts_with("auto")),
        "{offered:?}"
    );
}

#[test]
fn counts_read_as_english() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("only"), b"one file").unwrap();
    symlink("only", src.join("link")).unwrap();
    let out = zc(&store).arg("-v").arg(&src).output().unwrap();
    assert!(out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("3 entries, 1 file, 1 hashed, 1 new blob (8 bytes"),
        "{err}"
    );
    let layer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = zc(&store)
        .arg("checkout")
        .arg(s.path("out"))
        .arg(&layer)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(
        err.contains(": 1 dir, 1 file (") && err.ends_with(", 1 symlink\n"),
        "{err}"
    );
    let out = zc(&store).arg("verify").output().unwrap();
    let said = String::from_utf8(out.stdout).unwrap();
    assert_eq!(said, "1 blob, 1 layer, 0 tags: all good\n");
    let out = bin("zlink")
        .arg("-r")
        .arg(&src)
        .arg(s.path("mirror"))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(
        err.contains("1 file:") && err.contains("; 1 dir, 1 symlink in"),
        "{err}"
    );
}
