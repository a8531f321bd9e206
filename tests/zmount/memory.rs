//! A daemon that runs for weeks stays small: an editable view keeps node records only while
//! the kernel holds their inodes, and what the kernel still holds keeps its number.

use super::*;

/// The one view's `kept_nodes` in `zmount status --json`.
fn kept_nodes(env: &Env) -> u64 {
    let s = env.status_json();
    s["views"][0]["kept_nodes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no kept_nodes in {s}"))
}

/// A child killed when the test ends early.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn drop_caches() {
    // 2: reclaim dentries and inodes; the kernel sends FORGET for each inode it drops.
    std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
}

#[test]
fn an_editable_view_drops_the_nodes_the_kernel_forgets_and_keeps_those_it_holds() {
    let Some(env) = Env::fuse() else {
        return;
    };
    let files: Vec<(String, String)> = (0..20)
        .flat_map(|d| (0..50).map(move |f| (format!("d{d}/f{f}"), format!("{d}.{f}\n"))))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    env.layer("tree", &refs);
    let t = env.scratch.path("sync");
    std::fs::create_dir(&t).unwrap();
    // Walk everything, hold one new file and one layer file open, then wait for the test to
    // drop the kernel's caches; then check what the view shows.
    let script = r#"
        M="$ZKIT_MOUNT"; T="$1"
        find "$M" -type f | wc -l > "$T/walked.count"
        echo new > "$M/new"
        exec 3< "$M/new" 4< "$M/d1/f1"
        stat -c %i "$M/new" > "$T/new.ino"; stat -c %i "$M/d1/f1" > "$T/layer.ino"
        touch "$T/walked"
        n=0; while [ ! -e "$T/dropped" ] && [ $n -lt 4000 ]; do sleep 0.02; n=$((n+1)); done
        stat -L -c %i /dev/fd/3 "$M/new" /dev/fd/4 "$M/d1/f1" > "$T/after.ino"
        cat "$M/d5/f7" - <&3 > "$T/content"
        echo changed > "$M/d3/f3"; cat "$M/d3/f3" >> "$T/content"
        find "$M" -type f | wc -l > "$T/after.count"
    "#;
    let mut run = Killed(
        env.std_zmount()
            .args([
                "run", "--edit", "--name", "mem", "tree", "--", "sh", "-c", script, "sh",
            ])
            .arg(&t)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    util::wait_for("the walk", TIMEOUT, || t.join("walked").exists());
    let walked = kept_nodes(&env);
    assert!(walked > 1000, "every path walked has a node: {walked}");

    util::wait_for("the kernel to forget the walk", TIMEOUT, || {
        drop_caches();
        kept_nodes(&env) < 50
    });
    std::fs::write(t.join("dropped"), "").unwrap();
    assert!(run.0.wait().unwrap().success());

    let read = |name: &str| std::fs::read_to_string(t.join(name)).unwrap();
    assert_eq!(read("walked.count").trim(), "1000");
    assert_eq!(read("after.count").trim(), "1001");
    assert_eq!(read("content"), "5.7\nnew\nchanged\n");
    let inos: Vec<&str> = read("after.ino").leak().lines().collect();
    let (new, layer) = (read("new.ino"), read("layer.ino"));
    assert_eq!(
        inos,
        [new.trim(), new.trim(), layer.trim(), layer.trim()],
        "a file the kernel holds keeps its inode number, by path and by descriptor"
    );
}

#[test]
fn changes_between_cache_drops_give_the_same_tree_as_a_plain_directory() {
    let Some(env) = Env::fuse() else {
        return;
    };
    let files: Vec<(String, String)> = (0..5)
        .flat_map(|d| (0..20).map(move |f| (format!("d{d}/f{f}"), format!("{d}.{f}\n"))))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    env.layer("tree", &refs);
    let plain = env.scratch.path("plain");
    let co = util::bin_path("zcommit");
    util::sh(&format!(
        "ZKIT_STORE='{}' '{}' checkout '{}' tree",
        env.store().display(),
        co.display(),
        plain.display()
    ));
    // Every step that names, renames, links and removes, with the kernel made to forget
    // between steps, so that nodes go and come back while names move.
    let script = r#"
        cd "$1"; D() { sync; echo 2 > /proc/sys/vm/drop_caches; }
        mkdir -p new/deep; echo a > new/deep/a; D
        mv d0 moved; D
        ln moved/f1 new/link; echo more >> new/link; D
        rm d1/f2 moved/f3; mv d2/f4 d3/f4; D
        exec 3< new/deep/a; rm new/deep/a; D; cat <&3 > new/was-a; exec 3<&-
        for i in 1 2 3; do echo $i > d4/f$i; D; done
        mv new/deep d4/deep; rmdir d4/deep; D
        find . -printf '%P %y %s %n\n' | sort > /tmp/zkit-listing.$$
        find . -type f | sort | xargs cat | md5sum >> /tmp/zkit-listing.$$
        cat /tmp/zkit-listing.$$; rm /tmp/zkit-listing.$$
    "#;
    let in_plain = util::sh(&format!(
        "sh -c '{}' sh '{}'",
        script.replace('\'', "'\\''"),
        plain.display()
    ));
    let out = env.edit_run(
        Some("steps"),
        &["tree"],
        &format!(
            "sh -c '{}' sh \"$ZKIT_MOUNT\"",
            script.replace('\'', "'\\''")
        ),
    );
    let in_view = util::stdout_of(out, "the steps in the view");
    assert!(in_view.lines().count() > 100, "{in_view}");
    assert_eq!(in_view, in_plain);
}
