//! The scratch library against real directories: beneath-root resolution, whiteouts, opaque
//! directories, atomic copy-up and merged listings.
// Tests: a thread the system refuses may fail them.
#![allow(clippy::disallowed_methods)]

mod util;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};
use util::Scratch as TestDir;
use zkit::scratch::listing::{self, Upper};
use zkit::scratch::{Attrs, Scratch, check_name, whiteout};

fn open(t: &TestDir) -> Scratch {
    Scratch::open(&t.path("scratch"), &t.path("work")).unwrap()
}

fn attrs(mode: u32) -> Attrs {
    let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
    Attrs {
        mode,
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        atime: UNIX_EPOCH + Duration::from_secs(1_000_000),
        mtime: UNIX_EPOCH + Duration::from_secs(2_000_000),
    }
}

fn errno(r: std::io::Result<impl Sized>) -> i32 {
    r.err().and_then(|e| e.raw_os_error()).expect("an errno")
}

#[test]
fn a_symlink_to_a_dir_outside_is_never_written_through() {
    let t = TestDir::new();
    let s = open(&t);
    // The "outside" the user points at: a directory the test made, standing in for /etc.
    let etc = t.path("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0\n").unwrap();
    std::os::unix::fs::symlink(&etc, t.path("scratch/link")).unwrap();

    assert!(matches!(
        errno(s.dir(Path::new("link"))),
        libc::ELOOP | libc::ENOTDIR
    ));
    assert!(matches!(
        errno(s.make_dirs(Path::new("link/sub"), |_| attrs(0o755))),
        libc::ELOOP | libc::ENOTDIR
    ));
    // A copy-up of `link/passwd` cannot even get a directory to land in; the root's own
    // `*at` calls treat `link` as what it is.
    let root = s.dir(Path::new("")).unwrap();
    let lower = t.write("lower", b"evil\n");
    assert!(
        !s.copy_up(
            &root,
            Path::new(""),
            OsStr::new("link"),
            Some(&File::open(&lower).unwrap()),
            &attrs(0o644)
        )
        .unwrap()
    );
    assert_eq!(std::fs::read(etc.join("passwd")).unwrap(), b"root:x:0:0\n");
    assert_eq!(util::names_in(&etc), ["passwd"]);
}

#[test]
fn whiteouts_and_opaque_dirs_are_plain_files_users_cannot_name() {
    let t = TestDir::new();
    let s = open(&t);
    let root = s.dir(Path::new("")).unwrap();
    whiteout::add(&root, OsStr::new("gone")).unwrap();
    whiteout::add(&root, OsStr::new("gone")).unwrap();
    assert!(whiteout::exists(&root, OsStr::new("gone")).unwrap());
    assert!(t.path("scratch/.wh.gone").is_file());
    assert!(!whiteout::is_opaque(&root).unwrap());
    whiteout::set_opaque(&root).unwrap();
    assert!(t.path("scratch/.wh..wh..opq").is_file());
    let up = Upper::read(&root).unwrap();
    assert!(up.opaque && up.names.is_empty());
    assert_eq!(
        up.whiteouts.iter().collect::<Vec<_>>(),
        [OsStr::new("gone")]
    );
    assert!(whiteout::remove(&root, OsStr::new("gone")).unwrap());
    assert!(!whiteout::remove(&root, OsStr::new("gone")).unwrap());

    assert_eq!(
        check_name(OsStr::new(".wh.x")),
        Err(rustix::io::Errno::PERM)
    );
    assert_eq!(
        check_name(OsStr::new(".wh..wh..opq")),
        Err(rustix::io::Errno::PERM)
    );
    assert_eq!(check_name(OsStr::new(".whx")), Ok(()));
    assert_eq!(
        check_name(&OsString::from("n".repeat(256))),
        Err(rustix::io::Errno::NAMETOOLONG)
    );
    // A 255-byte lower name has no room for the prefix.
    assert_eq!(
        errno(whiteout::add(&root, &OsString::from("n".repeat(255)))),
        libc::ENAMETOOLONG
    );
}

