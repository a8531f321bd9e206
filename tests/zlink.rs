//! zlink on real kernels: hard links, reflinks on a loop-mounted XFS, cross-device runs onto a
//! tmpfs, errors from chattr and from strace's fault injection.

mod util;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use util::{LoopFs, Scratch, Tmpfs, bin, sh};
use zkit::link::{Linker, Mode, Tier};

type Arg<'a> = &'a dyn AsRef<OsStr>;

/// Run zlink with `args`, through `strace` with `strace_args` and its trace in `log` when
/// given: (exit code, stderr).
fn run(strace: Option<(&[&str], &Path)>, args: &[Arg]) -> (Option<i32>, String) {
    let mut cmd = match strace {
        Some((strace_args, log)) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-qq", "-o"]).arg(log).args(strace_args);
            c.arg(util::bin_path("zlink"));
            c
        }
        None => Command::new(util::bin_path("zlink")),
    };
    let out = cmd
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run zlink");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// zlink must succeed, and its stderr (the summary) contain each of `expect`.
fn ok(args: &[Arg], expect: &[&str]) -> String {
    let (code, err) = run(None, args);
    assert_eq!(code, Some(0), "zlink failed: {err}");
    assert_has(&err, expect);
    err
}

/// zlink must exit 1 with each of `expect` in its error.
fn fails(args: &[Arg], expect: &[&str]) -> String {
    let (code, err) = run(None, args);
    assert_eq!(code, Some(1), "zlink should have failed: {err}");
    assert_has(&err, expect);
    err
}

fn assert_has(text: &str, expect: &[&str]) {
    for e in expect {
        assert!(text.contains(e), "expected {e:?} in:\n{text}");
    }
}

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

fn chattr_i(path: &Path) {
    sh(&format!("chattr +i '{}'", path.display()));
}

/// A small tree: `dirs` directories of `files_per_dir` files each.
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
fn hard_link_shares_the_inode() {
    let s = Scratch::new();
    let src = s.write("a", b"data");
    ok(&[&src, &s.path("b")], &["1 file: 1 hard-linked"]);
    assert_eq!(ino(&src), ino(&s.path("b")));
}

#[test]
fn rerun_is_idempotent_when_dest_is_the_same_inode() {
    let s = Scratch::new();
    let src = s.write("a", b"data");
    ok(&[&src, &s.path("b")], &["1 hard-linked"]);
    ok(
        &[&src, &s.path("b")],
        &["0 hard-linked", "1 already linked"],
    );
}

#[test]
fn clone_or_copy_never_accepts_a_hard_link_left_by_an_earlier_run() {
    let s = Scratch::new();
    let src = s.write("a", b"data");
    ok(&[&src, &s.path("b")], &["1 hard-linked"]);
    let clone = [&"-m" as Arg, &"clone-or-copy", &src, &s.path("b")];
    fails(&clone, &["b: is a hard link to the source", "use -f"]);
    ok(&[&[&"-f" as Arg][..], &clone].concat(), &["1 replaced"]);
    assert_ne!(ino(&src), ino(&s.path("b")));
}

#[test]
fn library_clone_or_copy_copies_data_between_open_files() {
    let s = Scratch::new();
    let src = s.write("a", &vec![7u8; 300_000]);
    let dst = fs::File::create(s.path("b")).unwrap();
    let tier = zkit::link::clone_or_copy(&fs::File::open(&src).unwrap(), &dst).unwrap();
    assert!(matches!(tier, Tier::Reflink | Tier::Copy));
    assert_eq!(fs::read(s.path("b")).unwrap(), fs::read(&src).unwrap());
    assert_ne!(ino(&src), ino(&s.path("b")));
}

