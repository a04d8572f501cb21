//! The master's changelog: one text line per metadata change.
//!
//! ```text
//! <version>: <unix time>|<OP>(<arg>,<arg>,...)[:<result>]
//! 10: 1795250194|CREATE(1,g1,2,511,18,0,0,0):2
//! ```
//! `version` is the metadata version the change produced (one per line, no gaps).
//! Names and other byte strings are written with [`escape`]: bytes below 32, from 127
//! up, and `,` `%` `(` `)` become `%XX` (upper-case hex); everything else is literal.
//! Numbers are decimal; a few fields carry a prefix (`#` for a checksum, `0x` for hex,
//! a leading `0` for an octal umask), which [`Line::u64_arg`] and friends accept.
//!
//! This module only splits and joins lines; what each operation means lives with the
//! master's model, which both writes the lines and replays them.

use thiserror::Error;

/// Why a changelog line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    /// The `<version>: ` prefix is missing or not a number.
    #[error("no '<version>: ' prefix")]
    NoVersion,
    /// The `<time>|` part is missing or not a number.
    #[error("no '<time>|' field")]
    NoTime,
    /// The operation is not `NAME(args)` with an optional `:result`.
    #[error("operation is not NAME(args)[:result]")]
    BadShape,
    /// Argument `index` is not what the operation needs.
    #[error("argument {index} ({text:?}) is not {want}")]
    BadArg {
        /// Zero-based argument position.
        index: usize,
        /// The raw text.
        text: String,
        /// What was expected.
        want: &'static str,
    },
    /// The operation has `got` arguments, not `want`.
    #[error("{got} arguments, expected {want}")]
    ArgCount {
        /// Present.
        got: usize,
        /// Required.
        want: usize,
    },
    /// The result after `:` is missing or malformed.
    #[error("result {0:?} is missing or malformed")]
    BadResult(String),
    /// A `%` escape is not followed by two hex digits.
    #[error("bad %-escape in {0:?}")]
    BadEscape(String),
}

/// Escapes a byte string for a changelog argument.
pub fn escape(name: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(name.len());
    for &c in name {
        if !(32..127).contains(&c) || matches!(c, b',' | b'%' | b'(' | b')') {
            s.push('%');
            s.push(HEX[(c >> 4) as usize] as char);
            s.push(HEX[(c & 15) as usize] as char);
        } else {
            s.push(c as char);
        }
    }
    s
}

/// Reverses [`escape`] (hex digits of either case are accepted).
pub fn unescape(s: &str) -> Result<Vec<u8>, LineError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                b.get(i + 1).and_then(|&c| hex(c)),
                b.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(LineError::BadEscape(s.to_string())),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// One parsed changelog line. Arguments are kept as raw (still escaped) text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// Metadata version this change produced.
    pub version: u64,
    /// Unix time of the change.
    pub ts: u32,
    /// Operation name (`CREATE`, `UNLINK`, ...).
    pub op: &'a str,
    /// Raw arguments.
    pub args: Vec<&'a str>,
    /// Raw result after `:`, if any.
    pub result: Option<&'a str>,
}

/// Splits one line (without its trailing newline).
pub fn parse_line(line: &str) -> Result<Line<'_>, LineError> {
    let (v, rest) = line.split_once(": ").ok_or(LineError::NoVersion)?;
    let version = v.parse::<u64>().map_err(|_| LineError::NoVersion)?;
    let (t, rest) = rest.split_once('|').ok_or(LineError::NoTime)?;
    let ts = t.parse::<u32>().map_err(|_| LineError::NoTime)?;
    let open = rest.find('(').ok_or(LineError::BadShape)?;
    let close = rest.rfind(')').ok_or(LineError::BadShape)?;
    if close < open {
        return Err(LineError::BadShape);
    }
    let op = &rest[..open];
    if op.is_empty()
        || !op
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Err(LineError::BadShape);
    }
    let inner = &rest[open + 1..close];
    let args = if inner.is_empty() {
        Vec::new()
    } else {
        inner.split(',').collect()
    };
    let tail = &rest[close + 1..];
    let result = match tail.strip_prefix(':') {
        Some(r) => Some(r),
        None if tail.is_empty() => None,
        None => return Err(LineError::BadShape),
    };
    Ok(Line {
        version,
        ts,
        op,
        args,
        result,
    })
}

fn parse_num(t: &str) -> Option<u64> {
    let t = t.strip_prefix('#').unwrap_or(t);
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        t.parse::<u64>().ok()
    }
}

