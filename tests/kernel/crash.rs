//! Crashes and real work in kernel runtimes: a run killed during writes still commits, a
//! volatile runtime a crashed machine left is refused, a C build commits and checks out.

use super::{Env, TIMEOUT, kernel_ready, listing};
use crate::require;
use crate::util;
use std::os::unix::process::CommandExt;

fn base(d: &std::path::Path) {
    std::fs::create_dir(d.join("data")).unwrap();
    std::fs::write(d.join("data/log"), "start\n").unwrap();
}

/// kill -9 of `run` and CMD (their whole process group) in the middle of writes: the
/// runtime is left as the kernel had it (free once the last process of the run is gone),
/// and commits.
#[test]
fn a_run_killed_during_writes_leaves_a_runtime_that_commits() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("base", base);
    let ready = env.path("ready");
    let script = format!(
        "cd \"$ZKIT_MOUNT\"; i=0; while :; do i=$((i+1)); echo $i >> data/log; \
         mkdir -p new/$i && echo $i > new/$i/f; mv data/log data/log2; mv data/log2 data/log; \
         [ $i = 20 ] && touch '{}'; done",
        ready.display()
    );
    let mut child = env
        .std_cmd("zmount")
        .args([
            "run",
            "--backend",
            "kernel",
            "--edit",
            "--name",
            "c",
            "base",
            "--",
            "sh",
            "-c",
        ])
        .arg(&script)
        .process_group(0)
        .spawn()
        .unwrap();
    util::wait_for("writes", TIMEOUT, || ready.exists());
    rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    child.wait().unwrap();
    // The namespace goes with its last process; the runtime is free once it has.
    util::wait_for("the runtime", TIMEOUT, || {
        env.cmd("zcommit")
            .args(["--runtime", "c", "--tag", "c1"])
            .output()
            .unwrap()
            .status
            .success()
    });
    let tree = env.checkout("out", &["base", "c1"]);
    // The kill may land between the two renames: the log is under one of its names.
    let names: Vec<&str> = ["log", "log2"]
        .into_iter()
        .filter(|n| tree.contains(&format!("./data/{n} f")))
        .collect();
    assert_eq!(names.len(), 1, "{tree}");
    let log = std::fs::read_to_string(env.path(&format!("out/data/{}", names[0]))).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "start", "{log}");
    // Every line the writer completed, in order, none twice or torn.
    for (i, line) in lines[1..].iter().enumerate() {
        assert_eq!(*line, (i + 1).to_string(), "{log}");
    }
    assert!(lines.len() > 20, "{log}");
    assert!(env.verify().contains("all good"));
}

/// --volatile: the run's changes are there after it, unsynced (the mark stays) until a run
/// that is not volatile or a commit; a runtime whose volatile mark comes from another boot
/// (the machine crashed under it) is refused until discarded.
#[test]
fn a_volatile_runtime_left_by_a_crash_is_refused_until_discarded() {
    require!(kernel_ready(), "needs root and overlayfs");
    let env = Env::new();
    env.layer("base", base);
    for backend in ["kernel", "fuse"] {
        if backend == "fuse" && !util::have_fuse() {
            continue;
        }
        let name = format!("v-{backend}");
        env.run(
            backend,
            &["--edit", "--volatile", "--name", &name, "base"],
            "echo v >> \"$ZKIT_MOUNT\"/data/log",
        );
        let mark = env.store().join("runtimes").join(&name).join("volatile");
        assert!(
            mark.exists(),
            "{backend}: a clean end syncs nothing, so the mark stays"
        );
        let got = env.run(
            backend,
            &["--edit", "--name", &name],
            "cat \"$ZKIT_MOUNT\"/data/log",
        );
        assert_eq!(got, "start\nv\n", "{backend}: resumed after a volatile run");
        assert!(
            !mark.exists(),
            "{backend}: a run that is not volatile syncs"
        );
        env.run(
            backend,
            &["--edit", "--volatile", "--name", &name],
            "echo w >> \"$ZKIT_MOUNT\"/data/log",
        );
        assert!(mark.exists(), "{backend}");
        env.commit_runtime(&name, &format!("{name}-1"));
        assert!(!mark.exists(), "{backend}: the committed layer is durable");
        env.run(
            backend,
            &["--edit", "--volatile", "--name", &name],
            "echo x >> \"$ZKIT_MOUNT\"/data/log",
        );
        // As a crash of the machine leaves it: the mark of a boot that is over.
        std::fs::write(&mark, "00000000-0000-0000-0000-000000000000\n").unwrap();
        let out = env
            .cmd("zmount")
            .args([
                "run",
                "--backend",
                backend,
                "--edit",
                "--name",
                &name,
                "--",
                "true",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("zcommit discard {name}")),
            "{backend}: {err}"
        );
        env.cmd("zcommit")
            .args(["discard", &name])
            .assert()
            .success();
    }
    let _ = env.cmd("zmount").arg("stop").output();
}

/// A small C project built with make inside a kernel runtime, committed, checked out: the
/// binary runs, and the tree is what the same build in a plain directory gives.
#[test]
fn a_real_build_in_a_kernel_runtime_commits_and_checks_out() {
    require!(kernel_ready(), "needs root and overlayfs");
    require!(util::have("gcc") && util::have("make"), "gcc and make");
    let env = Env::new();
    env.layer("proj", |d| {
        std::fs::write(d.join("util.h"), "int twice(int);\n").unwrap();
        std::fs::write(d.join("util.c"), "#include \"util.h\"\nint twice(int x) { return 2 * x; }\n").unwrap();
        std::fs::write(
            d.join("main.c"),
            "#include <stdio.h>\n#include \"util.h\"\nint main(void) { printf(\"%d\\n\", twice(21)); return 0; }\n",
        )
        .unwrap();
        std::fs::write(
            d.join("Makefile"),
            "app: main.o util.o\n\tgcc -o $@ $^\n%.o: %.c util.h\n\tgcc -c -o $@ $<\n",
        )
        .unwrap();
    });
    let args = ["--edit", "--name", "build", "proj"];
    assert_eq!(
        env.run("kernel", &args, "cd \"$ZKIT_MOUNT\"; make -s && ./app"),
        "42\n"
    );
    let again = env.run(
        "kernel",
        &["--edit", "--name", "build"],
        "cd \"$ZKIT_MOUNT\"; make",
    );
    assert!(again.contains("up to date"), "{again}");
    env.commit_runtime("build", "built");
    let tree = env.checkout("out", &["proj", "built"]);
    assert_eq!(
        util::sh(&format!("'{}'", env.path("out/app").display())),
        "42\n"
    );
    let names: Vec<&str> = tree.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "./Makefile",
            "./app",
            "./main.c",
            "./main.o",
            "./util.c",
            "./util.h",
            "./util.o"
        ]
    );
    let _ = listing;
}