#[test]
fn library_linker_keeps_mode_bits_of_a_copy_and_never_overwrites() {
    let s = Scratch::new();
    let src = s.write("a", b"#!/bin/sh\n");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o4751)).unwrap();
    let linker = Linker::new(Mode::Copy);
    assert_eq!(linker.link_file(&src, &s.path("b")).unwrap(), Tier::Copy);
    assert_eq!(fs::metadata(s.path("b")).unwrap().mode() & 0o7777, 0o4751);
    let again = linker.link_file(&src, &s.path("b")).unwrap_err();
    assert!(matches!(again.kind, zkit::ErrorKind::Exists), "{again}");
}

#[test]
fn existing_different_dest_fails_without_force_and_is_replaced_atomically_with_it() {
    let s = Scratch::new();
    let src = s.write("a", b"new");
    let dst = s.write("b", b"old");
    fails(&[&src, &dst], &["b: already exists", "(use -f"]);
    assert_eq!(fs::read(&dst).unwrap(), b"old");

    ok(&[&"-f", &src, &dst], &["1 replaced"]);
    assert_eq!(ino(&src), ino(&dst));
    assert_eq!(s.names(), ["a", "b"], "no temporary left behind");

    // Through the copy tier as well, and over a symlink (the link itself is replaced).
    symlink("a", s.path("c")).unwrap();
    ok(&[&"-f", &"-m", &"copy", &src, &s.path("c")], &["1 copied"]);
    assert!(fs::symlink_metadata(s.path("c")).unwrap().is_file());
    assert_eq!(fs::read(s.path("c")).unwrap(), b"new");
    assert_eq!(s.names(), ["a", "b", "c"]);
}

#[test]
fn tree_keeps_dirs_modes_symlinks_and_times() {
    let s = Scratch::new();
    let src = s.path("src");
    for dir in ["bin", "ro", "private", "empty"] {
        fs::create_dir_all(src.join(dir)).unwrap();
    }
    for (name, mode) in [
        ("bin/tool", 0o755),
        ("secret", 0o600),
        ("suid", 0o4755),
        ("ro/x", 0o444),
    ] {
        fs::write(src.join(name), name).unwrap();
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    symlink("bin/tool", src.join("link")).unwrap();
    symlink("nowhere", src.join("dangling")).unwrap();
    symlink("/etc/hostname", src.join("bin/abs")).unwrap();
    for (dir, mode) in [("ro", 0o555), ("private", 0o700), ("bin", 0o2751)] {
        fs::set_permissions(src.join(dir), fs::Permissions::from_mode(mode)).unwrap();
    }
    sh(&format!(
        "touch -h -d '2001-02-03 04:05:06.789' '{0}' '{0}'/*",
        src.display()
    ));

    for mode in ["auto", "copy", "clone-or-copy"] {
        let dst = s.path(&format!("dst-{mode}"));
        ok(
            &[&"-r", &"-m", &mode, &src, &dst],
            &["4 files", "5 dirs", "3 symlinks"],
        );
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
            assert_eq!(
                (a.mtime(), a.mtime_nsec()),
                (b.mtime(), b.mtime_nsec()),
                "{mode}: mtime of dir '{dir}'"
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
            assert_eq!(
                (a.mtime(), a.mtime_nsec()),
                (b.mtime(), b.mtime_nsec()),
                "{mode}: {file}"
            );
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
    }
}

#[test]
fn tree_rerun_is_idempotent_and_force_replaces_changed_entries() {
    let s = Scratch::new();
    let (src, dst) = (s.path("src"), s.path("dst"));
    make_tree(&src, 3, 5);
    symlink("d0/f0", src.join("link")).unwrap();
    ok(&[&"-r", &src, &dst], &["15 hard-linked"]);
    // -T: DEST is the mirror itself, so a re-run does not nest src inside it.
    ok(&[&"-r", &"-T", &src, &dst], &["15 already linked"]);

    fs::remove_file(dst.join("d1/f1")).unwrap();
    fs::write(dst.join("d1/f1"), "edited").unwrap();
    fs::remove_file(dst.join("link")).unwrap();
    symlink("elsewhere", dst.join("link")).unwrap();
    fails(&[&"-r", &"-T", &src, &dst], &["already exists"]);

    ok(&[&"-r", &"-T", &"-f", &src, &dst], &["1 replaced"]);
    assert_eq!(ino(&src.join("d1/f1")), ino(&dst.join("d1/f1")));
    assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("d0/f0"));
}

#[test]
fn several_sources_go_into_a_directory() {
    let s = Scratch::new();
    let (a, b) = (s.write("a", b"a"), s.write("b", b"b"));
    fs::create_dir(s.path("into")).unwrap();
    ok(&[&a, &b, &s.path("into")], &["2 files: 2 hard-linked"]);
    assert_eq!(util::names_in(&s.path("into")), ["a", "b"]);
    let (code, err) = run(None, &[&a, &b, &s.path("missing")]);
    assert_eq!(code, Some(2), "several sources need a directory: {err}");
}

#[test]
fn special_files_are_refused_with_a_message() {
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 1, 2);
    sh(&format!("mkfifo '{}'", src.join("d0/fifo").display()));
    fails(
        &[&"-r", &src, &s.path("dst")],
        &["fifo: is a FIFO", "special files are refused"],
    );
    // A FIFO named on the command line is refused too, without blocking on it.
    fails(&[&src.join("d0/fifo"), &s.path("f")], &["is a FIFO"]);

    fs::remove_file(src.join("d0/fifo")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    fails(&[&"-r", &src, &s.path("dst2")], &["sock: is a socket"]);
}

#[test]
fn device_nodes_are_refused() {
    require!(util::is_root(), "mknod needs root");
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 1, 1);
    sh(&format!("mknod '{}' c 1 3", src.join("null").display()));
    fails(
        &[&"-r", &src, &s.path("dst")],
        &["null: is a character device"],
    );
}

