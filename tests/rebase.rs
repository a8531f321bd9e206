//! Rebasing a runtime: its changes (scratch and the layers committed from it) move onto new
//! upstream layers, so a CI runtime keeps its build outputs across new sources and `make`
//! rebuilds exactly what depends on what changed.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use util::Scratch;
use zkit::ErrorKind;
use zkit::digest::Digest;
use zkit::manifest::{Manifest, Node};
use zkit::runtime::{self, Runtime};
use zkit::store::Store;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A store and a daemon directory of one test; stops the daemon and unmounts on drop.
struct Env {
    t: Scratch,
}

impl Env {
    fn new() -> Env {
        let t = Scratch::new();
        std::fs::create_dir(t.path("store")).unwrap();
        Env { t }
    }

    fn mnt(&self) -> PathBuf {
        self.t.path("zm/mnt")
    }

    fn cmd(&self, bin: &str) -> assert_cmd::Command {
        let mut c = util::bin(bin);
        c.env("ZMOUNT_DIR", self.t.path("zm"))
            .env("ZKIT_STORE", self.t.path("store"))
            .timeout(TIMEOUT);
        c
    }

    fn ok(&self, bin: &str, args: &[&str]) -> String {
        let out = self.cmd(bin).args(args).output().unwrap();
        util::stdout_of(out, &format!("{bin} {}", args.join(" ")))
    }

    /// `make` at the mount point inside runtime `ci`, with `extra` arguments before the
    /// layers (`--rebase`).
    fn make_in_ci(&self, extra: &[&str], layers: &[&str]) -> Output {
        let mut args = vec!["run", "--edit", "--name", "ci"];
        args.extend(extra);
        args.extend(layers);
        args.extend(["--", "sh", "-c", "make -C \"$ZKIT_MOUNT\" 2>&1"]);
        self.cmd("zmount").args(&args).output().unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Command::new(util::bin_path("zmount"))
            .env("ZMOUNT_DIR", self.t.path("zm"))
            .args(["stop", "--force"])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mnt())
            .stderr(Stdio::null())
            .status();
    }
}

/// Three inputs, three objects, one program made of them, and a file the build edits.
const MAKEFILE: &str = "\
all: out/a.o out/b.o out/c.o out/prog
out/%.o: %.src
\t@mkdir -p out
\t@echo build $@
\t@tr a-z A-Z < $< > $@
out/prog: out/a.o out/b.o out/c.o
\t@echo build $@
\t@cat $^ > $@
";

fn write_sources(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Makefile"), MAKEFILE).unwrap();
    for (name, text) in [("a", "alpha\n"), ("b", "bravo\n"), ("c", "charlie\n")] {
        std::fs::write(dir.join(format!("{name}.src")), text).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "old notes\n").unwrap();
    std::fs::write(dir.join("config.txt"), "base config\n").unwrap();
    // Sources older than any build, as a checkout of a repository would be.
    let old = std::fs::FileTimes::new()
        .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000));
    for e in std::fs::read_dir(dir).unwrap() {
        let f = std::fs::File::options()
            .write(true)
            .open(e.unwrap().path())
            .unwrap();
        f.set_times(old).unwrap();
    }
}

/// The targets make said it built, in order.
fn built(out: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "make failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| l.strip_prefix("build "))
        .map(str::to_owned)
        .collect()
}

