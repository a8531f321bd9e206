//! Runtimes in the store: create, resume, list, lock, rebase and discard.
#![cfg(any(target_os = "linux", target_os = "macos"))]

mod util;

use std::process::Command;
use util::Scratch as TestDir;
use zkit::ErrorKind;
use zkit::digest::Digest;
use zkit::runtime::{self, Runtime};
use zkit::store::Store;

fn store(t: &TestDir) -> Store {
    Store::open(&t.path("store")).unwrap()
}

fn layer(n: u8) -> Digest {
    Digest::of_layer(&[n])
}

#[test]
fn a_runtime_is_resumed_by_name_with_its_base_and_scratch() {
    let t = TestDir::new();
    let s = store(&t);
    let rt = Runtime::create(&s, "dev", &[layer(1), layer(2)]).unwrap();
    std::fs::write(rt.scratch_path().join("made"), "x").unwrap();
    drop(rt);
    let rt = Runtime::open(&s, "dev").unwrap();
    assert_eq!(rt.base(), [layer(1), layer(2)]);
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
    let mut a = Runtime::create(&s, "a", &[layer(1)]).unwrap();
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
    runtime::discard(&s, "a").unwrap();
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
    let mut rt = Runtime::create(&s, "r", &[layer(1)]).unwrap();
    let old = rt.scratch_path();
    std::fs::create_dir(old.join("d")).unwrap();
    std::fs::write(old.join("d/f"), "x").unwrap();
    rt.lock(false).unwrap();
    rt.rebase(&[layer(1), layer(2)]).unwrap();
    assert!(!old.exists());
    assert!(!rt.changed().unwrap());
    drop(rt);
    let rt = Runtime::open(&s, "r").unwrap();
    assert_eq!(rt.base(), [layer(1), layer(2)]);
    assert!(!rt.changed().unwrap());
    let names = util::names_in(&t.path("store/runtimes/r"));
    assert_eq!(names, ["lock", "scratch-1", "state", "work"]);
}