#[test]
fn destination_inside_the_source_is_refused() {
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 2, 2);
    for dst in [src.join("d0/mirror"), src.clone(), src.join("new/deeper")] {
        fails(
            &[&"-r", &"-T", &src, &dst],
            &["destination is inside the source"],
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
    assert!(
        out.stderr.is_empty(),
        "-q: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    assert_has(
        &json,
        &[
            "\"files\":6,",
            "\"hardlinked\":6,",
            "\"copied\":0,",
            "\"bytes_copied\":0,",
            "\"dirs\":3,",
        ],
    );

    let err = ok(
        &[&"-r", &"-v", &"-m", &"copy", &src, &s.path("v")],
        &["6 copied (54 B)"],
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("copy ")).count(),
        6,
        "{err}"
    );
    assert_has(
        &err,
        &[&format!("copy     {}", s.path("v/d1/f2").display())],
    );
}

#[test]
fn missing_source_is_an_error_not_a_fallback() {
    let s = Scratch::new();
    fails(
        &[&s.path("nope"), &s.path("b")],
        &["nope: cannot stat: No such file"],
    );
    assert_eq!(s.names(), Vec::<String>::new());
}

#[test]
fn cross_device_copies_and_makes_one_failing_link_call() {
    require!(util::is_root(), "mounting a tmpfs needs root");
    require!(util::have("strace"), "strace counts the link calls");
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 4, 25);
    let tmpfs = Tmpfs::new("64m");
    let (log, dst) = (s.path("trace"), tmpfs.path("dst"));
    let (code, err) = run(
        Some((&["-e", "trace=link,linkat"], &log)),
        &[&"-r", &"-j", &"4", &src, &dst],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_has(&err, &["100 files: 0 hard-linked, 0 reflinked, 100 copied"]);
    let trace = fs::read_to_string(&log).unwrap();
    let failed = trace.lines().filter(|l| l.contains("EXDEV")).count();
    assert_eq!(
        failed, 1,
        "one failing link for the device pair, 4 workers or not:\n{trace}"
    );
    assert_eq!(fs::read(dst.join("d3/f24")).unwrap(), b"file 3/24\n");

    // A strict mode names the errno and the mode that would work.
    let x = tmpfs.path("x");
    fails(
        &[&"-m", &"hardlink", &src.join("d0/f0"), &x],
        &["cannot hard link", "[EXDEV]", "-m auto"],
    );
    assert!(!x.exists());
}