#[test]
fn a_dir_whose_only_entries_are_records_can_be_cleared_for_rmdir() {
    let t = TestDir::new();
    let s = open(&t);
    let d = s.make_dirs(Path::new("d"), |_| attrs(0o755)).unwrap();
    whiteout::add(&d, OsStr::new("x")).unwrap();
    whiteout::set_opaque(&d).unwrap();
    std::fs::write(t.path("scratch/d/user"), "").unwrap();
    assert_eq!(errno(whiteout::clear_records(&d)), libc::ENOTEMPTY);
    std::fs::remove_file(t.path("scratch/d/user")).unwrap();
    whiteout::clear_records(&d).unwrap();
    std::fs::remove_dir(t.path("scratch/d")).unwrap();
}

#[test]
fn copy_up_keeps_content_mode_owner_and_times_and_happens_once() {
    let t = TestDir::new();
    let s = open(&t);
    let lower = t.write("lower", b"hello\n");
    let mut a = attrs(0o4751);
    if util::is_root() {
        (a.uid, a.gid) = (1234, 5678);
    }
    let dir = s
        .make_dirs(Path::new("usr/bin"), |p| {
            attrs(if p == Path::new("usr") { 0o711 } else { 0o750 })
        })
        .unwrap();
    let src = File::open(&lower).unwrap();
    assert!(
        s.copy_up(
            &dir,
            Path::new("usr/bin"),
            OsStr::new("tool"),
            Some(&src),
            &a
        )
        .unwrap()
    );
    let up = t.path("scratch/usr/bin/tool");
    let m = std::fs::symlink_metadata(&up).unwrap();
    assert_eq!(std::fs::read(&up).unwrap(), b"hello\n");
    assert_eq!(m.permissions().mode() & 0o7777, 0o4751);
    assert_eq!((m.uid(), m.gid()), (a.uid, a.gid));
    assert_eq!(m.modified().unwrap(), a.mtime);
    assert_eq!(m.accessed().unwrap(), a.atime);
    let mode = |p: &str| std::fs::metadata(t.path(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        (mode("scratch/usr"), mode("scratch/usr/bin")),
        (0o711, 0o750)
    );

    // Already there: nothing is copied again, whatever the lower file says now.
    std::fs::write(&up, "changed").unwrap();
    assert!(
        !s.copy_up(
            &dir,
            Path::new("usr/bin"),
            OsStr::new("tool"),
            Some(&src),
            &a
        )
        .unwrap()
    );
    assert_eq!(std::fs::read(&up).unwrap(), b"changed");
    assert!(util::names_in(&t.path("work")).is_empty());
}

#[test]
fn concurrent_copy_ups_of_one_file_copy_it_once() {
    let t = TestDir::new();
    let s = open(&t);
    let lower = t.write("lower", &vec![7u8; 1 << 20]);
    let root = s.dir(Path::new("")).unwrap();
    let copied: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let src = File::open(&lower).unwrap();
                    s.copy_up(
                        &root,
                        Path::new(""),
                        OsStr::new("f"),
                        Some(&src),
                        &attrs(0o644),
                    )
                    .unwrap() as usize
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(copied, 1);
    assert_eq!(std::fs::read(t.path("scratch/f")).unwrap().len(), 1 << 20);
    assert_eq!(util::names_in(&t.path("scratch")), ["f"]);
    assert!(util::names_in(&t.path("work")).is_empty());
}

#[test]
fn a_copy_up_never_lands_over_a_file_created_meanwhile() {
    let t = TestDir::new();
    let s = open(&t);
    let root = s.dir(Path::new("")).unwrap();
    std::fs::write(t.path("scratch/f"), "new").unwrap();
    let src = File::open(t.write("lower", b"old")).unwrap();
    assert!(
        !s.copy_up(
            &root,
            Path::new(""),
            OsStr::new("f"),
            Some(&src),
            &attrs(0o644)
        )
        .unwrap()
    );
    assert_eq!(std::fs::read(t.path("scratch/f")).unwrap(), b"new");
    // An empty lower file (no blob) copies up as an empty file.
    assert!(
        s.copy_up(&root, Path::new(""), OsStr::new("e"), None, &attrs(0o600))
            .unwrap()
    );
    assert_eq!(std::fs::metadata(t.path("scratch/e")).unwrap().len(), 0);
}

#[test]
fn leftovers_of_a_crash_in_the_work_dir_go_when_scratch_is_opened() {
    let t = TestDir::new();
    drop(open(&t));
    std::fs::create_dir_all(t.path("work/.half-made-dir/sub")).unwrap();
    std::fs::write(t.path("work/.half-copied"), "partial").unwrap();
    std::os::unix::fs::symlink("/etc", t.path("work/.link")).unwrap();
    std::fs::write(t.path("scratch/kept"), "user data").unwrap();
    let s = open(&t);
    assert!(util::names_in(&t.path("work")).is_empty());
    assert_eq!(util::names_in(s.path()), ["kept"]);
    assert!(Path::new("/etc").is_dir());
}

#[test]
fn merged_listing_shows_scratch_over_lower_once_and_hides_whiteouts() {
    let t = TestDir::new();
    let s = open(&t);
    let root = s.dir(Path::new("")).unwrap();
    std::fs::write(t.path("scratch/b"), "").unwrap();
    std::fs::write(t.path("scratch/new"), "").unwrap();
    whiteout::add(&root, OsStr::new("c")).unwrap();
    let lower = ["a", "b", "c"].map(|n| (OsString::from(n), "lower"));
    let up = Upper::read(&root).unwrap();
    let merged = listing::merge(lower.clone(), &up, |_, _| "upper");
    let mut names: Vec<_> = merged
        .iter()
        .map(|e| (e.name.to_str().unwrap(), e.item))
        .collect();
    names.sort();
    assert_eq!(names, [("a", "lower"), ("b", "upper"), ("new", "upper")]);
    whiteout::set_opaque(&root).unwrap();
    let up = Upper::read(&root).unwrap();
    assert_eq!(listing::merge(lower, &up, |_, _| "upper").len(), 2);
}

/// Pages resume after a cookie: names there throughout appear exactly once however many
/// names come and go between pages.
#[test]
fn paged_listing_survives_changes_between_pages() {
    let t = TestDir::new();
    let s = open(&t);
    let root = s.dir(Path::new("")).unwrap();
    let lower: Vec<(OsString, ())> = (0..3000).map(|i| (format!("l{i}").into(), ())).collect();
    for i in 0..2000 {
        std::fs::write(t.path(&format!("scratch/s{i}")), "").unwrap();
    }
    let stable: std::collections::BTreeSet<String> = (0..3000)
        .map(|i| format!("l{i}"))
        .chain((0..2000).filter(|i| i % 2 == 0).map(|i| format!("s{i}")))
        .collect();
    let (mut offset, mut seen, mut round) = (listing::FIRST_COOKIE - 1, Vec::new(), 0);
    loop {
        let up = Upper::read(&root).unwrap();
        let all = listing::merge(lower.clone(), &up, |_, _| ());
        let page: Vec<_> = listing::after(&all, offset)
            .iter()
            .take(97)
            .cloned()
            .collect();
        let Some(last) = page.last() else { break };
        offset = last.cookie;
        seen.extend(page.iter().map(|e| e.name.to_str().unwrap().to_owned()));
        // Between pages: odd scratch names go and come back, new names appear.
        for i in (1..2000).step_by(2) {
            let p = t.path(&format!("scratch/s{i}"));
            if round % 2 == 0 {
                std::fs::remove_file(&p).unwrap();
            } else {
                std::fs::write(&p, "").unwrap();
            }
        }
        std::fs::write(t.path(&format!("scratch/n{round}")), "").unwrap();
        round += 1;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a name was listed twice");
    for name in &stable {
        assert!(seen.contains(name), "{name} was skipped");
    }
    assert!(round > 30, "only {round} pages");
}
