//! Trees deeper than PATH_MAX: committed and checked out by directory descriptor.

use super::*;

/// Build, below `root`, a tree whose deepest paths are longer than PATH_MAX (4096 bytes):
/// 28 levels of 200-byte names, with files, a symlink and a read-only directory on the way.
/// Made by descriptor, as no path to the bottom can be handed to the kernel.
fn deeper_than_path_max(root: &Path) {
    use rustix::fs::{Mode, OFlags, mkdirat, openat, symlinkat};
    fs::create_dir(root).unwrap();
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY;
    let mut dir = openat(rustix::fs::CWD, root, dir_flags, Mode::empty()).unwrap();
    for level in 0..28 {
        let name = format!("{level:0>200}");
        if level % 9 == 0 {
            let f = openat(
                &dir,
                format!("file-{level}"),
                OFlags::WRONLY | OFlags::CREATE,
                Mode::from_raw_mode(0o640),
            )
            .unwrap();
            rustix::io::write(&f, format!("at level {level}").as_bytes()).unwrap();
        }
        mkdirat(&dir, &name, Mode::from_raw_mode(0o755)).unwrap();
        dir = openat(&dir, &name, dir_flags, Mode::empty()).unwrap();
    }
    let f = openat(
        &dir,
        "bottom",
        OFlags::WRONLY | OFlags::CREATE,
        Mode::from_raw_mode(0o600),
    )
    .unwrap();
    rustix::io::write(&f, b"the bottom").unwrap();
    symlinkat("bottom", &dir, "link").unwrap();
    mkdirat(&dir, "read-only", Mode::from_raw_mode(0o755)).unwrap();
    let ro = openat(&dir, "read-only", dir_flags, Mode::empty()).unwrap();
    drop(
        openat(
            &ro,
            "in-it",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .unwrap(),
    );
    rustix::fs::fchmod(&ro, Mode::from_raw_mode(0o555)).unwrap();
}

/// [`snapshot`] by descriptor: works at any depth.
fn snapshot_at(root: &Path) -> BTreeMap<Vec<u8>, (char, u32, Vec<u8>)> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags, openat, statat};
    fn walk(
        dir: &std::os::fd::OwnedFd,
        rel: &[u8],
        out: &mut BTreeMap<Vec<u8>, (char, u32, Vec<u8>)>,
    ) {
        for entry in rustix::fs::Dir::read_from(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let mut path = rel.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name.to_bytes());
            let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).unwrap();
            // u32 on Linux, u16 on the BSDs and macOS.
            #[allow(clippy::unnecessary_cast)]
            let mode = (st.st_mode & 0o7777) as u32;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
                    let sub = openat(dir, name, flags, Mode::empty()).unwrap();
                    walk(&sub, &path, out);
                    out.insert(path, ('d', mode, vec![]));
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(dir, name, Vec::new()).unwrap();
                    out.insert(path, ('l', 0, target.into_bytes()));
                }
                _ => {
                    let f = openat(dir, name, OFlags::RDONLY, Mode::empty()).unwrap();
                    let mut content = Vec::new();
                    std::io::Read::read_to_end(&mut fs::File::from(f), &mut content).unwrap();
                    out.insert(path, ('f', mode, content));
                }
            }
        }
    }
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY;
    let dir = openat(rustix::fs::CWD, root, flags, Mode::empty()).unwrap();
    let mut out = BTreeMap::new();
    walk(&dir, b"", &mut out);
    out
}

#[test]
fn a_tree_deeper_than_path_max_commits_and_checks_out_as_zlink_mirrors_it() {
    let s = Scratch::new();
    let (store, src) = (s.path("store"), s.path("src"));
    deeper_than_path_max(&src);
    let want = snapshot_at(&src);
    let longest = want.keys().map(Vec::len).max().unwrap();
    assert!(longest > 5000, "the tree is only {longest} bytes deep");

    let layer = commit(&store, &[], &src);
    assert_eq!(commit(&store, &[], &src), layer, "through the cache");
    assert_eq!(commit(&store, &["--no-cache"], &src), layer);
    let listing = zc(&store).arg("ls").arg(&layer).output().unwrap();
    assert!(listing.status.success(), "{}", stderr_of(&listing));
    let bottom = want.keys().find(|k| k.ends_with(b"/bottom")).unwrap();
    assert!(
        listing
            .stdout
            .windows(bottom.len())
            .any(|w| w == &bottom[..])
    );

    let out = s.path("out");
    checkout(&store, &out, &[&layer]);
    assert_eq!(snapshot_at(&out), want);
    // The same tree, mirrored by zlink: the differential reference.
    let mirror = s.path("mirror");
    let z = bin("zlink")
        .arg("-r")
        .arg(&src)
        .arg(&mirror)
        .output()
        .unwrap();
    assert!(z.status.success(), "{}", stderr_of(&z));
    assert_eq!(snapshot_at(&mirror), snapshot_at(&out));
    verify_clean(&store);
}
