//! Runtimes in the store: create, resume, list, lock, rebase and discard.

mod util;

use std::process::Command;
use util::Scratch as TestDir;
use zkit::ErrorKind;
use zkit::digest::Digest;
use zkit::manifest::{Manifest, Node, NodeKind};
use zkit::runtime::{self, Runtime};
use zkit::store::Store;

fn store(t: &TestDir) -> Store {
    Store::open(&t.path("store")).unwrap()
}

/// A real layer (runtimes check their base), different for each `n`.
fn layer(s: &Store, n: u8) -> Digest {
    let mut dir = Node::dir(0o750);
    let link = Node {
        mode: 0o777,
        mtime: zkit::manifest::Time::FIXED,
        kind: NodeKind::Symlink {
            target: format!("t{n}").into(),
        },
    };
    dir.children_mut().unwrap().insert(b"l".to_vec(), link);
    s.put_layer(&Manifest::from_tree(&dir)).unwrap()
}

#[test]
fn a_runtime_is_resumed_by_name_with_its_base_and_scratch() {
    let t = TestDir::new();
    let s = store(&t);
    let rt = Runtime::create(&s, "dev", &[layer(&s, 1), layer(&s, 2)]).unwrap();
    // Scratch's root has the top layer's mode (0750), so a commit over it changes nothing.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(rt.scratch_path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o7777, 0o750);
    std::fs::write(rt.scratch_path().join("made"), "x").unwrap();
    drop(rt);
    let rt = Runtime::open(&s, "dev").unwrap();
    assert_eq!(rt.base(), [layer(&s, 1), layer(&s, 2)]);
    assert!(rt.changed().unwrap());
    assert_eq!(std::fs::read(rt.scratch_path().join("made")).unwrap(), b"x");
    assert!(matches!(
        Runtime::create(&s, "dev", &[]).unwrap_err().kind,
        ErrorKind::RuntimeExists
    ));
    assert!(matches!(
        Runtime::open(&s, "nope").unwrap_err().kind,
        ErrorKind::UnknownRuntime
    ));
    for bad in ["", ".hidden", "a/b", "../x", &"n".repeat(101)] {
        assert!(
            matches!(
                Runtime::open(&s, bad).unwrap_err().kind,
                ErrorKind::Invalid(_)
            ),
            "{bad}"
        );
    }
    assert!(runtime::fresh_name() != runtime::fresh_name());
    assert!(runtime::valid_name(&runtime::fresh_name()));
}

#[test]
fn list_shows_changes_and_who_holds_a_runtime() {
    let t = TestDir::new();
    let s = store(&t);
    assert!(runtime::list(&s).unwrap().is_empty());
    let mut a = Runtime::create(&s, "a", &[layer(&s, 1)]).unwrap();
    let b = Runtime::create(&s, "b", &[]).unwrap();
    std::fs::write(b.scratch_path().join(".wh.gone"), "").unwrap();
    a.lock(false).unwrap();
    let infos = runtime::list(&s).unwrap();
    let summary: Vec<_> = infos
        .iter()
        .map(|i| (i.name.as_str(), i.changed, i.in_use, i.base.len()))
        .collect();
    assert_eq!(summary, [("a", false, true, 1), ("b", true, false, 0)]);
    assert!(matches!(
        runtime::discard(&s, "a").unwrap_err().kind,
        ErrorKind::RuntimeBusy
    ));
    drop(a);
    // Another test of this binary may be forking a child at this moment, which holds a copy
    // of every descriptor (the lock's too) until it execs: give it a moment.
    let discarded = (0..100).any(|_| match runtime::discard(&s, "a") {
        Err(e) if matches!(e.kind, ErrorKind::RuntimeBusy) => {
            std::thread::sleep(std::time::Duration::from_millis(20));
            false
        }
        other => {
            other.unwrap();
            true
        }
    });
    assert!(discarded, "runtime a still busy after its lock was dropped");
    let names: Vec<_> = runtime::list(&s)
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["b"]);
    assert_eq!(util::names_in(&t.path("store/runtimes")), ["b"]);
}

