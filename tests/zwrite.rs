//! zwrite as a user sees it: content, metadata, flags, concurrency, crashes and faults.
// Tests: a thread the system refuses may fail them.
#![allow(clippy::disallowed_methods)]

mod util;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use util::{Scratch, bin, bin_path, have, is_root, lsattr, sh};

fn zwrite(args: &[&str], input: &[u8]) -> assert_cmd::assert::Assert {
    bin("zwrite")
        .args(args)
        .write_stdin(input.to_vec())
        .assert()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

// ---- what zeugl does, where we agree ----

#[test]
fn creates_a_missing_file_with_the_given_mode() {
    let s = Scratch::new();
    let f = s.path("new.conf");
    zwrite(&["-c", "640", f.to_str().unwrap()], b"a = 1\n").success();
    assert_eq!(read(&f), b"a = 1\n");
    assert_eq!(mode(&f), 0o640);
}

#[test]
fn creates_a_missing_file_like_the_shell_under_the_umask() {
    let s = Scratch::new();
    let f = s.path("new");
    sh(&format!(
        "umask 027 && echo hi | '{}' '{}'",
        bin_path("zwrite").display(),
        f.display()
    ));
    assert_eq!(mode(&f), 0o640);
}

#[test]
fn keeps_the_mode_of_an_existing_file() {
    let s = Scratch::new();
    let f = s.write("f", b"old");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    zwrite(&["-c", "644", f.to_str().unwrap()], b"new").success();
    assert_eq!(read(&f), b"new");
    assert_eq!(mode(&f), 0o600, "-c is only for new files");
}

#[test]
fn append_keeps_the_old_content() {
    let s = Scratch::new();
    let f = s.write("log", b"one\n");
    zwrite(&["-a", f.to_str().unwrap()], b"two\n").success();
    assert_eq!(read(&f), b"one\ntwo\n");
}

#[test]
fn truncate_replaces_the_whole_content() {
    let s = Scratch::new();
    let f = s.write("f", b"a long old content\n");
    let a = zwrite(&["--truncate", f.to_str().unwrap()], b"short\n").success();
    assert_eq!(read(&f), b"short\n");
    assert_eq!(stderr_of(&a), "");
}

#[test]
fn the_old_short_options_still_work_with_a_warning() {
    // -f and -t mean --force and --tag in the other tools; zwrite's old -f INPUT and -t keep
    // working for now, saying what to use instead.
    let s = Scratch::new();
    let input = s.write("input", b"from a file\n");
    let f = s.write("f", b"old");
    let a = zwrite(
        &[
            "-t",
            "-n",
            "-f",
            input.to_str().unwrap(),
            f.to_str().unwrap(),
        ],
        b"",
    )
    .success();
    assert_eq!(read(&f), b"from a file\n");
    let err = stderr_of(&a);
    assert!(
        err.contains("-f INPUT is deprecated: use --from INPUT"),
        "{err}"
    );
    assert!(err.contains("-t is deprecated"), "{err}");
    assert!(err.contains("-n is deprecated: use --no-wait"), "{err}");
    let a = zwrite(
        &["-q", "-f", input.to_str().unwrap(), f.to_str().unwrap()],
        b"",
    )
    .success();
    assert_eq!(stderr_of(&a), "");
}

#[test]
fn reads_the_input_from_a_file() {
    let s = Scratch::new();
    let input = s.write("input", b"from a file\n");
    let f = s.write("f", b"old");
    zwrite(
        &["--from", input.to_str().unwrap(), f.to_str().unwrap()],
        b"",
    )
    .success();
    assert_eq!(read(&f), b"from a file\n");
}

#[test]
fn a_missing_input_file_fails_and_leaves_the_file() {
    let s = Scratch::new();
    let f = s.write("f", b"old");
    let a = zwrite(
        &[
            "--from",
            s.path("nope").to_str().unwrap(),
            f.to_str().unwrap(),
        ],
        b"",
    )
    .code(1);
    assert!(stderr_of(&a).contains("nope: cannot open input: No such file or directory"));
    assert_eq!(read(&f), b"old");
    assert_eq!(s.names(), ["f"]);
}

#[test]
fn a_directory_as_input_is_named_in_the_error() {
    let s = Scratch::new();
    let f = s.write("f", b"old");
    let dir = s.path("d");
    std::fs::create_dir(&dir).unwrap();
    let a = zwrite(&["--from", dir.to_str().unwrap(), f.to_str().unwrap()], b"").code(1);
    let err = stderr_of(&a);
    assert!(
        err.starts_with(&format!("zwrite: {}: ", dir.display())) && err.contains("Is a directory"),
        "{err}"
    );
    assert_eq!(read(&f), b"old");
    assert_eq!(s.names(), ["d", "f"]);
}

#[test]
fn a_missing_directory_fails_with_a_message() {
    let s = Scratch::new();
    let f = s.path("no/such/dir/f");
    let a = zwrite(&[f.to_str().unwrap()], b"x").code(1);
    let err = stderr_of(&a);
    assert!(
        err.starts_with("zwrite: ") && err.contains("directory does not exist"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line per failure: {err}");
}

#[test]
fn existing_refuses_to_create() {
    let s = Scratch::new();
    let f = s.path("f");
    let a = zwrite(&["-e", f.to_str().unwrap()], b"x").code(1);
    assert!(stderr_of(&a).contains("does not exist"));
    assert!(!f.exists());
}

#[test]
fn extra_arguments_are_a_usage_error() {
    let s = Scratch::new();
    zwrite(
        &[s.path("a").to_str().unwrap(), s.path("b").to_str().unwrap()],
        b"x",
    )
    .code(2);
    assert!(s.names().is_empty());
}

/// Run zwrite with a real pseudo-terminal as stdin; the "user" types `typed` and Ctrl-D.
/// Returns (exit status, what zwrite printed on stderr).
fn zwrite_on_a_terminal(args: &[&str], typed: &str) -> (i32, String) {
    let script = r#"
import os, pty, subprocess, sys
main, tty = pty.openpty()
child = subprocess.Popen(sys.argv[2:], stdin=tty, stderr=subprocess.PIPE)
os.close(tty)
os.write(main, sys.argv[1].encode() + b"\x04\x04")
_, err = child.communicate(timeout=20)
sys.stderr.buffer.write(err)
sys.exit(child.returncode)
"#;
    let out = Command::new("python3")
        .args(["-c", script, typed])
        .arg(bin_path("zwrite"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn a_terminal_on_stdin_is_refused_and_the_file_kept() {
    require!(have("python3"), "python3 for its pty module");
    let s = Scratch::new();
    let f = s.write("f", b"precious\n");
    let (code, err) = zwrite_on_a_terminal(&[f.to_str().unwrap()], "");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("standard input is a terminal") && err.contains("--from INPUT"),
        "{err}"
    );
    assert_eq!(read(&f), b"precious\n");

    // --from INPUT does not read the terminal, so it is fine.
    let input = s.write("input", b"new\n");
    let (code, err) = zwrite_on_a_terminal(
        &["--from", input.to_str().unwrap(), f.to_str().unwrap()],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(read(&f), b"new\n");
    assert_eq!(s.names(), ["f", "input"]);
}

#[test]
fn a_target_outside_the_current_directory_is_updated() {
    // zeugl resolved its temporary against the current directory, so this silently did nothing.
    let s = Scratch::new();
    std::fs::create_dir(s.path("here")).unwrap();
    std::fs::create_dir(s.path("there")).unwrap();
    s.write("there/f", b"old");
    bin("zwrite")
        .current_dir(s.path("here"))
        .arg("../there/f")
        .write_stdin("new")
        .assert()
        .success();
    assert_eq!(read(&s.path("there/f")), b"new");
    assert_eq!(util::names_in(&s.path("here")), Vec::<String>::new());
}

#[test]
fn refuses_to_replace_what_is_not_a_regular_file() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("d")).unwrap();
    sh(&format!("mkfifo '{}'", s.path("fifo").display()));
    for name in ["d", "fifo"] {
        let a = zwrite(&[s.path(name).to_str().unwrap()], b"x").code(1);
        assert!(stderr_of(&a).contains("not a regular file"));
    }
    assert!(s.path("d").is_dir());
}

// ---- metadata ----

#[test]
fn a_symlink_is_written_through_and_stays_a_symlink() {
    let s = Scratch::new();
    let target = s.write("real", b"old");
    let link = s.path("link");
    std::os::unix::fs::symlink("real", &link).unwrap();
    zwrite(&[link.to_str().unwrap()], b"new").success();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(read(&target), b"new");
}

#[test]
fn a_dangling_symlink_creates_its_target() {
    let s = Scratch::new();
    let link = s.path("link");
    std::os::unix::fs::symlink("made", &link).unwrap();
    zwrite(&[link.to_str().unwrap()], b"new").success();
    assert_eq!(read(&s.path("made")), b"new");
}

#[test]
fn if_changed_leaves_identical_content_and_its_mtime_alone() {
    let s = Scratch::new();
    let f = s.write("f", b"same\n");
    sh(&format!("touch -d 2001-01-01 '{}'", f.display()));
    let before = std::fs::metadata(&f).unwrap();
    zwrite(&["-u", "-v", f.to_str().unwrap()], b"same\n").success();
    let after = std::fs::metadata(&f).unwrap();
    assert_eq!((before.ino(), before.mtime()), (after.ino(), after.mtime()));

    zwrite(&["-u", f.to_str().unwrap()], b"different\n").success();
    assert_eq!(read(&f), b"different\n");
    assert_ne!(std::fs::metadata(&f).unwrap().mtime(), before.mtime());
}

#[test]
fn mode_owner_xattr_and_acl_survive_a_replace() {
    require!(is_root(), "chown to another user needs root");
    require!(
        have("setfacl") && have("setfattr"),
        "setfacl and setfattr (acl, attr packages)"
    );
    let s = Scratch::new();
    let f = s.write("f", b"old");
    let p = f.display();
    sh(&format!("chown 65534:65534 '{p}' && chmod 4755 '{p}'"));
    sh(&format!(
        "setfattr -n user.zkit -v kept '{p}' && setfacl -m u:12345:r '{p}'"
    ));
    zwrite(&[f.to_str().unwrap()], b"new").success();
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(read(&f), b"new");
    assert_eq!((m.uid(), m.gid()), (65534, 65534));
    assert_eq!(m.mode() & 0o7777, 0o4755);
    assert!(sh(&format!("getfattr --only-values -n user.zkit '{p}'")).contains("kept"));
    assert!(sh(&format!("getfacl -cp '{p}'")).contains("user:12345:r--"));
}

#[test]
fn a_mode_that_cannot_be_kept_fails_and_leaves_the_file() {
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = strace_zwrite("fchmod:error=EPERM", &[f.to_str().unwrap()], b"new");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot keep the file's mode 600") && err.contains("--allow-metadata-loss"),
        "{err}"
    );
    assert_eq!(read(&f), b"old");
    assert_eq!(mode(&f), 0o600);
    assert_eq!(s.names(), ["f"], "temporary left behind");
}

#[test]
fn allowing_metadata_loss_never_widens_the_mode() {
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Only the first fchmod (the full mode) fails; narrowing afterwards may succeed.
    let out = strace_zwrite(
        "fchmod:error=EPERM:when=1",
        &["--allow-metadata-loss", f.to_str().unwrap()],
        b"new",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("warning: could not keep mode 600"), "{err}");
    assert_eq!(read(&f), b"new");
    assert_eq!(mode(&f) & !0o600, 0, "mode widened to {:o}", mode(&f));

    // When the mode can be neither kept nor narrowed, nothing is replaced.
    let out = strace_zwrite(
        "fchmod:error=EPERM",
        &["--allow-metadata-loss", f.to_str().unwrap()],
        b"newer",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(read(&f), b"new");
    assert_eq!(mode(&f), 0o600);
}

#[test]
fn an_owner_that_cannot_be_kept_fails_unless_allowed() {
    require!(is_root(), "chown to another user needs root");
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    sh(&format!("chown 65534:65534 '{}'", f.display()));
    let out = strace_zwrite("fchown:error=EPERM", &[f.to_str().unwrap()], b"new");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("owner 65534:65534"), "{err}");
    assert_eq!(read(&f), b"old");
    assert_eq!(std::fs::metadata(&f).unwrap().uid(), 65534);

    let out = strace_zwrite(
        "fchown:error=EPERM",
        &["--allow-metadata-loss", f.to_str().unwrap()],
        b"new",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: could not keep owner 65534:65534"),
        "{err}"
    );
    assert_eq!(read(&f), b"new");
}

#[test]
fn an_xattr_or_acl_that_cannot_be_kept_fails_and_leaves_the_file() {
    require!(have("strace"), "strace for fault injection");
    require!(
        have("setfacl") && have("setfattr"),
        "setfacl and setfattr (acl, attr packages)"
    );
    let s = Scratch::new();
    for (name, set) in [
        ("x", "setfattr -n user.zkit -v kept"),
        ("acl", "setfacl -m u:12345:r"),
    ] {
        let f = s.write(name, b"old");
        sh(&format!("{set} '{}'", f.display()));
        let out = strace_zwrite("fsetxattr:error=EOPNOTSUPP", &[f.to_str().unwrap()], b"new");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot keep the file's xattr"), "{err}");
        assert_eq!(read(&f), b"old");
    }
    assert_eq!(s.names(), ["acl", "x"]);
}

// ---- immutable and append-only files ----

#[test]
fn immutable_file_is_replaced_with_i_and_the_bit_set_again() {
    require!(is_root(), "chattr +i needs root");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    sh(&format!("chattr +i '{}'", f.display()));
    zwrite(&["-i", f.to_str().unwrap()], b"new\n").success();
    assert_eq!(read(&f), b"new\n");
    assert!(
        lsattr(&f).contains('i'),
        "bit not set again: {}",
        lsattr(&f)
    );
}

#[test]
fn protected_files_without_i_fail_naming_i_and_stay_unchanged() {
    require!(is_root(), "chattr needs root");
    let s = Scratch::new();
    for flag in ["i", "a"] {
        let f = s.write(flag, b"old");
        sh(&format!("chattr +{flag} '{}'", f.display()));
        let a = zwrite(&[f.to_str().unwrap()], b"new").code(1);
        assert!(stderr_of(&a).contains("use -i"), "{}", stderr_of(&a));
        assert_eq!(read(&f), b"old");
        assert!(lsattr(&f).contains(flag));
    }
    assert_eq!(s.names(), ["a", "i"]);
}

#[test]
fn append_only_file_is_appended_to_with_i_and_keeps_its_flag() {
    require!(is_root(), "chattr needs root");
    let s = Scratch::new();
    let f = s.write("f", b"one\n");
    sh(&format!("chattr +a '{}'", f.display()));
    zwrite(&["-a", "-i", f.to_str().unwrap()], b"two\n").success();
    assert_eq!(read(&f), b"one\ntwo\n");
    assert!(lsattr(&f).contains('a'));
}

#[test]
fn immutable_bit_restored_when_rename_fails() {
    require!(is_root(), "chattr needs root");
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    sh(&format!("chattr +i '{}'", f.display()));
    let out = strace_zwrite(
        "rename,renameat,renameat2:error=EIO",
        &["-i", f.to_str().unwrap()],
        b"new",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Input/output error"));
    assert_eq!(read(&f), b"old");
    assert!(
        lsattr(&f).contains('i'),
        "flag not restored: {}",
        lsattr(&f)
    );
    assert_eq!(s.names(), ["f"], "temporary left behind");
}

/// The positions (1-based, among all of zwrite's ioctl calls) of the FS_IOC_SETFLAGS calls a
/// `zwrite ARGS PROBE` makes, found by tracing one; fault injection counts calls the same way.
/// It reads stdin like the runs it stands for: the terminal check on stdin is an ioctl too.
fn setflags_calls(args: &[&str], probe: &Path) -> Vec<usize> {
    let log = probe.with_extension("strace");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=ioctl", "-o"])
        .arg(&log)
        .arg(bin_path("zwrite"))
        .args(args)
        .arg(probe)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    text.lines()
        .filter(|l| l.contains("ioctl("))
        .enumerate()
        .filter(|(_, l)| l.contains("FS_IOC_SETFLAGS"))
        .map(|(i, _)| i + 1)
        .collect()
}

/// A file with the immutable bit, and the SETFLAGS calls of `zwrite -i` on one like it:
/// the first lifts the flag, the last sets it on the new file.
fn immutable_fixture(s: &Scratch) -> (std::path::PathBuf, Vec<usize>) {
    let probe = s.write("probe", b"old");
    let f = s.write("f", b"old");
    sh(&format!(
        "chattr +i '{}' '{}'",
        probe.display(),
        f.display()
    ));
    let calls = setflags_calls(&["-i"], &probe);
    sh(&format!(
        "chattr -i '{}' && rm '{}'",
        probe.display(),
        probe.display()
    ));
    assert!(calls.len() >= 2, "no flag dance traced: {calls:?}");
    (f, calls)
}

#[test]
fn immutable_file_is_kept_when_the_flag_cannot_be_set_on_the_new_file() {
    require!(is_root(), "chattr needs root");
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let (f, calls) = immutable_fixture(&s);
    let set_new = calls[calls.len() - 1];
    // Every retry of the last SETFLAGS fails; putting the flag back on the old file works.
    let out = strace_zwrite(
        &format!("ioctl:error=ENOSPC:when={set_new}..{}", set_new + 2),
        &["-i", f.to_str().unwrap()],
        b"new",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("No space left") && err.contains("left as it was"),
        "{err}"
    );
    assert_eq!(read(&f), b"old");
    assert!(
        lsattr(&f).contains('i'),
        "flag not restored: {}",
        lsattr(&f)
    );
    assert_eq!(s.names(), ["f"], "temporary left behind");
}

#[test]
fn a_flag_that_cannot_be_set_again_has_its_own_status_and_names_the_fix() {
    require!(is_root(), "chattr needs root");
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let (f, calls) = immutable_fixture(&s);
    let set_new = calls[calls.len() - 1];
    let fix = format!("chattr +i {}", f.display());

    // Neither the new file nor, after swapping back, the old one takes the flag.
    let out = strace_zwrite(
        &format!("ioctl:error=EIO:when={set_new}+"),
        &["-i", f.to_str().unwrap()],
        b"new",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "was left as it was but is no longer immutable: {fix}"
        )),
        "{err}"
    );
    assert_eq!(read(&f), b"old");

    // The new file is in place and cannot go back: say so.
    sh(&format!("chattr +i '{}'", f.display()));
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null"])
        .args(["-e", &format!("inject=ioctl:error=EIO:when={set_new}+")])
        .args(["-e", "inject=renameat2:error=EIO:when=2+"])
        .arg(bin_path("zwrite"))
        .args(["-i", f.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"new").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("was replaced but is no longer immutable: {fix}")),
        "{err}"
    );
    assert_eq!(read(&f), b"new");
    assert!(!lsattr(&f).contains('i'));
    assert_eq!(s.names(), ["f"], "temporary left behind");
}

#[test]
fn sigterm_while_the_flag_is_lifted_waits_until_it_is_set_again() {
    require!(is_root(), "chattr needs root");
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let (f, calls) = immutable_fixture(&s);
    // SIGTERM arrives as the flag is being lifted.
    let out = strace_zwrite(
        &format!("ioctl:signal=SIGTERM:when={}", calls[calls.len() - 2]),
        &["-i", f.to_str().unwrap()],
        b"new",
    );
    assert!(!out.status.success(), "SIGTERM was lost");
    assert_eq!(read(&f), b"new");
    assert!(lsattr(&f).contains('i'), "left unprotected: {}", lsattr(&f));
    assert_eq!(s.names(), ["f"], "temporary left behind");
}

#[test]
fn a_failed_directory_sync_says_the_file_was_replaced() {
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    // The first fsync is the new file's, the second the directory's.
    let out = strace_zwrite("fsync:error=EIO:when=2", &[f.to_str().unwrap()], b"new");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("holds the new content, but the directory could not be synced")
            && !err.contains("left as it was"),
        "{err}"
    );
    assert_eq!(read(&f), b"new");
    assert_eq!(s.names(), ["f"]);
}

