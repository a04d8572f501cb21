//! Reader for MooseFS-style `.cfg` files (`mfschunkserver.cfg`, `mfsmaster.cfg`, ...).
//!
//! The format is line based:
//!
//! ```text
//! # a comment
//! WORKING_USER = mfs
//! HDD_TEST_FREQ=10        # trailing comments are allowed
//! HDD_LEAVE_SPACE_DEFAULT = 256MiB
//! ```
//!
//! * `KEY = VALUE`, spaces around `=` are optional; the value is trimmed,
//! * `#` starts a comment (whole line or trailing), blank lines are ignored,
//! * keys are case-sensitive,
//! * a later duplicate key overrides the earlier one,
//! * a line without `=` is an error naming the file and line.
//!
//! Every getter takes the default used when the key is absent, so a missing
//! option never is an error; a present but malformed value is
//! ([`CfgError::BadValue`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Errors produced while loading a config file or reading a value from it.
#[derive(Debug, Error)]
pub enum CfgError {
    /// The file could not be read (missing, unreadable, not UTF-8, ...).
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file we tried to read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line that is neither blank, a comment nor `KEY = VALUE`.
    #[error("{}:{line}: {message}: '{text}'", file.display())]
    Syntax {
        /// The config file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
        /// The offending line (without its trailing comment).
        text: String,
    },
    /// A key is present but its value cannot be interpreted.
    #[error("{}:{line}: {key} = '{value}': expected {expected}", file.display())]
    BadValue {
        /// The config file.
        file: PathBuf,
        /// 1-based line number of the (last) definition of `key`.
        line: usize,
        /// The option name.
        key: String,
        /// The value as written in the file.
        value: String,
        /// What the value should look like, e.g. `an unsigned integer`.
        expected: String,
    },
}

impl CfgError {
    /// True when this is an [`CfgError::Io`] error caused by a missing file.
    ///
    /// MooseFS 3.0 daemons start with built-in defaults when their config
    /// file does not exist; callers can use this together with
    /// [`CfgFile::empty`] to do the same.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CfgError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// One `KEY = VALUE` definition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: String,
    line: usize,
}

/// A parsed config file: key → value, remembering where each key came from.
#[derive(Debug, Clone)]
pub struct CfgFile {
    path: PathBuf,
    entries: HashMap<String, Entry>,
}