/// The lock is the kernel's: a holder killed with SIGKILL (a crashed daemon) frees it.
#[test]
fn a_killed_holder_releases_the_runtime() {
    require!(util::have("flock"), "flock(1) from util-linux");
    let t = TestDir::new();
    let s = store(&t);
    let lock = t.path("store/runtimes/r/lock");
    drop(Runtime::create(&s, "r", &[]).unwrap());
    // One process holds the lock and is the one killed (`exec`: no child keeps the fd).
    let mut holder = Command::new("sh")
        .args(["-c", r#"exec 9>"$0"; flock -x 9; exec sleep 60"#])
        .arg(&lock)
        .spawn()
        .unwrap();
    let mut rt = Runtime::open(&s, "r").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Wait until the holder has the lock.
    while rt.lock(false).is_ok() {
        drop(rt);
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        rt = Runtime::open(&s, "r").unwrap();
    }
    assert!(matches!(
        rt.lock(false).unwrap_err().kind,
        ErrorKind::RuntimeBusy
    ));
    holder.kill().unwrap();
    holder.wait().unwrap();
    rt.lock(false).unwrap();
}

#[test]
fn rebase_moves_to_a_new_stack_with_an_empty_scratch() {
    let t = TestDir::new();
    let s = store(&t);
    let mut rt = Runtime::create(&s, "r", &[layer(&s, 1)]).unwrap();
    let old = rt.scratch_path();
    std::fs::create_dir(old.join("d")).unwrap();
    std::fs::write(old.join("d/f"), "x").unwrap();
    rt.lock(false).unwrap();
    rt.rebase(&[layer(&s, 1), layer(&s, 2)]).unwrap();
    assert!(!old.exists());
    assert!(!rt.changed().unwrap());
    drop(rt);
    let rt = Runtime::open(&s, "r").unwrap();
    assert_eq!(rt.base(), [layer(&s, 1), layer(&s, 2)]);
    assert!(!rt.changed().unwrap());
    let names = util::names_in(&t.path("store/runtimes/r"));
    assert_eq!(names, ["lock", "scratch-1", "state", "work"]);
}

/// The scratch dir of runtime `name`, as an editable view leaves it.
fn scratch_of(s: &Store, name: &str) -> std::path::PathBuf {
    Runtime::open(s, name).unwrap().scratch_path()
}

#[test]
fn zcommit_runtime_makes_a_layer_of_changes_and_continues_on_it() {
    let t = TestDir::new();
    let s = store(&t);
    let src = t.path("src");
    std::fs::create_dir_all(src.join("etc/old")).unwrap();
    std::fs::write(src.join("existing"), "base\n").unwrap();
    std::fs::write(src.join("gone"), "bye\n").unwrap();
    std::fs::write(src.join("etc/keep"), "k\n").unwrap();
    let zc = || {
        let mut c = util::bin("zcommit");
        c.arg("--store").arg(t.path("store"));
        c
    };
    let out = zc().arg("--tag").arg("base").arg(&src).output().unwrap();
    assert!(out.status.success());
    let base = Digest::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    drop(Runtime::create(&s, "dev", &[base]).unwrap());

    // What the view writes: a copied-up, appended file; a deletion; a replaced directory.
    let sc = scratch_of(&s, "dev");
    std::fs::write(sc.join("existing"), "base\nappended\n").unwrap();
    std::fs::write(sc.join(".wh.gone"), "").unwrap();
    std::fs::create_dir(sc.join("etc")).unwrap();
    std::fs::write(sc.join("etc/.wh..wh..opq"), "").unwrap();
    std::fs::write(sc.join("etc/new"), "n\n").unwrap();

    let out = zc()
        .args(["--runtime", "dev", "--tag", "app/2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = Digest::parse(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(s.resolve("app/2".as_ref()).unwrap(), new);
    let listing = zc().args(["ls", "app/2"]).output().unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(
        listing.contains("w--------- ") && listing.contains(" gone"),
        "{listing}"
    );
    assert!(listing.contains("etc (opaque)"), "{listing}");

    let both = t.path("both");
    zc().arg("checkout")
        .arg(&both)
        .arg(base.to_hex())
        .arg(new.to_hex())
        .assert()
        .success();
    assert_eq!(
        std::fs::read(both.join("existing")).unwrap(),
        b"base\nappended\n"
    );
    assert!(!both.join("gone").exists());
    assert_eq!(util::names_in(&both.join("etc")), ["new"]);
    let only_base = t.path("only-base");
    zc().arg("checkout")
        .arg(&only_base)
        .arg("base")
        .assert()
        .success();
    assert_eq!(
        std::fs::read(only_base.join("existing")).unwrap(),
        b"base\n"
    );
    assert_eq!(util::names_in(&only_base.join("etc")), ["keep", "old"]);

    // The runtime goes on over the new layer with nothing to commit.
    let rt = Runtime::open(&s, "dev").unwrap();
    assert_eq!(rt.base(), [base, new]);
    assert!(!rt.changed().unwrap());
    let layers = s.layers().unwrap().len();
    let out = zc().args(["--runtime", "dev"]).output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no changes"));
    assert_eq!(s.layers().unwrap().len(), layers);

    let list = zc().arg("runtimes").output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.starts_with("dev  clean  idle  "), "{list}");

    // --discard: committed, then gone.
    std::fs::write(scratch_of(&s, "dev").join("more"), "m").unwrap();
    zc().args(["--runtime", "dev", "--discard"])
        .assert()
        .success();
    assert!(matches!(
        Runtime::open(&s, "dev").unwrap_err().kind,
        ErrorKind::UnknownRuntime
    ));
    zc().args(["discard", "dev"]).assert().code(1);
}

#[test]
fn zcommit_refuses_a_runtime_a_mount_holds() {
    let t = TestDir::new();
    let s = store(&t);
    let mut rt = Runtime::create(&s, "busy", &[]).unwrap();
    std::fs::write(rt.scratch_path().join("f"), "x").unwrap();
    rt.lock(false).unwrap();
    let out = util::bin("zcommit")
        .arg("--store")
        .arg(t.path("store"))
        .args(["--runtime", "busy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use") && err.contains("unmount"), "{err}");
    util::bin("zcommit")
        .args(["--runtime", "x", "DIR"])
        .assert()
        .code(2);
}