// ---- files that cannot be replaced ----

struct Unbind(std::path::PathBuf);

impl Drop for Unbind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_bind_mounted_file_says_why_and_in_place_writes_through_it() {
    require!(is_root(), "mount --bind needs root");
    let s = Scratch::new();
    let source = s.write("source", b"old\n");
    let f = s.write("f", b"hidden\n");
    sh(&format!(
        "mount --bind '{}' '{}'",
        source.display(),
        f.display()
    ));
    let _unbind = Unbind(f.clone());

    let a = zwrite(&[f.to_str().unwrap()], b"new\n").code(1);
    let err = stderr_of(&a);
    assert!(
        err.contains("cannot be replaced atomically: it is a mount point")
            && err.contains("--in-place"),
        "{err}"
    );
    assert_eq!(read(&f), b"old\n");
    assert_eq!(temporaries(&s), Vec::<String>::new());

    zwrite(
        &["--in-place", f.to_str().unwrap()],
        b"new, longer than before\n",
    )
    .success();
    assert_eq!(read(&f), b"new, longer than before\n");
    assert_eq!(read(&source), b"new, longer than before\n");
    zwrite(&["--in-place", f.to_str().unwrap()], b"short\n").success();
    assert_eq!(read(&source), b"short\n");
}

#[test]
fn a_file_in_a_directory_the_user_cannot_write_says_why() {
    require!(is_root(), "setpriv to another user needs root");
    require!(have("setpriv"), "setpriv (util-linux)");
    let s = Scratch::new();
    std::fs::set_permissions(s.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = s.write("f", b"old\n");
    sh(&format!("chown 65534:65534 '{}'", f.display()));
    let as_nobody = |args: &[&str]| {
        let mut child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin_path("zwrite"))
            .args(args)
            .arg(&f)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Refused, zwrite exits before it reads: the pipe may be closed by then.
        match child.stdin.take().unwrap().write_all(b"new\n") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            written => written.unwrap(),
        }
        child.wait_with_output().unwrap()
    };
    let out = as_nobody(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("its directory is not writable") && err.contains("--in-place"),
        "{err}"
    );
    assert_eq!(read(&f), b"old\n");

    let out = as_nobody(&["--in-place"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&f), b"new\n");
    assert_eq!(std::fs::metadata(&f).unwrap().uid(), 65534);
}

