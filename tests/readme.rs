//! The README's examples run as written, in order, on a fresh store.
//!
//! Every ```sh block after "Set up" is one script, run by bash with `-e` (so a failing example
//! fails the test, naming its line) in a private mount namespace where /etc, /srv and /mnt are
//! overlays on scratch directories: the examples may write /etc/app.conf and mount at /mnt/app
//! as a reader would, and the machine's own files are never touched. A prelude makes the files
//! the examples start from (a build tree, sources, a Makefile, an XFS file system at
//! /mnt/xfs); it is the only text here that the README does not show.

mod util;

use std::process::Command;
use util::Scratch;

/// The example blocks of the README's tool sections, in order, as (first line number, text).
fn example_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let (mut in_block, mut seen_setup, mut in_setup) = (false, false, false);
    let mut current = (0, String::new());
    for (n, line) in readme.lines().enumerate() {
        if in_block {
            if line == "```" {
                in_block = false;
                if seen_setup && !in_setup {
                    blocks.push(std::mem::take(&mut current));
                }
            } else {
                current.1.push_str(line);
                current.1.push('\n');
            }
        } else if line == "```sh" {
            in_block = true;
            current = (n + 2, String::new());
        } else if line.starts_with("## ") {
            in_setup = line == "## Set up";
            seen_setup |= in_setup;
        }
    }
    blocks
}

const PRELUDE: &str = r#"
set -eu -o pipefail
# A failing example must not leave a daemon or a mount behind.
trap 'rc=$?; set +e; zmount stop >/dev/null 2>&1; umount -l /mnt/app /mnt/dev /etc/hosts 2>/dev/null; kill ${REGISTRY:-} 2>/dev/null; exit $rc' EXIT
mount -t tmpfs tmpfs "$S/over"
for d in etc srv mnt; do
    mkdir -p "$S/over/$d.up" "$S/over/$d.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$S/over/$d.up,workdir=$S/over/$d.work" "/$d"
done
cd "$S/work"
# What a reader's machine already holds when the examples start.
printf 'port = 80\n' > /etc/app.conf
printf 'nameserver 10.0.0.53\n' > /etc/resolv.conf && chattr +i /etc/resolv.conf
# A container's /etc/hosts is a file bind-mounted over the image's.
printf '127.0.0.1 localhost\n' > "$S/over/hosts" && mount --bind "$S/over/hosts" /etc/hosts
printf 'port = 9090\n' > new.conf
printf 'alice\nbob\nalice\n' > users.txt
printf 'first line\n' > log.txt
head -c 1048576 /dev/urandom > big.iso
mkdir -p /srv/mirror "$HOME/.cache" /mnt/app /mnt/dev
mkdir -p node_modules/left-pad src layer build base scratch
echo 'module.exports = 1' > node_modules/left-pad/index.js
echo 'int main(void) { return 0; }' > src/main.c
echo data > layer/file
echo 'v1' > build/app && echo 'libc' > base/libc.so
echo gone > build/old.log && touch scratch/.wh.old.log
# `make` in a runtime builds into the view; `make test` needs both layers of the stack.
printf 'all:\n\techo built > "$$ZKIT_MOUNT/built"\ntest:\n\ttest -f "$$ZKIT_MOUNT/app" -a -f "$$ZKIT_MOUNT/libc.so"\n' > Makefile
# A project checked out a while ago: two sources, two objects, one program.
mkdir -p proj && printf 'a\n' > proj/a.c && printf 'b\n' > proj/b.c
printf 'out/app: out/a.o out/b.o\n\tcat $^ > $@\nout/%%.o: %%.c\n\tmkdir -p out && cp $< $@\n' > proj/Makefile
touch -d 2024-01-01 proj/*
truncate -s 512M "$S/xfs.img" && mkfs.xfs -q "$S/xfs.img"
mkdir -p /mnt/xfs && mount -o loop "$S/xfs.img" /mnt/xfs && cp -r src /mnt/xfs/src
# A registry the reader runs at 127.0.0.1:5000 (Debian's docker-registry).
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5000\n' "$S/registry" > "$S/registry.yml"
docker-registry serve "$S/registry.yml" 2>"$S/registry.log" & REGISTRY=$!
for _ in $(seq 100); do (: > /dev/tcp/127.0.0.1/5000) 2>/dev/null && break; sleep 0.1; done
set -x
"#;

const EPILOGUE: &str = r#"
: the examples did what their comments say
grep -qx 'port = 9090' /etc/app.conf
grep -qx '10.0.0.2 db' /etc/hosts && grep -qx '10.0.0.2 db' "$S/over/hosts"
lsattr -d /etc/resolv.conf | grep -q -- '-i-' && grep -q 10.0.0.1 /etc/resolv.conf
test "$(stat -c %a users.conf)" = 600 && test "$(cat users.conf)" = "$(printf 'alice\nbob')"
test "$(cat log.txt)" = "$(printf 'first line\none more line')"
cmp big.iso /srv/mirror/big.iso && cmp /mnt/xfs/src/main.c /mnt/xfs/snap/main.c
test "$(stat -c %i node_modules/left-pad/index.js)" = "$(stat -c %i ~/.cache/nm/left-pad/index.js)"
test -f out/app -a -f out/libc.so
zcommit ls app/1.1 | grep -q built
test "$(zcommit --store other tags | grep '  app/img$' | cut -d' ' -f1)" = "$(zcommit tags | grep '  app/stack$' | cut -d' ' -f1)"
test "$(zcommit tags | grep '  app/saved$' | cut -d' ' -f1)" = "$(zcommit tags | grep '  app/stack$' | cut -d' ' -f1)"
test -f from-registry/app -a -f from-registry/libc.so
! zcommit tags | grep -q trim/
# The untagged whiteout layer went with `zcommit gc`; what the tags reach stayed.
! for l in $(zcommit layers); do zcommit ls "$l"; done | grep -q '^w---------.* old.log$'
zcommit verify >/dev/null
test "$(cat dist/out/app)" = "$(cat proj/a.c proj/b.c)"
zmount run --edit --name ci src/2 -- sh -c 'make -C "$ZKIT_MOUNT"' | grep 'is up to date'
# The editable examples ran on the kernel backend (root): a daemon is up only if one started.
! zmount status -q || zmount stop
"#;

#[test]
fn readme_examples_run_as_written_in_order() {
    require!(
        util::is_root(),
        "the examples mount file systems and need root"
    );
    require!(util::have_fuse(), "the zmount examples need /dev/fuse");
    require!(util::have("mkfs.xfs"), "the reflink example needs xfsprogs");
    require!(
        util::have("skopeo") && util::have("docker-registry"),
        "the OCI examples need skopeo and docker-registry (ci/deps installs them)"
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = example_blocks(&readme);
    assert!(
        blocks.len() >= 4,
        "found only {} example blocks",
        blocks.len()
    );

    let s = Scratch::new();
    for d in ["over", "work", "zmount", "home"] {
        std::fs::create_dir(s.path(d)).unwrap();
    }
    let mut script = String::from(PRELUDE);
    for (line, text) in &blocks {
        script.push_str(&format!(": README.md line {line}\n{text}"));
    }
    // What the examples say they did, checked where the README shows no output.
    script.push_str(EPILOGUE);
    let bins = util::bin_path("zwrite").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &script])
        .env("PATH", path)
        .env("S", s.root())
        .env("HOME", s.path("home"))
        .env("ZKIT_STORE", s.path("store"))
        .env("ZMOUNT_DIR", s.path("zmount"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a README example failed ({}); the trace ends:\n{}",
        out.status,
        stderr
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