#[test]
fn immutable_source_falls_back_in_auto_and_fails_in_hardlink() {
    require!(util::is_root(), "chattr +i needs root");
    let s = Scratch::new();
    let src = s.write("a", b"sealed");
    chattr_i(&src);
    fails(
        &[&"-m", &"hardlink", &src, &s.path("h")],
        &["cannot hard link", "[EPERM]", "-m auto"],
    );
    assert!(!s.path("h").exists());

    ok(&[&src, &s.path("b")], &["0 hard-linked"]);
    assert_ne!(ino(&src), ino(&s.path("b")));
    assert_eq!(fs::read(s.path("b")).unwrap(), b"sealed");
}

#[test]
fn injected_eperm_and_emlink_fall_back_per_file() {
    require!(util::have("strace"), "strace injects the errors");
    let s = Scratch::new();
    let src = s.path("src");
    make_tree(&src, 2, 3);
    for errno in ["EPERM", "EMLINK"] {
        let inject = format!("inject=linkat:error={errno}");
        let (log, dst) = (s.path("trace"), s.path(&format!("dst-{errno}")));
        let (code, err) = run(
            Some((&["-e", "trace=linkat", "-e", &inject], &log)),
            &[&"-r", &src, &dst],
        );
        assert_eq!(code, Some(0), "{errno}: {err}");
        assert_has(&err, &["6 files: 0 hard-linked"]);
        // Per file, not learnt: every file tried its hard link, then fell back.
        let trace = fs::read_to_string(&log).unwrap();
        assert_eq!(
            trace.lines().filter(|l| l.contains(errno)).count(),
            6,
            "{trace}"
        );
        assert_eq!(fs::read(dst.join("d1/f2")).unwrap(), b"file 1/2\n");

        let strict = [
            &"-m" as Arg,
            &"hardlink",
            &src.join("d0/f0"),
            &s.path("strict"),
        ];
        let (code, err) = run(Some((&["-e", &inject], &log)), &strict);
        assert_eq!(code, Some(1), "{err}");
        assert_has(&err, &[&format!("[{errno}]"), "-m auto"]);
    }
}

#[test]
fn injected_eacces_eio_and_enospc_are_errors_not_fallbacks() {
    require!(util::have("strace"), "strace injects the errors");
    let s = Scratch::new();
    let src = s.write("a", b"data");
    let dst = s.path("b");
    for (errno, text) in [
        ("EACCES", "Permission denied"),
        ("EIO", "Input/output error"),
        ("ENOSPC", "No space left"),
    ] {
        let inject = format!("inject=linkat:error={errno}");
        let (code, err) = run(Some((&["-e", &inject], &s.path("trace"))), &[&src, &dst]);
        assert_eq!(code, Some(1), "{errno}: {err}");
        assert_has(&err, &["cannot hard link", text]);
        assert!(!dst.exists(), "{errno} must not fall back to a copy");
    }
}

#[test]
fn a_full_destination_leaves_no_partial_copy() {
    require!(util::is_root(), "mounting a tmpfs needs root");
    let s = Scratch::new();
    let src = s.write("big", &vec![1u8; 4 << 20]);
    let tmpfs = Tmpfs::new("1m");
    fails(&[&src, &tmpfs.path("big")], &["cannot copy: No space left"]);
    assert!(!tmpfs.path("big").exists());
}