impl Line<'_> {
    /// Requires exactly `n` arguments.
    pub fn want_args(&self, n: usize) -> Result<(), LineError> {
        if self.args.len() == n {
            Ok(())
        } else {
            Err(LineError::ArgCount {
                got: self.args.len(),
                want: n,
            })
        }
    }
    fn raw(&self, i: usize) -> Result<&str, LineError> {
        self.args.get(i).copied().ok_or(LineError::ArgCount {
            got: self.args.len(),
            want: i + 1,
        })
    }
    /// Argument `i` as a number (decimal, `#decimal` or `0xhex`).
    pub fn u64_arg(&self, i: usize) -> Result<u64, LineError> {
        let t = self.raw(i)?;
        parse_num(t).ok_or_else(|| LineError::BadArg {
            index: i,
            text: t.to_string(),
            want: "a number",
        })
    }
    /// Argument `i` as a u32.
    pub fn u32_arg(&self, i: usize) -> Result<u32, LineError> {
        let v = self.u64_arg(i)?;
        u32::try_from(v).map_err(|_| LineError::BadArg {
            index: i,
            text: v.to_string(),
            want: "a 32-bit number",
        })
    }
    /// Argument `i` as an octal number (the `0022` umask form).
    pub fn octal_arg(&self, i: usize) -> Result<u32, LineError> {
        let t = self.raw(i)?;
        u32::from_str_radix(t, 8).map_err(|_| LineError::BadArg {
            index: i,
            text: t.to_string(),
            want: "an octal number",
        })
    }
    /// Argument `i` unescaped.
    pub fn bytes_arg(&self, i: usize) -> Result<Vec<u8>, LineError> {
        unescape(self.raw(i)?)
    }
    /// Argument `i` as a single character (`R`, `W`, `U`).
    pub fn char_arg(&self, i: usize) -> Result<char, LineError> {
        let t = self.raw(i)?;
        let mut c = t.chars();
        match (c.next(), c.next()) {
            (Some(ch), None) => Ok(ch),
            _ => Err(LineError::BadArg {
                index: i,
                text: t.to_string(),
                want: "one character",
            }),
        }
    }
    /// The result as one number.
    pub fn result_num(&self) -> Result<u64, LineError> {
        let r = self.result.unwrap_or("");
        parse_num(r).ok_or_else(|| LineError::BadResult(r.to_string()))
    }
    /// The result as comma-separated numbers.
    pub fn result_nums(&self) -> Result<Vec<u64>, LineError> {
        let r = self.result.unwrap_or("");
        r.split(',')
            .map(|x| parse_num(x).ok_or_else(|| LineError::BadResult(r.to_string())))
            .collect()
    }
}

/// Formats a full line: `<version>: <ts>|<body>` plus a newline.
pub fn format_line(version: u64, ts: u32, body: &str) -> String {
    format!("{version}: {ts}|{body}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Lines as a real 3.0.117 master wrote them (../shared/docs/moosefs-baseline.md).
    const REAL: &[&str] = &[
        "1: 1795250192|SETMETAID(7710540868577219752)",
        "3: 1795250192|CSDBOP(3,0,9622,1)",
        "8: 1795250193|SESADD(#18335559787067774514,1,8,0000,0,0,999,999,1,9,0,4294967295,0x00000000,2130706433,/tmp/mfsbase/mnt):1",
        "9: 1795250192|SETTRASHTIME(1,0,0,0):1,0,0",
        "10: 1795250194|CREATE(1,g1,2,511,18,0,0,0):2",
        "16: 1795250195|WRITE(4,0,1,0):1",
        "52: 1795250201|UNLINK(2,seq.bin):4",
        "135710: 1795250724|ATTR(40032,420,0,0,1795250724,1795250724,0,0)",
    ];

    #[test]
    fn real_lines_parse_and_format_back() {
        for l in REAL {
            let p = parse_line(l).unwrap();
            let body = &l[l.find('|').unwrap() + 1..];
            assert_eq!(format_line(p.version, p.ts, body).trim_end(), *l);
        }
        let c = parse_line(REAL[4]).unwrap();
        assert_eq!((c.version, c.ts, c.op), (10, 1795250194, "CREATE"));
        assert_eq!(c.bytes_arg(1).unwrap(), b"g1");
        assert_eq!(c.u32_arg(3).unwrap(), 511);
        assert_eq!(c.result_num().unwrap(), 2);
        let s = parse_line(REAL[2]).unwrap();
        assert_eq!(s.u64_arg(0).unwrap(), 18335559787067774514);
        assert_eq!(s.octal_arg(3).unwrap(), 0);
        assert_eq!(s.u64_arg(12).unwrap(), 0);
        let t = parse_line(REAL[3]).unwrap();
        assert_eq!(t.result_nums().unwrap(), vec![1, 0, 0]);
    }

    #[test]
    fn escaping_matches_moosefs_rules() {
        assert_eq!(
            escape(b"a,b(c)%d\n\x7f\xff ok"),
            "a%2Cb%28c%29%25d%0A%7F%FF ok"
        );
        assert_eq!(unescape("a%2cb%28").unwrap(), b"a,b(");
        assert!(unescape("bad%2").is_err());
        assert!(unescape("bad%zz").is_err());
    }

    #[test]
    fn malformed_lines_are_rejected() {
        for l in [
            "",
            "x: 1|A()",
            "1 1|A()",
            "1: x|A()",
            "1: 1|A(",
            "1: 1|(1)",
            "1: 1|a(1)",
            "1: 1|A(1)junk",
            "1: 1|A)1(",
        ] {
            assert!(parse_line(l).is_err(), "{l:?}");
        }
        let l = parse_line("5: 7|CREATE(1,x)").unwrap();
        assert!(l.want_args(8).is_err());
        assert!(l.u32_arg(1).is_err());
        assert!(l.u32_arg(9).is_err());
        assert!(l.result_num().is_err());
    }

    proptest! {
        #[test]
        fn escape_round_trips(name in proptest::collection::vec(any::<u8>(), 0..300)) {
            let e = escape(&name);
            prop_assert!(!e.contains(',') && !e.contains('(') && !e.contains(')'));
            prop_assert_eq!(unescape(&e).unwrap(), name);
        }

        #[test]
        fn lines_round_trip(v in 1u64.., ts: u32, a in proptest::collection::vec(any::<u8>(), 1..40), n: u32) {
            let body = format!("LINK({n},{},{})", n / 2, escape(&a));
            let text = format_line(v, ts, &body);
            let l = parse_line(text.trim_end()).unwrap();
            prop_assert_eq!(l.version, v);
            prop_assert_eq!(l.ts, ts);
            prop_assert_eq!(l.op, "LINK");
            prop_assert_eq!(l.bytes_arg(2).unwrap(), a);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = parse_line(&s);
        }
    }
}
