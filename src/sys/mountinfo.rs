//! Reading a `/proc/PID/mountinfo` table.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One mount of a table: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// The mounts of a table, in its order (a mount stacked on another comes after it).
pub fn entries(table: &[u8]) -> impl Iterator<Item = Entry> + '_ {
    table.split(|&b| b == b'\n').filter_map(|line| {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let dash = fields.iter().position(|f| *f == b"-")?;
        if fields.len() < 5 || fields.len() <= dash + 2 {
            return None;
        }
        let text = |f: &[u8]| String::from_utf8_lossy(&unescape(f)).into_owned();
        Some(Entry {
            mountpoint: PathBuf::from(OsString::from_vec(unescape(fields[4]))),
            fstype: text(fields[dash + 1]),
            source: text(fields[dash + 2]),
        })
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(v) = field
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(field[i]);
        i += 1;
    }
    out
}