#[test]
fn replacing_a_hard_linked_file_warns_that_its_other_names_keep_the_old_content() {
    let s = Scratch::new();
    let f = s.write("f", b"old\n");
    let other = s.path("other");
    std::fs::hard_link(&f, &other).unwrap();
    let a = zwrite(&[f.to_str().unwrap()], b"new\n").success();
    let err = stderr_of(&a);
    assert!(
        err.contains("1 other hard link") && err.contains("old content"),
        "{err}"
    );
    assert_eq!(read(&f), b"new\n");
    assert_eq!(read(&other), b"old\n");

    // In place, every name sees the new content, and there is nothing to warn about.
    std::fs::remove_file(&f).unwrap();
    std::fs::hard_link(&other, &f).unwrap();
    let a = zwrite(&["--in-place", f.to_str().unwrap()], b"newer\n").success();
    assert_eq!(stderr_of(&a), "");
    assert_eq!(read(&other), b"newer\n");
}

#[test]
fn in_place_fails_before_touching_the_file_when_the_input_fails() {
    let s = Scratch::new();
    let f = s.write("f", b"old\n");
    let dir = s.path("d");
    std::fs::create_dir(&dir).unwrap();
    zwrite(
        &[
            "--in-place",
            "--from",
            dir.to_str().unwrap(),
            f.to_str().unwrap(),
        ],
        b"",
    )
    .code(1);
    assert_eq!(read(&f), b"old\n");
    zwrite(&["--in-place", "-a", f.to_str().unwrap()], b"more\n").success();
    assert_eq!(read(&f), b"old\nmore\n");
    zwrite(&["--in-place", "-i", f.to_str().unwrap()], b"x").code(2);
}

