//! Strict TOML configuration files (the format of Antler's own daemons: `ha-agent`,
//! `block-repl`), with errors that name the file, the line and the key.
//!
//! Structs deserialized here are expected to carry `#[serde(deny_unknown_fields)]`, so an
//! unknown key is a parse error pointing at its line.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A configuration file that cannot be used.
#[derive(Debug, Error)]
pub enum TomlError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Line (1-based; 0 when the parser gave no position).
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Line (1-based; 0 when the key is absent).
        line: usize,
        /// Key, with its table (e.g. `node.node1.address`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads a file as text; the error names the file.
pub fn read(path: &Path) -> Result<String, TomlError> {
    std::fs::read_to_string(path).map_err(|source| TomlError::Io {
        path: path.into(),
        source,
    })
}

/// Deserializes `text`; `path` names the file in errors.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, TomlError> {
    toml::from_str(text).map_err(|e| TomlError::Parse {
        path: path.into(),
        line: e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0),
        message: e.message().to_string(),
    })
}

/// Line (1-based) of the first `key = ...` at or after line `from_line`; 0 when absent.
pub fn line_of(text: &str, key: &str, from_line: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find(|(_, l)| l.trim_start().split(['=', ' ']).next() == Some(key))
        .map(|(i, _)| i + 1)
        .unwrap_or(0)
}

/// Line of the `[[table]]` header whose entry holds `name = "<name>"`; 0 when absent.
pub fn table_line(text: &str, table: &str, name: &str) -> usize {
    let header = format!("[[{table}]]");
    let mut current = 0;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t == header {
            current = i + 1;
        } else if current > 0 && t.starts_with("name") && t.contains(&format!("\"{name}\"")) {
            return current;
        }
    }
    0
}

/// Line of the `[table]` header; 0 when absent.
pub fn section_line(text: &str, table: &str) -> usize {
    let header = format!("[{table}]");
    text.lines()
        .position(|l| l.trim() == header)
        .map(|i| i + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        #[serde(default)]
        node: Vec<N>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct N {
        name: String,
        x: Option<u32>,
    }

    #[test]
    fn errors_name_file_and_line() {
        let p = Path::new("/etc/x.toml");
        let text = "a = 1\n[[node]]\nname = \"n1\"\nbogus = 3\n";
        let e = parse::<T>(p, text).unwrap_err().to_string();
        assert!(e.starts_with("/etc/x.toml:4: "), "{e}");
        assert!(e.contains("bogus"), "{e}");
        let text = "a = 1\n[[node]]\nname = \"n1\"\n[[node]]\nname = \"n2\"\nx = 5\n";
        parse::<T>(p, text).unwrap();
        let at = table_line(text, "node", "n2");
        assert_eq!(at, 4);
        assert_eq!(line_of(text, "x", at), 6);
        assert_eq!(line_of(text, "missing", at), 0);
        assert_eq!(section_line("[net]\n", "net"), 1);
    }
}