/// Every file under `dir` with its content (directories by name only).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{rel}{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{name}/"), String::new());
                walk(&e.path(), &format!("{name}/"), out);
            } else {
                out.insert(name, std::fs::read_to_string(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out);
    out
}

#[test]
fn a_ci_runtime_rebased_onto_new_sources_rebuilds_exactly_what_depends_on_them() {
    require!(util::have_fuse(), "needs root and /dev/fuse");
    require!(util::have("make"), "needs make");
    let env = Env::new();
    let src = env.t.path("src");
    write_sources(&src);
    let src_s = src.to_str().unwrap();
    env.ok("zcommit", &["--tag", "src/1", src_s]);

    // Pipeline 1: a full build; the build also deletes one source file and edits another.
    let out = env.make_in_ci(&[], &["src/1"]);
    assert_eq!(
        built(&out),
        ["out/a.o", "out/b.o", "out/c.o", "out/prog"],
        "a first build builds everything"
    );
    let edit = "rm \"$ZKIT_MOUNT/notes.txt\" && echo local >> \"$ZKIT_MOUNT/config.txt\"";
    env.ok(
        "zmount",
        &["run", "--edit", "--name", "ci", "--", "sh", "-c", edit],
    );
    env.ok("zcommit", &["--runtime", "ci", "--tag", "out/1"]);

    // New sources: one input changes (after the build, so it is newer than its outputs), and
    // so do the files the runtime deleted and edited.
    std::fs::write(src.join("b.src"), "bravo two\n").unwrap();
    std::fs::write(src.join("notes.txt"), "new notes\n").unwrap();
    std::fs::write(src.join("config.txt"), "new base config\n").unwrap();
    env.ok("zcommit", &["--tag", "src/2", src_s]);

    // Without --rebase the runtime stays where it is, and the error says what to do.
    let out = env.make_in_ci(&[], &["src/2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("another stack") && err.contains("--rebase"),
        "{err}"
    );

    // Pipeline 2: rebased, make sees the new input and the old outputs.
    let out = env.make_in_ci(&["--rebase"], &["src/2"]);
    assert_eq!(
        built(&out),
        ["out/b.o", "out/prog"],
        "only b.o and what depends on it are rebuilt"
    );
    let out = env.make_in_ci(&[], &["src/2"]);
    assert!(built(&out).is_empty(), "a second make has nothing to do");

    let show = "cat \"$ZKIT_MOUNT/out/prog\" \"$ZKIT_MOUNT/config.txt\"; \
                ls \"$ZKIT_MOUNT\" | tr '\\n' ' '";
    let shown = env.ok(
        "zmount",
        &["run", "--edit", "--name", "ci", "--", "sh", "-c", show],
    );
    assert_eq!(
        shown,
        "ALPHA\nBRAVO TWO\nCHARLIE\n\
         base config\nlocal\n\
         Makefile a.src b.src c.src config.txt out ",
        "the runtime's copy of config.txt wins over the new base's, and its deletion of \
         notes.txt still hides the new one"
    );

    // What the runtime commits is what a plain build of the new sources gives, less the
    // runtime's own edits.
    env.ok("zcommit", &["--runtime", "ci", "--tag", "out/2"]);
    let co = env.t.path("co");
    env.ok(
        "zcommit",
        &["checkout", co.to_str().unwrap(), "src/2", "out/1", "out/2"],
    );
    let plain = env.t.path("plain");
    util::sh(&format!(
        "cp -a '{src_s}' '{p}' && make -s -C '{p}' >/dev/null && rm '{p}/notes.txt' && \
         echo local > '{p}/config.txt.new' && echo 'base config' | cat - '{p}/config.txt.new' \
         > '{p}/config.txt' && rm '{p}/config.txt.new'",
        p = plain.display()
    ));
    assert_eq!(tree(&co), tree(&plain));
    // And the runtime's stack is exactly that one.
    let store = Store::open(&env.t.path("store")).unwrap();
    let rt = Runtime::open(&store, "ci").unwrap();
    let resolve = |t: &str| store.resolve(t.as_ref()).unwrap();
    assert_eq!(
        rt.base(),
        [resolve("src/2"), resolve("out/1"), resolve("out/2")]
    );
    assert_eq!(rt.upstream(), [resolve("src/2")]);
}

fn layer(s: &Store, n: u8) -> Digest {
    let mut dir = Node::dir(0o755);
    dir.children_mut()
        .unwrap()
        .insert(format!("f{n}").into_bytes(), Node::dir(0o755));
    s.put_layer(&Manifest::from_tree(&dir)).unwrap()
}

#[test]
fn rebase_keeps_scratch_and_the_runtimes_own_layers_and_records_the_new_upstream() {
    let t = Scratch::new();
    let s = Store::open(&t.path("store")).unwrap();
    let (one, two, mine, new) = (layer(&s, 1), layer(&s, 2), layer(&s, 3), layer(&s, 4));
    let mut rt = Runtime::create(&s, "dev", &[one, two]).unwrap();
    rt.lock(false).unwrap();
    rt.rebase(&[one, two, mine]).unwrap(); // what a commit does
    std::fs::write(rt.scratch_path().join("made"), "x").unwrap();
    let scratch = rt.scratch_path();
    assert!(rt.rebase_onto(&[new]).unwrap());
    assert!(!rt.rebase_onto(&[new]).unwrap(), "already there");
    drop(rt);

    let rt = Runtime::open(&s, "dev").unwrap();
    assert_eq!(rt.base(), [new, mine]);
    assert_eq!(rt.upstream(), [new]);
    assert_eq!(rt.scratch_path(), scratch, "the same scratch dir");
    assert_eq!(std::fs::read(scratch.join("made")).unwrap(), b"x");
    let state = std::fs::read_to_string(t.path("store/runtimes/dev/state")).unwrap();
    assert_eq!(
        state,
        format!(
            "zkit-runtime 1\nscratch scratch-1\nlayer {}\ncommit {}\n",
            new.to_hex(),
            mine.to_hex()
        )
    );

    // Refused while someone holds the runtime (a mount), and nothing changes then.
    let mut held = Runtime::open(&s, "dev").unwrap();
    held.lock(false).unwrap();
    let err = runtime::rebase(&s, "dev", &[one]).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::RuntimeBusy), "{err:?}");
    drop(held);
    assert_eq!(Runtime::open(&s, "dev").unwrap().base(), [new, mine]);
    assert!(runtime::rebase(&s, "dev", &[one]).unwrap());
    assert_eq!(Runtime::open(&s, "dev").unwrap().base(), [one, mine]);
}