#[test]
fn in_place_says_when_the_file_was_partly_written() {
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let f = s.write("f", b"old\n");
    // No space: found before the first byte changes.
    let out = strace_zwrite(
        "fallocate:error=ENOSPC",
        &["--in-place", f.to_str().unwrap()],
        b"new\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("left as it was"), "{err}");
    assert_eq!(read(&f), b"old\n");
    // An I/O error while writing into FILE: its own status, and no claim that FILE is intact.
    // (From a pipe the input is spooled with write(2); the spool goes into FILE with
    // copy_file_range(2), which fails.)
    let out = strace_zwrite(
        "copy_file_range:error=EIO",
        &["--in-place", f.to_str().unwrap()],
        b"new\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("was partly written") && !err.contains("left as it was"),
        "{err}"
    );
    // Written in full, but the sync failed: it says what FILE holds.
    let out = strace_zwrite(
        "fsync:error=EIO",
        &["--in-place", f.to_str().unwrap()],
        b"new\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("holds the new content, but the file could not be synced"),
        "{err}"
    );
    assert_eq!(read(&f), b"new\n");
}

// ---- faults ----

fn strace_zwrite(inject: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            &format!("inject={inject}"),
        ])
        .arg(bin_path("zwrite"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn eio_on_fsync_fails_clearly_and_keeps_the_file() {
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    let out = strace_zwrite("fsync:error=EIO", &[f.to_str().unwrap()], b"new");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Input/output error") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(read(&f), b"old");
    assert_eq!(s.names(), ["f"], "temporary left behind");
}

#[test]
fn enospc_fails_clearly_and_keeps_the_file() {
    require!(is_root(), "mounting a tmpfs needs root");
    let fs = util::Tmpfs::new("1m");
    let f = fs.path("f");
    std::fs::write(&f, b"old").unwrap();
    let a = zwrite(&[f.to_str().unwrap()], &vec![b'x'; 2 << 20]).code(1);
    assert!(
        stderr_of(&a).contains("No space left on device"),
        "{}",
        stderr_of(&a)
    );
    assert_eq!(read(&f), b"old");
    assert_eq!(util::names_in(fs.dir.path()), ["f"]);
}

#[test]
fn no_wait_fails_at_once_when_the_lock_is_held() {
    require!(have("flock"), "flock(1) from util-linux");
    let s = Scratch::new();
    let f = s.write("f", b"old\n");
    let mut holder = Command::new("flock")
        .arg(&f)
        .args(["sleep", "5"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let a = zwrite(&["-a", "--no-wait", f.to_str().unwrap()], b"new\n").code(1);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(stderr_of(&a).contains("lock"), "{}", stderr_of(&a));
    assert_eq!(read(&f), b"old\n");
}

// ---- concurrency ----

fn payload(writer: usize, round: usize) -> Vec<u8> {
    let line = format!("writer {writer} round {round}\n");
    line.repeat(4096 / line.len() + 1).into_bytes()
}

/// `writers` processes, each running `rounds` zwrites in a row; returns every payload written.
fn race(f: &Path, args: &[&str], writers: usize, rounds: usize, what: fn(usize, usize) -> Vec<u8>) {
    std::thread::scope(|scope| {
        for w in 0..writers {
            scope.spawn(move || {
                for r in 0..rounds {
                    bin("zwrite")
                        .args(args)
                        .arg(f)
                        .write_stdin(what(w, r))
                        .assert()
                        .success();
                }
            });
        }
    });
}

#[test]
fn concurrent_writers_leave_exactly_one_whole_payload() {
    let s = Scratch::new();
    let f = s.write("f", b"old");
    race(&f, &[], 32, 20, payload);
    let content = read(&f);
    let whole = (0..32).any(|w| (0..20).any(|r| payload(w, r) == content));
    assert!(whole, "final file is not one writer's payload");
    assert_eq!(s.names(), ["f"]);
}

#[test]
fn concurrent_writers_of_an_immutable_file_all_succeed() {
    require!(is_root(), "chattr needs root");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    sh(&format!("chattr +i '{}'", f.display()));
    race(&f, &["-i"], 32, 20, payload);
    let content = read(&f);
    assert!((0..32).any(|w| (0..20).any(|r| payload(w, r) == content)));
    assert!(lsattr(&f).contains('i'));
    assert_eq!(s.names(), ["f"]);
}

#[test]
fn concurrent_appends_are_never_lost() {
    let s = Scratch::new();
    let f = s.path("log");
    race(&f, &["-a"], 16, 20, |w, r| {
        format!("{w}-{r}\n").into_bytes()
    });
    let text = String::from_utf8(read(&f)).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    let mut want: Vec<String> = (0..16)
        .flat_map(|w| (0..20).map(move |r| format!("{w}-{r}")))
        .collect();
    want.sort();
    assert_eq!(lines, want);
}

// ---- crashes ----

const MIB: usize = 1 << 20;

/// Start a zwrite whose input we feed by hand.
fn spawn_zwrite(args: &[&str]) -> std::process::Child {
    Command::new(bin_path("zwrite"))
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_while_writing_leaves_the_old_file_and_no_temporary() {
    let s = Scratch::new();
    let f = s.write("f", b"old");
    let chunk = vec![b'n'; MIB];
    for _ in 0..8 {
        let mut child = spawn_zwrite(&[f.to_str().unwrap()]);
        let mut stdin = child.stdin.take().unwrap();
        for _ in 0..(util::random_u64() % 32) {
            stdin.write_all(&chunk).unwrap();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(read(&f), b"old");
        // O_TMPFILE: nothing was ever visible.
        assert_eq!(s.names(), ["f"]);
    }
}

#[test]
fn sigkill_at_any_moment_never_leaves_a_partial_file() {
    let s = Scratch::new();
    let f = s.write("f", b"old");
    let new = vec![b'n'; 16 * MIB];
    for _ in 0..12 {
        let mut child = spawn_zwrite(&[f.to_str().unwrap()]);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&new).unwrap();
        drop(stdin);
        // Somewhere in the write-back, fsync, rename or after.
        std::thread::sleep(Duration::from_micros(util::random_u64() % 60_000));
        let _ = child.kill();
        child.wait().unwrap();
        let content = read(&f);
        assert!(
            content == b"old" || content == new,
            "partial file: {} bytes",
            content.len()
        );
        std::fs::write(&f, b"old").unwrap();
    }
}

/// Start `zwrite ARGS` under strace with `inject`, feeding it `input`.
fn spawn_strace_zwrite(inject: &str, args: &[&str], input: &[u8]) -> std::process::Child {
    let mut child = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            &format!("inject={inject}"),
        ])
        .arg(bin_path("zwrite"))
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child
}

fn temporaries(s: &Scratch) -> Vec<String> {
    s.names()
        .into_iter()
        .filter(|n| n.contains(".zw-"))
        .collect()
}

#[test]
fn a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write() {
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    // SIGKILL just as the named temporary is about to be renamed over f.
    let out = spawn_strace_zwrite(
        "rename,renameat,renameat2:signal=SIGKILL",
        &[f.to_str().unwrap()],
        &vec![b'n'; MIB],
    )
    .wait_with_output()
    .unwrap();
    assert!(!out.status.success());
    assert_eq!(read(&f), b"old");
    let left = temporaries(&s);
    assert_eq!(left.len(), 1, "no leftover to clean: {:?}", s.names());
    assert!(left[0].starts_with(".f.zw-"), "{left:?}");

    zwrite(&[f.to_str().unwrap()], b"new").success();
    assert_eq!(read(&f), b"new");
    assert_eq!(s.names(), ["f"], "stale temporary kept");
}

#[test]
fn a_live_writers_temporary_is_never_removed() {
    require!(have("strace"), "strace for fault injection");
    let s = Scratch::new();
    let f = s.write("f", b"old");
    // Writer A stops as it syncs its temporary: named and full, about to be renamed.
    let a = spawn_strace_zwrite(
        "fsync:signal=SIGSTOP:when=1",
        &[f.to_str().unwrap()],
        b"from a",
    );
    util::wait_for("a's temporary", Duration::from_secs(20), || {
        temporaries(&s).len() == 1
    });
    let temp = temporaries(&s).remove(0);
    // The name records the writer: `.f.zw-PID-START-RAND`.
    let pid: i32 = temp[".f.zw-".len()..]
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    // A stopped writer must not outlive a failed test.
    struct Reap(rustix::process::Pid);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = rustix::process::kill_process(self.0, rustix::process::Signal::KILL);
        }
    }
    let _reap = Reap(pid);

    zwrite(&[f.to_str().unwrap()], b"from b").success();
    assert_eq!(read(&f), b"from b");
    assert_eq!(
        temporaries(&s),
        std::slice::from_ref(&temp),
        "a live writer's temporary was removed"
    );

    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    let out = a.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&f), b"from a");
    assert_eq!(s.names(), ["f"]);
}

