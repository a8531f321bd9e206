//! zlink on real kernels: hard links, reflinks on a loop-mounted XFS, cross-device runs onto a
//! tmpfs, errors from chattr and from strace's fault injection.

mod util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use util::{Scratch, Tmpfs, bin};

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn hard_link_shares_the_inode() {
    let s = Scratch::new();
    let src = s.write("a", b"data");
    let out = bin("zlink").arg(&src).arg(s.path("b")).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(ino(&src), ino(&s.path("b")));
    assert!(
        stderr_of(&out).contains("1 hard-linked"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn rerun_is_idempotent_when_dest_is_the_same_inode() {
    let s = Scratch::new();
    let src = s.write("a", b"data");
    for _ in 0..2 {
        bin("zlink").arg(&src).arg(s.path("b")).assert().success();
    }
    let out = bin("zlink").arg(&src).arg(s.path("b")).output().unwrap();
    assert!(out.status.success());
    assert!(
        stderr_of(&out).contains("1 already linked"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn library_clone_or_copy_copies_data_between_open_files() {
    let s = Scratch::new();
    let src = s.write("a", &vec![7u8; 300_000]);
    let dst = fs::File::create(s.path("b")).unwrap();
    let tier = zkit::link::clone_or_copy(&fs::File::open(&src).unwrap(), &dst).unwrap();
    assert!(matches!(
        tier,
        zkit::link::Tier::Reflink | zkit::link::Tier::Copy
    ));
    assert_eq!(fs::read(s.path("b")).unwrap(), fs::read(&src).unwrap());
    assert_ne!(ino(&src), ino(&s.path("b")));
}

#[test]
fn library_linker_keeps_mode_bits_of_a_copy() {
    let s = Scratch::new();
    let src = s.write("a", b"#!/bin/sh\n");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o4751)).unwrap();
    let linker = zkit::link::Linker::new(zkit::link::Mode::Copy);
    let tier = linker.link_file(&src, &s.path("b")).unwrap();
    assert_eq!(tier, zkit::link::Tier::Copy);
    assert_eq!(fs::metadata(s.path("b")).unwrap().mode() & 0o7777, 0o4751);
    let again = linker.link_file(&src, &s.path("b")).unwrap_err();
    assert!(matches!(again.kind, zkit::ErrorKind::Exists), "{again}");
}

/// Run zlink under strace with `strace_args` (e.g. fault injection); the trace goes to `log`.
fn zlink_traced(strace_args: &[&str], log: &Path, args: &[&Path]) -> std::process::Output {
    std::process::Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(log)
        .args(strace_args)
        .arg(util::bin_path("zlink"))
        .args(args)
        .output()
        .expect("run strace")
}

fn can_strace() -> bool {
    util::have("strace")
}

/// A small tree: files in a few directories.
fn make_tree(root: &Path, dirs: usize, files_per_dir: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..files_per_dir {
            fs::write(dir.join(format!("f{f}")), format!("file {d}/{f}\n")).unwrap();
        }
    }
}

#[test]
fn existing_different_dest_fails_without_force_and_is_replaced_atomically_with_it() {
    let s = Scratch::new();
    let src = s.write("a", b"new");
    let dst = s.write("b", b"old");
    let out = bin("zlink").arg(&src).arg(&dst).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("already exists") && stderr_of(&out).contains("-f"));
    assert_eq!(fs::read(&dst).unwrap(), b"old");

    bin("zlink")
        .arg("-f")
        .arg(&src)
        .arg(&dst)
        .assert()
        .success();
    assert_eq!(ino(&src), ino(&dst));
    assert_eq!(s.names(), ["a", "b"], "no temporary left behind");

    // Through the copy tier as well, and over a symlink (the link itself is replaced).
    std::os::unix::fs::symlink("a", s.path("c")).unwrap();
    bin("zlink")
        .args(["-f", "-m", "copy"])
        .arg(&src)
        .arg(s.path("c"))
        .assert()
        .success();
    assert!(fs::symlink_metadata(s.path("c")).unwrap().is_file());
    assert_eq!(fs::read(s.path("c")).unwrap(), b"new");
    assert_eq!(s.names(), ["a", "b", "c"]);
}

#[test]
fn tree_keeps_dirs_modes_symlinks_and_times() {
    let s = Scratch::new();
    let src = s.path("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("ro")).unwrap();
    fs::create_dir_all(src.join("private")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    for (name, mode) in [
        ("bin/tool", 0o755),
        ("secret", 0o600),
        ("suid", 0o4755),
        ("ro/x", 0o444),
    ] {
        fs::write(src.join(name), name).unwrap();
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::symlink("bin/tool", src.join("link")).unwrap();
    std::os::unix::fs::symlink("nowhere", src.join("dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", src.join("bin/abs")).unwrap();
    fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(src.join("bin"), fs::Permissions::from_mode(0o2751)).unwrap();

    for mode in ["auto", "copy", "clone-or-copy"] {
        let dst = s.path(&format!("dst-{mode}"));
        let out = bin("zlink")
            .args(["-r", "-m", mode])
            .arg(&src)
            .arg(&dst)
            .output()
            .unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr_of(&out));
        for dir in ["", "bin", "ro", "private", "empty"] {
            let (a, b) = (
                fs::metadata(src.join(dir)).unwrap(),
                fs::metadata(dst.join(dir)).unwrap(),
            );
            assert!(b.is_dir());
            assert_eq!(
                a.mode() & 0o7777,
                b.mode() & 0o7777,
                "{mode}: mode of dir '{dir}'"
            );
        }
        for file in ["bin/tool", "secret", "suid", "ro/x"] {
            let (a, b) = (
                fs::metadata(src.join(file)).unwrap(),
                fs::metadata(dst.join(file)).unwrap(),
            );
            assert_eq!(
                a.mode() & 0o7777,
                b.mode() & 0o7777,
                "{mode}: mode of {file}"
            );
            assert_eq!(a.mtime(), b.mtime(), "{mode}: mtime of {file}");
            assert_eq!(a.mtime_nsec(), b.mtime_nsec(), "{mode}: mtime of {file}");
            assert_eq!(
                fs::read(src.join(file)).unwrap(),
                fs::read(dst.join(file)).unwrap()
            );
            assert_eq!(
                a.ino() == b.ino(),
                mode == "auto",
                "{mode}: inode sharing of {file}"
            );
        }
        for link in ["link", "dangling", "bin/abs"] {
            assert!(
                fs::symlink_metadata(dst.join(link))
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
            assert_eq!(
                fs::read_link(src.join(link)).unwrap(),
                fs::read_link(dst.join(link)).unwrap()
            );
            // Hard-linked like cp -al where hard links are allowed, recreated otherwise.
            let shared = ino(&src.join(link)) == ino(&dst.join(link));
            assert_eq!(shared, mode == "auto", "{mode}: {link}");
        }
        assert!(stderr_of(&out).contains("4 files"), "{}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("3 symlinks"),
            "{}",
            stderr_of(&out)
        );
    }
}

#[test]
fn tree_rerun_is_idempotent_and_force_replaces_changed_entries() {
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 3, 5);
    std::os::unix::fs::symlink("d0/f0", src.join("link")).unwrap();
    let dst = s.path("dst");
    bin("zlink")
        .arg("-r")
        .arg(&src)
        .arg(&dst)
        .assert()
        .success();
    // -T: DEST is the mirror itself, so a re-run does not nest src inside it.
    let out = bin("zlink")
        .args(["-r", "-T"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("15 already linked"),
        "{}",
        stderr_of(&out)
    );

    fs::remove_file(dst.join("d1/f1")).unwrap();
    fs::write(dst.join("d1/f1"), "edited").unwrap();
    fs::remove_file(dst.join("link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", dst.join("link")).unwrap();
    let out = bin("zlink")
        .args(["-r", "-T"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("already exists"),
        "{}",
        stderr_of(&out)
    );

    let out = bin("zlink")
        .args(["-r", "-T", "-f"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(ino(&src.join("d1/f1")), ino(&dst.join("d1/f1")));
    assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("d0/f0"));
    assert!(
        stderr_of(&out).contains("1 replaced"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn several_sources_go_into_a_directory() {
    let s = Scratch::new();
    let (a, b) = (s.write("a", b"a"), s.write("b", b"b"));
    fs::create_dir(s.path("into")).unwrap();
    bin("zlink")
        .arg(&a)
        .arg(&b)
        .arg(s.path("into"))
        .assert()
        .success();
    assert_eq!(util::names_in(&s.path("into")), ["a", "b"]);
    let out = bin("zlink")
        .arg(&a)
        .arg(&b)
        .arg(s.path("missing"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "several sources need a directory"
    );
}

#[test]
fn special_files_are_refused_with_a_message() {
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 1, 2);
    sh_ok(&format!("mkfifo '{}'", src.join("d0/fifo").display()));
    let out = bin("zlink")
        .arg("-r")
        .arg(&src)
        .arg(s.path("dst"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("fifo: is a FIFO"),
        "{}",
        stderr_of(&out)
    );
    // A FIFO named on the command line is refused too, without blocking on it.
    let out = bin("zlink")
        .arg(src.join("d0/fifo"))
        .arg(s.path("f"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("is a FIFO"), "{}", stderr_of(&out));

    fs::remove_file(src.join("d0/fifo")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let out = bin("zlink")
        .arg("-r")
        .arg(&src)
        .arg(s.path("dst2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("is a socket"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn device_nodes_are_refused() {
    require!(util::is_root(), "mknod needs root");
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 1, 1);
    sh_ok(&format!("mknod '{}' c 1 3", src.join("null").display()));
    let out = bin("zlink")
        .arg("-r")
        .arg(&src)
        .arg(s.path("dst"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("is a character device"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn destination_inside_the_source_is_refused() {
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 2, 2);
    for dst in [src.join("d0/mirror"), src.clone(), src.join("new/deeper")] {
        let out = bin("zlink")
            .arg("-r")
            .arg("-T")
            .arg(&src)
            .arg(&dst)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", dst.display());
        assert!(
            stderr_of(&out).contains("inside the source"),
            "{}",
            stderr_of(&out)
        );
    }
    assert_eq!(util::names_in(&src), ["d0", "d1"]);
    assert_eq!(util::names_in(&src.join("d0")), ["f0", "f1"]);
}

#[test]
fn json_summary_on_stdout_and_verbose_tiers_on_stderr() {
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 2, 3);
    let out = bin("zlink")
        .args(["-r", "-q", "--json"])
        .arg(&src)
        .arg(s.path("dst"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "-q: {}", stderr_of(&out));
    let json = String::from_utf8(out.stdout).unwrap();
    for key in [
        "\"files\":6",
        "\"hardlinked\":6",
        "\"copied\":0",
        "\"bytes_copied\":0",
        "\"dirs\":3",
    ] {
        assert!(json.contains(key), "{key} in {json}");
    }
    let out = bin("zlink")
        .args(["-r", "-v", "-m", "copy"])
        .arg(&src)
        .arg(s.path("v"))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("copy ")).count(),
        6,
        "{err}"
    );
    assert!(
        err.contains(&format!("{}", s.path("v/d1/f2").display())),
        "{err}"
    );
}

#[test]
fn missing_source_is_an_error_not_a_fallback() {
    let s = Scratch::new();
    let out = bin("zlink")
        .arg(s.path("nope"))
        .arg(s.path("b"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("No such file"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(s.names(), Vec::<String>::new());
}

#[test]
fn cross_device_copies_and_makes_one_failing_link_call() {
    require!(util::is_root(), "mounting a tmpfs needs root");
    require!(can_strace(), "strace counts the link calls");
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 4, 25);
    let tmpfs = Tmpfs::new("64m");
    let log = s.path("trace");
    let dst = tmpfs.path("dst");
    let out = zlink_traced(
        &["-e", "trace=link,linkat"],
        &log,
        &[Path::new("-r"), Path::new("-j"), Path::new("4"), &src, &dst],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let trace = fs::read_to_string(&log).unwrap();
    let failed = trace.lines().filter(|l| l.contains("EXDEV")).count();
    assert_eq!(failed, 1, "one failing link for the device pair:\n{trace}");
    assert!(
        stderr_of(&out).contains("100 files: 0 hard-linked, 0 reflinked, 100 copied"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(fs::read(dst.join("d3/f24")).unwrap(), b"file 3/24\n");

    // Strict hard links name the errno and the mode that would work.
    let out = bin("zlink")
        .args(["-m", "hardlink"])
        .arg(src.join("d0/f0"))
        .arg(tmpfs.path("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("EXDEV") && err.contains("-m auto"), "{err}");
    assert!(!tmpfs.path("x").exists());
}

#[test]
fn immutable_source_falls_back_in_auto_and_fails_in_hardlink() {
    require!(util::is_root(), "chattr +i needs root");
    let s = Scratch::new();
    let src = s.write("a", b"sealed");
    sh_ok(&format!("chattr +i '{}'", src.display()));
    let out = bin("zlink")
        .args(["-m", "hardlink"])
        .arg(&src)
        .arg(s.path("h"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot hard link") && err.contains("EPERM") && err.contains("-m auto"),
        "{err}"
    );
    assert!(!s.path("h").exists());

    let out = bin("zlink").arg(&src).arg(s.path("b")).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_ne!(ino(&src), ino(&s.path("b")));
    assert_eq!(fs::read(s.path("b")).unwrap(), b"sealed");
    assert!(
        stderr_of(&out).contains("0 hard-linked"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn injected_eperm_and_emlink_fall_back_per_file() {
    require!(can_strace(), "strace injects the errors");
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 2, 3);
    for errno in ["EPERM", "EMLINK"] {
        let inject = format!("inject=linkat:error={errno}");
        let log = s.path("trace");
        let dst = s.path(&format!("dst-{errno}"));
        let out = zlink_traced(
            &["-e", "trace=linkat", "-e", &inject],
            &log,
            &[Path::new("-r"), &src, &dst],
        );
        assert!(out.status.success(), "{errno}: {}", stderr_of(&out));
        // Per file, not learnt: every file tried its hard link and then fell back.
        let trace = fs::read_to_string(&log).unwrap();
        assert_eq!(
            trace.lines().filter(|l| l.contains(errno)).count(),
            6,
            "{trace}"
        );
        assert!(
            stderr_of(&out).contains("6 files: 0 hard-linked"),
            "{}",
            stderr_of(&out)
        );
        assert_eq!(fs::read(dst.join("d1/f2")).unwrap(), b"file 1/2\n");

        let out = zlink_traced(
            &["-e", &inject],
            &log,
            &[
                Path::new("-m"),
                Path::new("hardlink"),
                &src.join("d0/f0"),
                &s.path("strict"),
            ],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr_of(&out).contains(errno), "{}", stderr_of(&out));
    }
}

#[test]
fn injected_eacces_and_eio_are_errors_not_fallbacks() {
    require!(can_strace(), "strace injects the errors");
    let s = Scratch::new();
    let src = s.write("a", b"data");
    for (errno, text) in [
        ("EACCES", "Permission denied"),
        ("EIO", "Input/output error"),
        ("ENOSPC", "No space left"),
    ] {
        let inject = format!("inject=linkat:error={errno}");
        let dst = s.path("b");
        let out = zlink_traced(&["-e", &inject], &s.path("trace"), &[&src, &dst]);
        assert_eq!(out.status.code(), Some(1), "{errno}");
        assert!(stderr_of(&out).contains(text), "{}", stderr_of(&out));
        assert!(!dst.exists(), "{errno} must not fall back to a copy");
    }
}

#[test]
fn a_full_destination_leaves_no_partial_copy() {
    require!(util::is_root(), "mounting a tmpfs needs root");
    let s = Scratch::new();
    let src = s.write("big", &vec![1u8; 4 << 20]);
    let tmpfs = Tmpfs::new("1m");
    let out = bin("zlink")
        .arg(&src)
        .arg(tmpfs.path("big"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("No space left"),
        "{}",
        stderr_of(&out)
    );
    assert!(!tmpfs.path("big").exists());
}

#[test]
fn reflink_on_xfs_shares_extents_and_survives_an_edit_of_the_source() {
    require!(util::is_root(), "loop mounts need root");
    require!(
        util::have("mkfs.xfs") && util::have("filefrag"),
        "xfsprogs and e2fsprogs"
    );
    let xfs = util::LoopFs::new("xfs");
    let original: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let src = xfs.path("src");
    fs::write(&src, &original).unwrap();
    let dst = xfs.path("dst");
    let out = bin("zlink")
        .args(["-m", "reflink"])
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("1 reflinked"),
        "{}",
        stderr_of(&out)
    );
    assert_ne!(ino(&src), ino(&dst));
    let frag = util::sh(&format!("filefrag -v '{}'", dst.display()));
    assert!(
        frag.contains("shared"),
        "extents shared with the source:\n{frag}"
    );

    // Copy-on-write: editing the source in place leaves the clone as it was.
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.write_all_at(b"EDITED", 4096).unwrap();
    f.sync_all().unwrap();
    assert_eq!(fs::read(&dst).unwrap(), original);
    assert_ne!(fs::read(&src).unwrap(), original);

    // A tree, and the library call the store uses.
    make_tree(&xfs.path("tree"), 3, 4);
    let out = bin("zlink")
        .args(["-r", "-m", "reflink"])
        .arg(xfs.path("tree"))
        .arg(xfs.path("mirror"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("12 reflinked"),
        "{}",
        stderr_of(&out)
    );
    let into = fs::File::create(xfs.path("ingest")).unwrap();
    let tier = zkit::link::clone_or_copy(&fs::File::open(&dst).unwrap(), &into).unwrap();
    assert_eq!(tier, zkit::link::Tier::Reflink);
    assert_eq!(fs::read(xfs.path("ingest")).unwrap(), original);
}

#[test]
fn no_reflinks_on_ext4_fall_back_to_copy_or_fail_in_reflink_mode() {
    require!(util::is_root(), "loop mounts need root");
    require!(util::have("mkfs.ext4"), "e2fsprogs");
    let ext4 = util::LoopFs::new("ext4");
    let src = ext4.path("src");
    fs::write(&src, b"plain").unwrap();
    let out = bin("zlink")
        .args(["-m", "reflink"])
        .arg(&src)
        .arg(ext4.path("r"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot reflink")
            && err.contains("EOPNOTSUPP")
            && err.contains("-m clone-or-copy"),
        "{err}"
    );
    assert!(!ext4.path("r").exists(), "no empty file left behind");

    let out = bin("zlink")
        .args(["-m", "clone-or-copy"])
        .arg(&src)
        .arg(ext4.path("c"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("1 copied"), "{}", stderr_of(&out));
    assert_ne!(ino(&src), ino(&ext4.path("c")));

    // auto reaches the reflink tier when the hard link is refused, and copies.
    sh_ok(&format!("chattr +i '{}'", src.display()));
    let out = bin("zlink").arg(&src).arg(ext4.path("a")).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("0 reflinked, 1 copied"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(fs::read(ext4.path("a")).unwrap(), b"plain");
}

fn sh_ok(script: &str) {
    util::sh(script);
}
