//! Registry credentials from the files `podman login` and `docker login` write, and from the
//! credential helpers docker's file names.
//!
//! Looked up, first match wins: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`
//! (podman, skopeo), `$DOCKER_CONFIG/config.json` else `~/.docker/config.json` (docker). Each
//! holds `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}`; a key may also be a
//! URL (`https://HOST/v1/`).
//!
//! A file may instead name a credential helper, as docker does: `credHelpers: {"HOST": NAME}`
//! for one registry, else `credsStore: NAME` for all. The helper is the program
//! `docker-credential-NAME` on `PATH`; `get` with the server on stdin answers
//! `{"Username": .., "Secret": ..}` on stdout (docker's credential-helper protocol). A helper
//! that has nothing for the server ("credentials not found") is no login; one that is missing
//! or fails otherwise is an error, since pushing anonymously instead would fail less clearly.

use crate::error::{Error, ErrorKind, Result};
use base64::Engine as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A user name and password for a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// The files to look in, in order.
fn files() -> Vec<PathBuf> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut out = Vec::new();
    out.extend(var("REGISTRY_AUTH_FILE"));
    if let Some(run) = var("XDG_RUNTIME_DIR") {
        out.push(run.join("containers/auth.json"));
    }
    match var("DOCKER_CONFIG") {
        Some(dir) => out.push(dir.join("config.json")),
        None => out.extend(var("HOME").map(|h| h.join(".docker/config.json"))),
    }
    out
}

/// The login for `registry` (`HOST[:PORT]`), if a file or the helper it names has one.
pub fn login_for(registry: &str) -> Result<Option<Login>> {
    for file in files() {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        if let Some((helper, key)) = helper_for(&value, registry) {
            match run_helper(&helper, key, registry, &file)? {
                Some(login) => return Ok(Some(login)),
                None => continue,
            }
        }
        if let Some(login) = from_file(&value, registry) {
            return Ok(Some(login));
        }
    }
    Ok(None)
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Whether a key of `auths` or `credHelpers` names `registry`.
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    host == registry || (is_docker_hub(registry) && host == "index.docker.io")
}

/// The helper a config names for `registry`, and which key named it (for messages).
fn helper_for(value: &serde_json::Value, registry: &str) -> Option<(String, &'static str)> {
    let per_registry = value
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| key_matches(k, registry)))
        .and_then(|(_, name)| name.as_str());
    if let Some(name) = per_registry.filter(|n| !n.is_empty()) {
        return Some((name.to_string(), "credHelpers"));
    }
    let store = value.get("credsStore").and_then(|s| s.as_str());
    store
        .filter(|n| !n.is_empty())
        .map(|n| (n.to_string(), "credsStore"))
}

/// Ask `docker-credential-NAME get` for `registry`'s login.
fn run_helper(name: &str, key: &str, registry: &str, file: &Path) -> Result<Option<Login>> {
    let program = format!("docker-credential-{name}");
    let fail = |what: String| {
        Error::new(
            registry,
            ErrorKind::Invalid(format!(
                "credential helper {program} (named by {key} in {}) {what}",
                file.display()
            )),
        )
    };
    // Docker Hub's logins are stored under its v1 URL; other registries under HOST[:PORT].
    let server = match is_docker_hub(registry) {
        true => "https://index.docker.io/v1/",
        false => registry,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail(format!(
                "is not on PATH (install it, or remove {key} from the file)"
            )),
            _ => fail(format!("cannot be run: {e}")),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its answer below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot be run: {e}")))?;
    let said = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        text.lines().next().unwrap_or("").trim().to_string()
    };
    if !out.status.success() {
        let message = match said(&out.stdout) {
            m if m.is_empty() => said(&out.stderr),
            m => m,
        };
        // What docker's own helpers answer for a server they hold nothing for.
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!(
            "failed ({}): {message} (log in again with `docker login {registry}`)",
            out.status
        )));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&out.stdout).map_err(|e| {
        fail(format!(
            "answered something other than {{\"Username\", \"Secret\"}}: {e}"
        ))
    })?;
    Ok(Some(Login {
        user: answer.username,
        password: answer.secret,
    }))
}

fn from_file(value: &serde_json::Value, registry: &str) -> Option<Login> {
    let auths = value.get("auths")?.as_object()?;
    auths.iter().find_map(|(key, entry)| {
        if !key_matches(key, registry) {
            return None;
        }
        let encoded = entry.get("auth")?.as_str()?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Login {
            user: user.to_string(),
            password: password.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_found_by_host_or_url_key() {
        let file = br#"{"auths": {"https://reg.example:5000/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                        "other": {"auth": "eDp5"}}}"#;
        let file: serde_json::Value = serde_json::from_slice(file).unwrap();
        assert_eq!(
            from_file(&file, "reg.example:5000"),
            Some(Login {
                user: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(from_file(&file, "nowhere"), None);
    }
}