#[test]
fn reflink_on_xfs_shares_extents_and_survives_an_edit_of_the_source() {
    require!(util::is_root(), "loop mounts need root");
    require!(
        util::have("mkfs.xfs") && util::have("filefrag"),
        "xfsprogs and e2fsprogs"
    );
    let xfs = LoopFs::new("xfs");
    let original: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let (src, dst) = (xfs.path("src"), xfs.path("dst"));
    fs::write(&src, &original).unwrap();
    ok(&[&"-m", &"reflink", &src, &dst], &["1 reflinked"]);
    assert_ne!(ino(&src), ino(&dst));
    let frag = sh(&format!("filefrag -v '{}'", dst.display()));
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
    ok(
        &[
            &"-r",
            &"-m",
            &"reflink",
            &xfs.path("tree"),
            &xfs.path("mirror"),
        ],
        &["12 reflinked"],
    );
    let into = fs::File::create(xfs.path("ingest")).unwrap();
    let tier = zkit::link::clone_or_copy(&fs::File::open(&dst).unwrap(), &into).unwrap();
    assert_eq!(tier, Tier::Reflink);
    assert_eq!(fs::read(xfs.path("ingest")).unwrap(), original);
}

#[test]
fn no_reflinks_on_ext4_fall_back_to_copy_or_fail_in_reflink_mode() {
    require!(util::is_root(), "loop mounts need root");
    require!(util::have("mkfs.ext4"), "e2fsprogs");
    let ext4 = LoopFs::new("ext4");
    let src = ext4.path("src");
    fs::write(&src, b"plain").unwrap();
    let r = ext4.path("r");
    fails(
        &[&"-m", &"reflink", &src, &r],
        &["cannot reflink", "[EOPNOTSUPP]", "-m clone-or-copy"],
    );
    assert!(!r.exists(), "no empty file left behind");

    ok(
        &[&"-m", &"clone-or-copy", &src, &ext4.path("c")],
        &["0 reflinked, 1 copied"],
    );
    assert_ne!(ino(&src), ino(&ext4.path("c")));

    // auto reaches the reflink tier when the hard link is refused, and copies.
    chattr_i(&src);
    ok(
        &[&src, &ext4.path("a")],
        &["0 hard-linked, 0 reflinked, 1 copied"],
    );
    assert_eq!(fs::read(ext4.path("a")).unwrap(), b"plain");
}

#[test]
fn a_file_at_ext4s_link_limit_falls_back_to_a_copy() {
    require!(util::is_root(), "loop mounts need root");
    require!(util::have("mkfs.ext4"), "e2fsprogs");
    let ext4 = LoopFs::new("ext4");
    let src = ext4.path("src");
    fs::write(&src, b"popular").unwrap();
    let links = ext4.path("links");
    fs::create_dir(&links).unwrap();
    // ext4 allows 65000 links to a file; take them all.
    for i in 1..65_000 {
        fs::hard_link(&src, links.join(i.to_string())).unwrap();
    }
    assert_eq!(fs::metadata(&src).unwrap().nlink(), 65_000);

    let err = fails(
        &[&"-m", &"hardlink", &src, &ext4.path("h")],
        &["[EMLINK]", "-m auto"],
    );
    assert!(
        err.contains("as many links as its file system allows"),
        "{err}"
    );
    ok(
        &[&src, &ext4.path("a")],
        &["0 hard-linked, 0 reflinked, 1 copied"],
    );
    assert_eq!(fs::read(ext4.path("a")).unwrap(), b"popular");
}

#[test]
fn copies_keep_extended_attributes_and_acls() {
    require!(
        util::have("setfattr") && util::have("setfacl"),
        "attr and acl"
    );
    let s = Scratch::new();
    let src = s.write("a", b"data");
    let p = src.display();
    sh(&format!(
        "setfattr -n user.zkit -v hello '{p}' && setfacl -m u:nobody:rw '{p}'"
    ));
    ok(&[&"-m", &"copy", &src, &s.path("b")], &["1 copied"]);
    let b = s.path("b");
    let attrs = sh(&format!(
        "getfattr --only-values -n user.zkit '{}'",
        b.display()
    ));
    assert_eq!(attrs, "hello");
    let acl = sh(&format!("getfacl -c '{}'", b.display()));
    assert!(acl.contains("user:nobody:rw-"), "{acl}");
    let (a, b) = (fs::metadata(&src).unwrap(), fs::metadata(&b).unwrap());
    assert_eq!(a.mode() & 0o7777, b.mode() & 0o7777);
}