#[test]
fn a_rebase_that_dies_midway_leaves_the_old_base_or_the_new_one() {
    // The state file is all a rebase writes, by one atomic replace: kill `zcommit --runtime
    // --rebase` (nothing to commit) at each of its first writes, syncs and renames, then
    // reopen the runtime.
    require!(util::have("strace"), "needs strace");
    let t = Scratch::new();
    let s = Store::open(&t.path("store")).unwrap();
    let (one, two) = (layer(&s, 1), layer(&s, 2));
    let scratch = Runtime::create(&s, "dev", &[one]).unwrap().scratch_path();
    let zcommit = util::bin_path("zcommit");
    let mut outcomes = Vec::new();
    for call in [
        "write",
        "fsync",
        "fdatasync",
        "linkat",
        "rename",
        "renameat2",
    ] {
        for n in 1..=3 {
            let status = Command::new("strace")
                .args(["-f", "-qq", "-o", "/dev/null", "-e"])
                .arg(format!("inject={call}:signal=KILL:when={n}"))
                .arg(&zcommit)
                .arg("--store")
                .arg(t.path("store"))
                .args(["--runtime", "dev", "-q", "--rebase"])
                .arg(two.to_hex())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            let rt = Runtime::open(&s, "dev").unwrap();
            assert!(
                rt.base() == [one] || rt.base() == [two],
                "killed at {call} #{n}: {:?}",
                rt.base()
            );
            assert_eq!(rt.scratch_path(), scratch, "killed at {call} #{n}");
            assert!(scratch.is_dir(), "killed at {call} #{n}");
            outcomes.push((rt.base() == [two], status.success()));
            // Back to the old base for the next round.
            assert!(runtime::rebase(&s, "dev", &[one]).is_ok());
        }
    }
    assert!(
        outcomes.iter().any(|&(new, ok)| !new && !ok),
        "some kill came before the state was replaced: {outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|&(new, _)| new),
        "some rebase got through: {outcomes:?}"
    );
}

#[test]
fn zcommit_rebase_moves_the_runtime_then_commits_its_changes_over_the_new_base() {
    let t = Scratch::new();
    let s = Store::open(&t.path("store")).unwrap();
    let (one, two) = (layer(&s, 1), layer(&s, 2));
    let scratch = Runtime::create(&s, "dev", &[one]).unwrap().scratch_path();
    std::fs::write(scratch.join("made"), "x").unwrap();
    let zcommit = |args: &[&str]| {
        let out = util::bin("zcommit")
            .arg("--store")
            .arg(t.path("store"))
            .args(args)
            .output()
            .unwrap();
        util::stdout_of(out, &format!("zcommit {}", args.join(" ")))
    };
    let made = zcommit(&["--runtime", "dev", "--rebase", &two.to_hex(), "--tag", "t"]);
    let made = Digest::parse(made.trim()).unwrap();
    let rt = Runtime::open(&s, "dev").unwrap();
    assert_eq!(rt.base(), [two, made]);
    assert_eq!(rt.upstream(), [two]);
    assert!(!rt.changed().unwrap());
    assert_eq!(s.resolve("t".as_ref()).unwrap(), made);
    assert!(zcommit(&["ls", "t"]).contains("made"));

    // Usage: --rebase needs a runtime, and does not go with --discard.
    for bad in [
        vec!["--rebase", "t", "dir"],
        vec!["--runtime", "dev", "--discard", "--rebase", "t"],
    ] {
        let out = util::bin("zcommit")
            .arg("--store")
            .arg(t.path("store"))
            .args(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    assert_eq!(Runtime::open(&s, "dev").unwrap().base(), [two, made]);
}

#[test]
fn a_kernel_runtime_whose_changes_name_lower_paths_is_committed_before_it_moves() {
    require!(util::is_root(), "needs root (kernel overlayfs)");
    let env = Env::new();
    for (tag, content) in [("a/1", "one\n"), ("a/2", "two\n")] {
        let dir = env.t.path(tag);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), content).unwrap();
        env.ok("zcommit", &["--tag", tag, dir.to_str().unwrap()]);
    }
    // A chmod of a layer file is a metadata-only copy-up: its content is found by path in
    // the old layers, and a/2 holds other content at that path.
    let run = |extra: &[&str], layer: &str, cmd: &str| {
        let mut args = vec!["run", "--backend", "kernel", "--edit", "--name", "k"];
        args.extend(extra);
        args.extend([layer, "--", "sh", "-c", cmd]);
        env.cmd("zmount").args(&args).output().unwrap()
    };
    let out = run(&[], "a/1", "chmod 600 \"$ZKIT_MOUNT/f\"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["--rebase"], "a/2", "true");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("f takes its content from the old layers"),
        "{err}"
    );
    assert!(err.contains("zcommit --runtime k"), "{err}");
    // Committed, the change is a layer, and the layer moves.
    env.ok("zcommit", &["--runtime", "k"]);
    let out = run(
        &["--rebase"],
        "a/2",
        "stat -c %a \"$ZKIT_MOUNT/f\"; cat \"$ZKIT_MOUNT/f\"",
    );
    let shown = util::stdout_of(out, "rebased run");
    assert_eq!(shown, "600\none\n");
}
