//! Names quoted for a line-based reader, as GNU `ls` quotes them on a terminal
//! (`--quoting-style=shell-escape`): a name that needs nothing is printed as it is; one with
//! spaces or shell characters is put in single quotes; a newline, another control character or
//! a byte that is not UTF-8 is written `$'\n'`, `$'\351'`. The result is one line whatever the
//! name holds, and a shell (bash, zsh, ksh) reads it back as the exact bytes.

/// `name` quoted (see the module docs).
pub fn shell_escape(name: &[u8]) -> Vec<u8> {
    // Most names need nothing: say so without building runs.
    if !name.is_empty() && name.iter().all(|&b| b.is_ascii() && safe(b as char)) {
        return name.to_vec();
    }
    let mut runs: Vec<Run> = Vec::new();
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                let mut buf = [0u8; 4];
                escaped(&mut runs).extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            } else {
                match runs.last_mut() {
                    Some(Run::Plain(s)) => s.push(c),
                    _ => runs.push(Run::Plain(c.to_string())),
                }
            }
        }
        if !chunk.invalid().is_empty() {
            escaped(&mut runs).extend_from_slice(chunk.invalid());
        }
    }
    match runs.as_slice() {
        [] => return b"''".to_vec(),
        [Run::Plain(s)] if s.chars().all(safe) => return s.as_bytes().to_vec(),
        _ => {}
    }
    let mut out = Vec::with_capacity(name.len() + 8);
    for run in &runs {
        match run {
            Run::Plain(s) => {
                out.push(b'\'');
                // A quote cannot appear inside single quotes: close, escape it, reopen.
                out.extend_from_slice(s.replace('\'', r"'\''").as_bytes());
                out.push(b'\'');
            }
            Run::Escaped(bytes) => {
                out.extend_from_slice(b"$'");
                for &b in bytes {
                    match b {
                        b'\n' => out.extend_from_slice(br"\n"),
                        b'\t' => out.extend_from_slice(br"\t"),
                        b'\r' => out.extend_from_slice(br"\r"),
                        _ => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
                    }
                }
                out.push(b'\'');
            }
        }
    }
    out
}

enum Run {
    Plain(String),
    Escaped(Vec<u8>),
}

fn escaped(runs: &mut Vec<Run>) -> &mut Vec<u8> {
    if !matches!(runs.last(), Some(Run::Escaped(_))) {
        runs.push(Run::Escaped(Vec::new()));
    }
    match runs.last_mut() {
        Some(Run::Escaped(bytes)) => bytes,
        _ => unreachable!("just pushed"),
    }
}

/// Characters no shell gives a meaning to; printable non-ASCII text is shown as it is.
fn safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "%+,-./:@_=".contains(c) || !c.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::shell_escape;

    fn q(name: &[u8]) -> String {
        String::from_utf8(shell_escape(name)).unwrap()
    }

    #[test]
    fn names_are_quoted_as_ls_quotes_them() {
        assert_eq!(q(b"usr/bin/tool"), "usr/bin/tool");
        assert_eq!(q("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(q(b"two words"), "'two words'");
        assert_eq!(q(b"it's"), r"'it'\''s'");
        assert_eq!(q(b"new\nline"), r"'new'$'\n''line'");
        assert_eq!(q(b"latin1-\xe9t\xe9"), r"'latin1-'$'\351''t'$'\351'");
        assert_eq!(q(b"\x01"), r"$'\001'");
        assert_eq!(q(b""), "''");
    }
}
