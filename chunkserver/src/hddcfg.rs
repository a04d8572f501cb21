//! `mfshdd.cfg`: one disk (folder) per line.
//!
//! ```text
//! # comment
//! /mnt/hdd1
//! */mnt/hdd2          # '*' = marked for removal: chunks are read, replicated away, not written
//! /mnt/hdd3 -5GiB     # leave 5 GiB free on this disk
//! /mnt/hdd4 100GiB    # use at most 100 GiB
//! ```

use antler_common::cfg::parse_size;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// One disk line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HddLine {
    /// Folder holding the 256 chunk subfolders.
    pub path: PathBuf,
    /// Marked for removal (`*` prefix).
    pub marked_for_removal: bool,
    /// Space limit: `Some(Limit::Max(n))` use at most n bytes, `Some(Limit::Leave(n))`
    /// keep n bytes free; `None` = HDD_LEAVE_SPACE_DEFAULT.
    pub limit: Option<Limit>,
    /// Line number in the file.
    pub line: usize,
}

/// A per-disk space limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Use at most this many bytes.
    Max(u64),
    /// Keep this many bytes free.
    Leave(u64),
}

/// A bad `mfshdd.cfg`.
#[derive(Debug, Error)]
pub enum HddCfgError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line cannot be parsed.
    #[error("{path}:{line}: {msg}")]
    Line {
        /// File.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// No disk is configured.
    #[error("{0}: no disks configured")]
    Empty(PathBuf),
}

/// Parses `mfshdd.cfg` text; `path` is used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Vec<HddLine>, HddCfgError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let (marked, rest) = match l.strip_prefix('*') {
            Some(r) => (true, r.trim_start()),
            None => (false, l),
        };
        let mut parts = rest.split_whitespace();
        let p = parts.next().unwrap_or("");
        if !p.starts_with('/') {
            return Err(HddCfgError::Line {
                path: path.into(),
                line,
                msg: format!("'{p}' is not an absolute path"),
            });
        }
        let limit = match parts.next() {
            None => None,
            Some(s) => {
                let (neg, num) = match s.strip_prefix('-') {
                    Some(n) => (true, n),
                    None => (false, s),
                };
                let v = parse_size(num).map_err(|e| HddCfgError::Line {
                    path: path.into(),
                    line,
                    msg: format!("bad space limit '{s}': {e}"),
                })?;
                Some(if neg { Limit::Leave(v) } else { Limit::Max(v) })
            }
        };
        if let Some(extra) = parts.next() {
            return Err(HddCfgError::Line {
                path: path.into(),
                line,
                msg: format!("unexpected '{extra}'"),
            });
        }
        out.push(HddLine {
            path: PathBuf::from(p),
            marked_for_removal: marked,
            limit,
            line,
        });
    }
    if out.is_empty() {
        return Err(HddCfgError::Empty(path.into()));
    }
    Ok(out)
}

/// Reads and parses `mfshdd.cfg`.
pub fn load(path: &Path) -> Result<Vec<HddLine>, HddCfgError> {
    let text = std::fs::read_to_string(path).map_err(|source| HddCfgError::Io {
        path: path.into(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let t = "# disks\n/a\n *  /b   # going away\n\n/c -5GiB\n/d 1GiB\n";
        let v = parse(Path::new("mfshdd.cfg"), t).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(
            v[0],
            HddLine {
                path: "/a".into(),
                marked_for_removal: false,
                limit: None,
                line: 2
            }
        );
        assert!(v[1].marked_for_removal);
        assert_eq!(v[1].path, PathBuf::from("/b"));
        assert_eq!(v[2].limit, Some(Limit::Leave(5 << 30)));
        assert_eq!(v[3].limit, Some(Limit::Max(1 << 30)));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse(Path::new("/etc/mfs/mfshdd.cfg"), "/a\nrelative/x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/mfs/mfshdd.cfg:2: 'relative/x' is not an absolute path"
        );
        let e = parse(Path::new("h.cfg"), "/a zz\n").unwrap_err();
        assert!(
            e.to_string().starts_with("h.cfg:1: bad space limit 'zz'"),
            "{e}"
        );
        assert!(matches!(
            parse(Path::new("h.cfg"), "# none\n"),
            Err(HddCfgError::Empty(_))
        ));
    }
}
