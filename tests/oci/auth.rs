//! Credentials from docker's credential helpers (`credsStore`, `credHelpers`), against a
//! registry that requires a login (htpasswd).

use super::*;

/// bcrypt of `s3cret`, for the user `zkit`.
const HTPASSWD: &str = "zkit:$2b$04$AOnZ8BAzIgL.rV1krVXHGuAeQVKiD1FitU.Dl3jhbZ3lxAtkk5JoO\n";

fn locked_registry(env: &Env) -> Registry {
    let file = env.path("htpasswd");
    std::fs::write(&file, HTPASSWD).unwrap();
    Registry::start_with(
        env,
        &format!(
            "auth:\n  htpasswd:\n    realm: zkit\n    path: {}\n",
            file.display()
        ),
    )
}

/// A helper `docker-credential-NAME` in the test's `bin`, running `script` (sh), which
/// records each call's arguments and stdin in `helper.log`.
fn helper(env: &Env, name: &str, script: &str) {
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join(format!("docker-credential-{name}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nin=$(cat)\necho \"$* $in\" >> '{}'\n{script}\n",
            env.path("helper.log").display()
        ),
    )
    .unwrap();
    util::sh(&format!("chmod 755 '{}'", path.display()));
}

/// `zcommit ARGS...` with only `config` (docker's config.json) to find credentials in, and
/// the test's helpers on PATH.
fn with_config(env: &Env, config: &str, args: &[&str]) -> std::process::Output {
    let dir = env.path("docker");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let path = format!(
        "{}:{}",
        env.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    env.zcommit()
        .args(args)
        .env("DOCKER_CONFIG", &dir)
        .env("HOME", env.path("home"))
        .env("PATH", path)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap()
}

const ANSWER: &str = r#"echo '{"ServerURL":"x","Username":"zkit","Secret":"s3cret"}'"#;

#[test]
fn a_credential_helper_logs_a_push_and_a_pull_in() {
    require_tools!();
    let env = Env::new();
    let reg = locked_registry(&env);
    util::sh(&format!(
        "mkdir '{0}/l'; echo hi > '{0}/l/f'",
        env.scratch.root().display()
    ));
    env.commit("l", "l");
    let target = format!("{}/zkit/locked:1", reg.addr);

    // Without credentials the registry refuses, so what follows is the helper's doing.
    let anonymous = with_config(&env, "{}", &["push", "l", &target]);
    assert_eq!(anonymous.status.code(), Some(1));

    helper(&env, "zkittest", ANSWER);
    let store = r#"{"auths": {}, "credsStore": "zkittest"}"#;
    let pushed = with_config(&env, store, &["push", "l", &target]);
    util::stdout_of(pushed, "push with credsStore");
    let log = std::fs::read_to_string(env.path("helper.log")).unwrap();
    assert_eq!(
        log.lines().next(),
        Some(format!("get {}", reg.addr).as_str())
    );

    // credHelpers names the helper for this registry only, over credsStore.
    std::fs::remove_file(env.path("helper.log")).unwrap();
    let per_registry = format!(
        r#"{{"credsStore": "absent", "credHelpers": {{"{}": "zkittest"}}}}"#,
        reg.addr
    );
    let pulled = with_config(&env, &per_registry, &["pull", &target, "--tag", "t"]);
    util::stdout_of(pulled, "pull with credHelpers");
    assert!(
        std::fs::read_to_string(env.path("helper.log"))
            .unwrap()
            .starts_with("get ")
    );
}

#[test]
fn a_missing_or_failing_credential_helper_is_one_clear_line() {
    require_tools!();
    let env = Env::new();
    let reg = locked_registry(&env);
    let target = format!("{}/zkit/locked:1", reg.addr);
    let one_line = |out: std::process::Output, want: &[&str]| {
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        for w in want {
            assert!(err.contains(w), "{w:?} in {err}");
        }
    };
    let missing = with_config(&env, r#"{"credsStore": "absent"}"#, &["pull", &target]);
    one_line(
        missing,
        &["docker-credential-absent", "not on PATH", "credsStore"],
    );

    helper(&env, "broken", "echo 'keychain locked' >&2; exit 3");
    let failing = with_config(&env, r#"{"credsStore": "broken"}"#, &["pull", &target]);
    one_line(
        failing,
        &["docker-credential-broken", "failed", "keychain locked"],
    );
}
