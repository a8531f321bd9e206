//! Registry credentials from the files `podman login` and `docker login` write.
//!
//! Looked up, first match wins: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`
//! (podman, skopeo), `$DOCKER_CONFIG/config.json` else `~/.docker/config.json` (docker). Each
//! holds `{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}`; a key may also be a
//! URL (`https://HOST/v1/`). Credential helpers (`credsStore`) are programs of their own and
//! are not run: `podman login` or `docker login` without one writes the file form.

use base64::Engine as _;
use std::path::PathBuf;

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

/// The login for `registry` (`HOST[:PORT]`), if a file has one.
pub fn login_for(registry: &str) -> Option<Login> {
    files()
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .find_map(|bytes| from_file(&bytes, registry))
}

fn from_file(bytes: &[u8], registry: &str) -> Option<Login> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let auths = value.get("auths")?.as_object()?;
    let docker_hub = matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    );
    auths.iter().find_map(|(key, entry)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        let matches = host == registry || (docker_hub && host == "index.docker.io");
        if !matches {
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
        assert_eq!(
            from_file(file, "reg.example:5000"),
            Some(Login {
                user: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(from_file(file, "nowhere"), None);
    }
}