impl CfgFile {
    /// Reads and parses `path`. A missing or unreadable file is [`CfgError::Io`].
    pub fn load(path: &Path) -> Result<CfgFile, CfgError> {
        let text = std::fs::read_to_string(path).map_err(|source| CfgError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        CfgFile::parse(path, &text)
    }

    /// Parses `text`; `path` is only used in messages and by [`CfgFile::path`].
    pub fn parse(path: &Path, text: &str) -> Result<CfgFile, CfgError> {
        let mut entries = HashMap::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let content = match raw.find('#') {
                Some(pos) => &raw[..pos],
                None => raw,
            };
            let content = content.trim();
            if content.is_empty() {
                continue;
            }
            let syntax = |message: &str| CfgError::Syntax {
                file: path.to_path_buf(),
                line,
                message: message.to_string(),
                text: content.to_string(),
            };
            let Some((key, value)) = content.split_once('=') else {
                return Err(syntax("expected KEY = VALUE"));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(syntax("missing option name before '='"));
            }
            if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(syntax("bad option name"));
            }
            entries.insert(
                key.to_string(),
                Entry {
                    value: value.trim().to_string(),
                    line,
                },
            );
        }
        Ok(CfgFile {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// A config without any keys (every getter returns its default).
    pub fn empty(path: &Path) -> CfgFile {
        CfgFile {
            path: path.to_path_buf(),
            entries: HashMap::new(),
        }
    }

    /// Loads `path`; a missing file gives an empty one (MooseFS daemons then run with
    /// their defaults) after printing MooseFS's notice for `daemon` on stderr.
    pub fn load_or_defaults(path: &Path, daemon: &str) -> Result<CfgFile, CfgError> {
        match CfgFile::load(path) {
            Err(e) if e.is_not_found() => {
                eprintln!(
                    "{daemon}: can't load config file: {} - using defaults",
                    path.display()
                );
                Ok(CfgFile::empty(path))
            }
            r => r,
        }
    }

    /// The path this config was loaded from (or named after).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line (1-based) where `key` was (last) defined, if present.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.entries.get(key).map(|e| e.line)
    }

    /// True when `key` is defined.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// All defined keys with their values and lines, sorted by line.
    pub fn entries(&self) -> Vec<(&str, &str, usize)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(k, e)| (k.as_str(), e.value.as_str(), e.line))
            .collect();
        all.sort_by_key(|&(_, _, line)| line);
        all
    }

    /// The raw value of `key`, or `None` when absent.
    pub fn get_opt(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|e| e.value.as_str())
    }

    /// The raw value of `key`, or `default` when absent.
    pub fn get_str(&self, key: &str, default: &str) -> String {
        self.get_opt(key).unwrap_or(default).to_string()
    }

    /// `key` as a decimal `u32`, or `default` when absent.
    pub fn get_u32(&self, key: &str, default: u32) -> Result<u32, CfgError> {
        self.get_parsed(key, default, |v| {
            parse_unsigned(v)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("an unsigned integer (at most {})", u32::MAX))
        })
    }

    /// `key` as a decimal `u64`, or `default` when absent.
    pub fn get_u64(&self, key: &str, default: u64) -> Result<u64, CfgError> {
        self.get_parsed(key, default, |v| {
            parse_unsigned(v).ok_or_else(|| "an unsigned integer".to_string())
        })
    }

    /// `key` as a finite floating point number, or `default` when absent.
    pub fn get_f64(&self, key: &str, default: f64) -> Result<f64, CfgError> {
        self.get_parsed(key, default, |v| match v.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err("a number".to_string()),
        })
    }

    /// `key` as a boolean, or `default` when absent.
    ///
    /// Accepts `0`/`1`, `yes`/`no`, `true`/`false`, `on`/`off`
    /// (case-insensitive).
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool, CfgError> {
        self.get_parsed(key, default, |v| match v.to_ascii_lowercase().as_str() {
            "1" | "yes" | "true" | "on" => Ok(true),
            "0" | "no" | "false" | "off" => Ok(false),
            _ => Err("a boolean (0/1, yes/no, true/false, on/off)".to_string()),
        })
    }

    /// `key` as a size in bytes (see [`parse_size`]), or `default` when absent.
    pub fn get_size(&self, key: &str, default: u64) -> Result<u64, CfgError> {
        self.get_parsed(key, default, |v| {
            parse_size(v).map_err(|why| format!("a size like 100, 256MiB, 1GB or 1.5G ({why})"))
        })
    }

    /// Keys not in `known`, with the line of their (last) definition,
    /// sorted by line.
    pub fn unknown_keys(&self, known: &[&str]) -> Vec<(String, usize)> {
        let mut unknown: Vec<(String, usize)> = self
            .entries
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, e)| (k.clone(), e.line))
            .collect();
        unknown.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        unknown
    }

    /// Emits one `tracing::warn!` per key not in `known`
    /// (`file:line: unknown option KEY`).
    pub fn warn_unknown(&self, known: &[&str]) {
        for (key, line) in self.unknown_keys(known) {
            tracing::warn!("{}:{}: unknown option {}", self.path.display(), line, key);
        }
    }

    fn get_parsed<T>(
        &self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, CfgError> {
        match self.entries.get(key) {
            None => Ok(default),
            Some(entry) => parse(&entry.value).map_err(|expected| CfgError::BadValue {
                file: self.path.clone(),
                line: entry.line,
                key: key.to_string(),
                value: entry.value.clone(),
                expected,
            }),
        }
    }
}