/// Field 22 of /proc/PID/stat: what a temporary's name records as its writer's start time.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn a_reused_pid_does_not_keep_a_leftover_alive() {
    let s = Scratch::new();
    let f = s.write("f", b"old");
    let mut live = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = live.id();
    let start = start_time(pid);
    // Same pid, different start: that writer is gone and the pid now belongs to another.
    let reused = s.write(&format!(".f.zw-{pid}-{}-0badf00d", start + 1), b"stale");
    // Same pid and start: the writer runs (between creating and locking its temporary).
    let running = s.write(&format!(".f.zw-{pid}-{start}-0badf00d"), b"live");
    // Another file's temporary, and a name that records no writer, are not ours to judge.
    let other = s.write(&format!(".g.zw-{}-0-0badf00d", u32::MAX - 1), b"other");
    let unknown = s.write(".f.zw-0badf00d", b"unknown");

    zwrite(&[f.to_str().unwrap()], b"new").success();
    live.kill().unwrap();
    live.wait().unwrap();
    assert!(!reused.exists(), "stale temporary kept");
    assert!(running.exists() && other.exists() && unknown.exists());
}

#[test]
fn sigterm_removes_a_named_temporary() {
    // bindfs (FUSE) has no O_TMPFILE, so zwrite falls back to a named temporary there.
    require!(is_root(), "mounting bindfs needs root");
    require!(
        have("bindfs"),
        "bindfs (FUSE) for a file system without O_TMPFILE"
    );
    let s = Scratch::new();
    std::fs::create_dir(s.path("src")).unwrap();
    std::fs::create_dir(s.path("mnt")).unwrap();
    let mnt = s.path("mnt");
    sh(&format!(
        "bindfs '{}' '{}'",
        s.path("src").display(),
        mnt.display()
    ));
    let _unmount = Unmount(&mnt);
    let f = mnt.join("f");
    std::fs::write(&f, b"old").unwrap();

    let mut child = spawn_zwrite(&[f.to_str().unwrap()]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&[b'n'; 4096]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while util::names_in(&mnt).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no named temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let temp = util::names_in(&mnt).into_iter().find(|n| n != "f").unwrap();
    assert!(
        temp.starts_with(".f.zw-"),
        "unrecognisable temporary {temp}"
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "should die of the signal"
    );
    assert_eq!(util::names_in(&mnt), ["f"]);
    assert_eq!(read(&f), b"old");
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}
