//! What the tools' `--json` outputs share: a path is a JSON string when it is UTF-8 and an
//! array of its bytes otherwise, so every name round-trips and the usual ones stay readable.

use serde_json::Value;

/// `bytes` as a string when they are UTF-8, else as an array of numbers.
pub fn path(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => Value::from(bytes.to_vec()),
    }
}

/// An error as `{"path", "message"}`: the path it names and what happened.
pub fn error(err: &crate::Error) -> Value {
    use std::os::unix::ffi::OsStrExt;
    serde_json::json!({
        "path": path(err.path.as_os_str().as_bytes()),
        "message": err.kind.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_are_not_utf8_are_bytes() {
        assert_eq!(path(b"a/b"), Value::from("a/b"));
        assert_eq!(path(b"a\xff"), serde_json::json!([97, 255]));
    }
}