impl fmt::Display for CfgFile {
    /// Shows the file path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// Plain decimal digits (no sign, no spaces) as `u64`.
fn parse_unsigned(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a MooseFS size: a number (decimals allowed, e.g. `1.5`) with an
/// optional unit.
///
/// | suffix                                  | multiplier        |
/// |-----------------------------------------|-------------------|
/// | none or `B`                             | 1                 |
/// | `k K m M g G t T p P e E` (bare letter) | powers of 1024    |
/// | `KiB MiB GiB TiB PiB EiB`               | powers of 1024    |
/// | `kB KB MB GB TB PB EB`                  | powers of 1000    |
///
/// Whitespace between the number and the unit is allowed. The result is
/// rounded down to whole bytes. Negative numbers, unknown units and values
/// above `u64::MAX` are rejected with a short reason.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty value".to_string());
    }
    if s.starts_with('-') {
        return Err("negative sizes are not allowed".to_string());
    }
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..num_end], s[num_end..].trim_start());
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() || frac_part.contains('.') {
        return Err(format!("'{number}' is not a number"));
    }
    if number.ends_with('.') {
        return Err(format!("'{number}' is not a number"));
    }
    let mult: u128 = unit_multiplier(unit).ok_or_else(|| format!("unknown unit '{unit}'"))?;

    let too_big = || "value too large".to_string();
    let mut int: u128 = 0;
    for b in int_part.bytes() {
        int = int
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(b - b'0')))
            .filter(|&v| v <= u128::from(u64::MAX))
            .ok_or_else(too_big)?;
    }
    let mut total = int.checked_mul(mult).ok_or_else(too_big)?;
    // Fractional part: keep at most 18 digits, enough for exact results up
    // to the largest multiplier (1024^6) without overflowing u128.
    let frac_digits = &frac_part[..frac_part.len().min(18)];
    if !frac_digits.is_empty() {
        let frac: u128 = frac_digits
            .parse()
            .map_err(|_| format!("'{number}' is not a number"))?;
        let scale = 10u128.pow(frac_digits.len() as u32);
        total = total.checked_add(frac * mult / scale).ok_or_else(too_big)?;
    }
    u64::try_from(total).map_err(|_| too_big())
}

