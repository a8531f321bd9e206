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
    // And so does completion (the tool answers the shell's Tab itself).
    let out = std::process::Command::new(util::bin_path("zcommit"))
        .env("COMPLETE", "bash")
        .env("_CLAP_IFS", "\n")
        .env("_CLAP_COMPLETE_INDEX", "2")
        .args(["--", "zcommit", "--link-mode", ""])
        .output()
        .unwrap();
    let completions = String::from_utf8(out.stdout).unwrap();
    let offered: Vec<&str> = completions.lines().collect();
    assert_eq!(offered, ["clone-or-copy", "reflink", "copy"]);
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

#[test]
fn listings_have_json_for_scripts_with_every_name_exact() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("plain"), b"x").unwrap();
    // A name that is not UTF-8 comes back as its bytes, so a script can find the file.
    let odd = std::ffi::OsStr::from_bytes(b"odd\n\xff");
    fs::write(src.join(odd), b"y").unwrap();
    let layer = commit(&store, &["-t", "app/1"], &src);
    let json = |args: &[&str]| -> serde_json::Value {
        let out = zc(&store).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    let tags = json(&["tags", "--json"]);
    assert_eq!(tags["tags"][0]["name"], "app/1");
    assert_eq!(tags["tags"][0]["layers"], serde_json::json!([layer]));
    assert_eq!(tags["damaged"], serde_json::json!([]));
    assert_eq!(json(&["layers", "--json"]), serde_json::json!([layer]));
    let entries = json(&["ls", "--json", "app/1"]);
    let paths: Vec<&serde_json::Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["path"])
        .collect();
    assert!(
        paths.contains(&&serde_json::json!([111, 100, 100, 10, 255])),
        "{entries}"
    );
    let plain = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "plain")
        .unwrap();
    assert_eq!(plain["kind"], "file");
    assert_eq!(plain["size"], 1);
    assert_eq!(plain["mode"], 0o644);
    let report = json(&["verify", "--json"]);
    assert_eq!(report["blobs"], 2);
    assert_eq!(report["damaged"], serde_json::json!([]));
    assert_eq!(json(&["runtimes", "--json"]), serde_json::json!([]));

    // A damaged tag is named in the JSON, and the exit status still says so.
    fs::write(store.join("tags/bad"), b"not a digest\n").unwrap();
    let out = zc(&store).args(["tags", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let tags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tags["tags"].as_array().unwrap().len(), 1);
    assert!(
        tags["damaged"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("tags/bad"),
        "{tags}"
    );
    // -q leaves verify's verdict to the exit status (the bad tag is damage).
    let out = zc(&store).args(["-q", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(stderr_of(&out).contains("tags/bad"), "{}", stderr_of(&out));
}