/// Multiplier of a size unit, `None` when the unit is unknown.
fn unit_multiplier(unit: &str) -> Option<u128> {
    if unit.is_empty() || unit == "B" {
        return Some(1);
    }
    let mut chars = unit.chars();
    let letter = chars.next()?;
    let exp = match letter.to_ascii_lowercase() {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    match chars.as_str() {
        "" | "iB" => Some(1024u128.pow(exp)),
        "B" => Some(1000u128.pow(exp)),
        _ => None,
    }
}

/// Resolves `host:port` to an IPv4 address; `*` or an empty host means 0.0.0.0.
pub fn resolve(host: &str, port: u16) -> std::io::Result<std::net::SocketAddrV4> {
    if host == "*" || host.is_empty() {
        return Ok(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::UNSPECIFIED,
            port,
        ));
    }
    for a in std::net::ToSocketAddrs::to_socket_addrs(&(host, port))? {
        if let std::net::SocketAddr::V4(v4) = a {
            return Ok(v4);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("{host}: no IPv4 address"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> CfgFile {
        CfgFile::parse(Path::new("mfschunkserver.cfg"), text).expect("parse")
    }

    #[test]
    fn parses_keys_comments_and_spaces() {
        let c = cfg("# leading comment\n\
             \n\
             WORKING_USER = mfs\n\
             WORKING_GROUP=mfs\n\
             \tDATA_PATH   =   /var/lib/mfs   \n\
             HDD_TEST_FREQ = 10 # trailing comment\n\
             EMPTY =\n\
             # COMMENTED = 1\n\
                \n");
        assert_eq!(c.get_opt("WORKING_USER"), Some("mfs"));
        assert_eq!(c.get_opt("WORKING_GROUP"), Some("mfs"));
        assert_eq!(c.get_str("DATA_PATH", "x"), "/var/lib/mfs");
        assert_eq!(c.get_u32("HDD_TEST_FREQ", 1).unwrap(), 10);
        assert_eq!(c.get_opt("EMPTY"), Some(""));
        assert_eq!(c.get_opt("COMMENTED"), None);
        assert_eq!(c.line_of("HDD_TEST_FREQ"), Some(6));
        assert_eq!(c.path(), Path::new("mfschunkserver.cfg"));
        assert_eq!(c.entries().len(), 5);
        assert_eq!(c.entries()[0], ("WORKING_USER", "mfs", 3));
    }

    #[test]
    fn keys_are_case_sensitive() {
        let c = cfg("DATA_PATH = /a\n");
        assert_eq!(c.get_opt("data_path"), None);
        assert!(c.contains("DATA_PATH"));
    }

    #[test]
    fn defaults_when_absent() {
        let c = CfgFile::empty(Path::new("/etc/mfs/x.cfg"));
        assert_eq!(c.get_str("A", "dflt"), "dflt");
        assert_eq!(c.get_opt("A"), None);
        assert_eq!(c.get_u32("A", 7).unwrap(), 7);
        assert_eq!(c.get_u64("A", 1 << 40).unwrap(), 1 << 40);
        assert_eq!(c.get_f64("A", 0.5).unwrap(), 0.5);
        assert!(c.get_bool("A", true).unwrap());
        assert_eq!(c.get_size("A", 42).unwrap(), 42);
    }

    #[test]
    fn missing_equals_is_an_error_with_line() {
        let err = CfgFile::parse(Path::new("mfsmaster.cfg"), "A = 1\n\nJUST_A_WORD\n").unwrap_err();
        match &err {
            CfgError::Syntax { line, .. } => assert_eq!(*line, 3),
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.starts_with("mfsmaster.cfg:3: "), "{msg}");
        assert!(msg.contains("JUST_A_WORD"), "{msg}");
        assert!(CfgFile::parse(Path::new("f"), "= 3\n").is_err());
        assert!(CfgFile::parse(Path::new("f"), "TWO WORDS = 3\n").is_err());
        // '=' only inside a comment is still a missing '='.
        assert!(CfgFile::parse(Path::new("f"), "KEY # = 3\n").is_err());
    }

    #[test]
    fn duplicate_key_overrides() {
        let c = cfg("A = 1\nB = x\nA = 2\n");
        assert_eq!(c.get_u32("A", 0).unwrap(), 2);
        assert_eq!(c.line_of("A"), Some(3));
    }

    #[test]
    fn value_may_contain_equals() {
        let c = cfg("LABELS = a=b\n");
        assert_eq!(c.get_opt("LABELS"), Some("a=b"));
    }

    #[test]
    fn bad_numbers_name_file_line_and_key() {
        let c = cfg("A = 1\nB = 2\n\nHDD_TEST_FREQ = abc\nBIG = 4294967296\nNEG = -1\nF = x\nBOOL = maybe\n");
        let err = c.get_u32("HDD_TEST_FREQ", 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mfschunkserver.cfg:4: HDD_TEST_FREQ = 'abc': expected an unsigned integer (at most 4294967295)"
        );
        let err = c.get_u64("HDD_TEST_FREQ", 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mfschunkserver.cfg:4: HDD_TEST_FREQ = 'abc': expected an unsigned integer"
        );
        assert!(c.get_u32("BIG", 0).is_err());
        assert_eq!(c.get_u64("BIG", 0).unwrap(), 4294967296);
        assert!(c.get_u32("NEG", 0).is_err());
        assert!(c.get_u64("NEG", 0).is_err());
        let err = c.get_f64("F", 0.0).unwrap_err().to_string();
        assert!(
            err.starts_with("mfschunkserver.cfg:7: F = 'x': expected a number"),
            "{err}"
        );
        let err = c.get_bool("BOOL", false).unwrap_err().to_string();
        assert!(
            err.starts_with("mfschunkserver.cfg:8: BOOL = 'maybe': expected a boolean"),
            "{err}"
        );
        let err = c.get_size("HDD_TEST_FREQ", 0).unwrap_err().to_string();
        assert!(
            err.starts_with("mfschunkserver.cfg:4: HDD_TEST_FREQ = 'abc': expected a size"),
            "{err}"
        );
        match c.get_u32("NEG", 0).unwrap_err() {
            CfgError::BadValue {
                line, key, value, ..
            } => {
                assert_eq!((line, key.as_str(), value.as_str()), (6, "NEG", "-1"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn booleans() {
        let c = cfg("A=1\nB=0\nC=Yes\nD=no\nE=TRUE\nF=false\nG=On\nH=OFF\n");
        let got: Vec<bool> = ["A", "B", "C", "D", "E", "F", "G", "H"]
            .iter()
            .map(|k| c.get_bool(k, false).unwrap())
            .collect();
        assert_eq!(got, [true, false, true, false, true, false, true, false]);
    }

    #[test]
    fn floats() {
        let c = cfg("A = 0.25\nB = 3\nC = inf\n");
        assert_eq!(c.get_f64("A", 0.0).unwrap(), 0.25);
        assert_eq!(c.get_f64("B", 0.0).unwrap(), 3.0);
        assert!(c.get_f64("C", 0.0).is_err());
    }

    #[test]
    fn sizes() {
        let table: &[(&str, u64)] = &[
            ("100", 100),
            ("100B", 100),
            ("0", 0),
            ("256MiB", 268_435_456),
            ("256M", 268_435_456),
            ("256m", 268_435_456),
            ("4GiB", 4 << 30),
            ("4G", 4 << 30),
            ("1GB", 1_000_000_000),
            ("1kB", 1000),
            ("1KB", 1000),
            ("1k", 1024),
            ("1K", 1024),
            ("1KiB", 1024),
            ("2TiB", 2 << 40),
            ("1TB", 1_000_000_000_000),
            ("1P", 1 << 50),
            ("1PB", 1_000_000_000_000_000),
            ("1E", 1 << 60),
            ("15EiB", 15 << 60),
            ("1.5G", 1_610_612_736),
            ("0.5k", 512),
            ("1.5", 1),
            (" 10 MiB ", 10 << 20),
            ("18446744073709551615", u64::MAX),
        ];
        for &(text, want) in table {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        let c = cfg("HDD_LEAVE_SPACE_DEFAULT = 256MiB\n");
        assert_eq!(
            c.get_size("HDD_LEAVE_SPACE_DEFAULT", 0).unwrap(),
            268_435_456
        );
    }

    #[test]
    fn bad_sizes() {
        for text in [
            "",
            "-1",
            "-1G",
            "abc",
            "G",
            "1X",
            "1GiBB",
            "1 G B",
            "1..5",
            "1.",
            ".5G",
            "1.2.3",
            "16EiB",
            "18446744073709551616",
            "99999999999999999999999999999999999999999",
            "1ib",
            "1Gb",
        ] {
            assert!(parse_size(text).is_err(), "{text:?} should be rejected");
        }
        assert_eq!(
            parse_size("-5").unwrap_err(),
            "negative sizes are not allowed"
        );
        assert_eq!(parse_size("16E").unwrap_err(), "value too large");
    }

    #[test]
    fn unknown_keys_listing() {
        let c = cfg("DATA_PATH = /x\nFOO = 1\nHDD_TEST_FREQ = 3\nBAR = 2\nFOO = 4\n");
        let unknown = c.unknown_keys(&["DATA_PATH", "HDD_TEST_FREQ"]);
        assert_eq!(
            unknown,
            vec![("BAR".to_string(), 4), ("FOO".to_string(), 5)]
        );
        assert!(c
            .unknown_keys(&["DATA_PATH", "HDD_TEST_FREQ", "FOO", "BAR"])
            .is_empty());
        c.warn_unknown(&["DATA_PATH"]); // must not panic without a subscriber
    }

    #[test]
    fn load_from_disk_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfschunkserver.cfg");
        std::fs::write(&path, "HDD_TEST_FREQ = 5\n").unwrap();
        let c = CfgFile::load(&path).unwrap();
        assert_eq!(c.get_u32("HDD_TEST_FREQ", 10).unwrap(), 5);
        assert_eq!(c.path(), path.as_path());

        let missing = dir.path().join("nope.cfg");
        let err = CfgFile::load(&missing).unwrap_err();
        assert!(err.is_not_found());
        assert!(matches!(&err, CfgError::Io { path, .. } if path == &missing));
        assert!(err.to_string().contains("nope.cfg"), "{err}");
    }
}
