//! `mfsexports.cfg`: who may mount what, and with which session flags.
//!
//! Pure code: [`parse`] turns the file's text into [`Exports`] (a user/group resolver is
//! passed in), and [`Exports::choose`] picks the export for a register request exactly as
//! MooseFS 3.0.117 does, including its refusal statuses. Lines MooseFS drops (a bad
//! address, a bad option value) are dropped here too, each with a [`Warning`] that names
//! the file and line; an unknown option is ignored with a warning.

use antler_common::daemon;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Session flag: read-only.
pub const SESFLAG_READONLY: u8 = 0x01;
/// Session flag: reconnects may come from another address.
pub const SESFLAG_DYNAMICIP: u8 = 0x02;
/// Session flag: permission checks ignore the group list.
pub const SESFLAG_IGNOREGID: u8 = 0x04;
/// Session flag: administrative rights (quotas, special attributes).
pub const SESFLAG_ADMIN: u8 = 0x08;
/// Session flag: every non-root user is mapped (`mapall`).
pub const SESFLAG_MAPALL: u8 = 0x10;

/// Names of the `disable=` operations, bit n for the n-th name.
pub const DISABLE_OPS: [&str; 25] = [
    "chown",
    "chmod",
    "symlink",
    "mkfifo",
    "mkdev",
    "mksock",
    "mkdir",
    "unlink",
    "rmdir",
    "rename",
    "move",
    "link",
    "create",
    "readdir",
    "read",
    "write",
    "truncate",
    "setlength",
    "appendchunks",
    "snapshot",
    "settrash",
    "setsclass",
    "seteattr",
    "setxattr",
    "setfacl",
];

/// One export line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Line in the file.
    pub line: usize,
    /// First client address (inclusive).
    pub from: u32,
    /// Last client address (inclusive).
    pub to: u32,
    /// The meta file system (`.`) rather than a path.
    pub meta: bool,
    /// Path without leading or trailing `/` (empty = root).
    pub path: String,
    /// Any subdirectory of `path` may be mounted.
    pub alldirs: bool,
    /// `SESFLAG_*` bits.
    pub sesflags: u8,
    /// What uid 0 becomes.
    pub rootuid: u32,
    /// What root's first gid becomes.
    pub rootgid: u32,
    /// With `SESFLAG_MAPALL`: what every other uid becomes.
    pub mapalluid: u32,
    /// With `SESFLAG_MAPALL`: what every other first gid becomes.
    pub mapallgid: u32,
    /// md5 of the password, when one is needed.
    pub password_md5: Option<[u8; 16]>,
    /// Lowest client version accepted (`X<<16 | Y<<8 | Z`, as MooseFS compares it).
    pub minversion: u32,
    /// Lowest goal a client may set.
    pub mingoal: u8,
    /// Highest goal a client may set.
    pub maxgoal: u8,
    /// Lowest trash time a client may set (seconds).
    pub mintrashtime: u32,
    /// Highest trash time a client may set (seconds).
    pub maxtrashtime: u32,
    /// Umask OR-ed into every create.
    pub umask: u16,
    /// Disabled operations (bit n = `DISABLE_OPS[n]`).
    pub disables: u32,
}

impl Export {
    fn defaults() -> Export {
        Export {
            line: 0,
            from: 0,
            to: u32::MAX,
            meta: false,
            path: String::new(),
            alldirs: false,
            sesflags: SESFLAG_READONLY,
            rootuid: 999,
            rootgid: 999,
            mapalluid: 999,
            mapallgid: 999,
            password_md5: None,
            minversion: 0,
            mingoal: 1,
            maxgoal: 9,
            mintrashtime: 0,
            maxtrashtime: u32::MAX,
            umask: 0,
            disables: 0,
        }
    }

    /// Read-only export.
    pub fn readonly(&self) -> bool {
        self.sesflags & SESFLAG_READONLY != 0
    }

    fn path_matches(&self, want: &str) -> bool {
        if self.meta {
            return true;
        }
        if self.path.is_empty() {
            return want.is_empty() || self.alldirs;
        }
        want == self.path
            || self.alldirs
                && want.len() > self.path.len()
                && want.starts_with(&self.path)
                && want.as_bytes()[self.path.len()] == b'/'
    }

    /// True when `e` (a later match) replaces `self` (the match so far): MooseFS's chain
    /// of checks, the first that holds decides.
    fn loses_to(&self, e: &Export) -> bool {
        if !e.readonly() && self.readonly() {
            return true;
        }
        if e.rootuid == 0 && self.rootuid != 0 {
            return true;
        }
        if e.sesflags & SESFLAG_ADMIN != 0 && self.sesflags & SESFLAG_ADMIN == 0 {
            return true;
        }
        if e.password_md5.is_some() && self.password_md5.is_none() {
            return true;
        }
        e.path.len() > self.path.len()
    }
}

/// A line that was dropped or an option that was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// File.
    pub path: PathBuf,
    /// Line.
    pub line: usize,
    /// What was wrong and what was done.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// Why the exports cannot be used at all.
#[derive(Debug, Error)]
pub enum ExportsError {
    /// The file cannot be read.
    #[error("mfsexports configuration file ({path}) cannot be read: {source} - please create one (you can copy {path}.sample to get a base configuration)")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// No usable line.
    #[error("{0}: no exports defined")]
    Empty(PathBuf),
}

/// Looks up users and groups by name.
pub trait Ids {
    /// A user's uid and primary gid.
    fn user(&self, name: &str) -> Option<(u32, u32)>;
    /// A user's primary gid, by uid.
    fn user_gid(&self, uid: u32) -> Option<u32>;
    /// A group's gid.
    fn group(&self, name: &str) -> Option<u32>;
}

/// The system's user database (`getpwnam` and friends, via `common::daemon`).
pub struct SystemIds;

impl Ids for SystemIds {
    fn user(&self, name: &str) -> Option<(u32, u32)> {
        let c = std::ffi::CString::new(name).ok()?;
        daemon::user_by_name(&c).ok().flatten()
    }
    fn user_gid(&self, uid: u32) -> Option<u32> {
        daemon::gid_of_uid(uid).ok().flatten()
    }
    fn group(&self, name: &str) -> Option<u32> {
        let c = std::ffi::CString::new(name).ok()?;
        daemon::group_by_name(&c).ok().flatten()
    }
}

/// The parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exports {
    /// File it came from.
    pub path: PathBuf,
    /// Usable lines, in file order.
    pub entries: Vec<Export>,
}

/// What a client asks for at register.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Client address.
    pub ip: u32,
    /// Client version (`major<<16 | minor<<8 | patch`, as sent).
    pub version: u32,
    /// A meta mount (`mfsmount -m`).
    pub meta: bool,
    /// Requested path (leading and trailing `/` are ignored).
    pub path: &'a str,
    /// The challenge the client was given (`REGISTER_GETRANDOM`), if any.
    pub random: Option<[u8; 32]>,
    /// The client's answer, if it sent one.
    pub passcode: Option<[u8; 16]>,
}

/// Why a register request is refused (each has its MooseFS status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Refusal {
    /// No line matches (address, version, path or kind).
    #[error("no export matches (EACCES)")]
    Eacces,
    /// Only password lines match, and no password was given.
    #[error("a password is needed (NOPASSWORD)")]
    NoPassword,
    /// Only password lines match, and the password is wrong.
    #[error("wrong password (BADPASSWORD)")]
    BadPassword,
}

impl Refusal {
    /// The MooseFS status byte sent back.
    pub fn status(self) -> u8 {
        match self {
            Refusal::Eacces => 4,
            Refusal::NoPassword => 36,
            Refusal::BadPassword => 37,
        }
    }
}

impl Exports {
    /// Reads and parses `path`; warnings are returned for the caller to log.
    pub fn load(path: &Path, ids: &dyn Ids) -> Result<(Exports, Vec<Warning>), ExportsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExportsError::Io {
            path: path.into(),
            source,
        })?;
        parse(path, &text, ids)
    }

    /// The export a register request gets, as MooseFS chooses it.
    pub fn choose(&self, req: &Request<'_>) -> Result<&Export, Refusal> {
        let want = req.path.trim_matches('/');
        let mut best: Option<&Export> = None;
        let mut password_failed = false;
        for e in &self.entries {
            if req.ip < e.from
                || req.ip > e.to
                || req.version < e.minversion
                || e.meta != req.meta
                || !e.path_matches(want)
            {
                continue;
            }
            if let Some(md5) = e.password_md5 {
                let ok = match (req.random, req.passcode) {
                    (Some(rnd), Some(code)) => {
                        antler_protocol::auth::challenge_response(&rnd, &md5) == code
                    }
                    _ => false,
                };
                if !ok {
                    password_failed = true;
                    continue;
                }
            }
            match best {
                Some(f) if !f.loses_to(e) => {}
                _ => best = Some(e),
            }
        }
        match best {
            Some(e) => Ok(e),
            None if password_failed && req.passcode.is_none() => Err(Refusal::NoPassword),
            None if password_failed => Err(Refusal::BadPassword),
            None => Err(Refusal::Eacces),
        }
    }
}

/// Parses the text of `path`.
pub fn parse(
    path: &Path,
    text: &str,
    ids: &dyn Ids,
) -> Result<(Exports, Vec<Warning>), ExportsError> {
    let mut warnings = Vec::new();
    let mut entries = Vec::new();
    let mut defaults = Export::defaults();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut warn = |message: String| {
            warnings.push(Warning {
                path: path.into(),
                line,
                message,
            })
        };
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut it = l.splitn(2, [' ', '\t']);
        let addr = it.next().unwrap_or("");
        let rest = it.next().unwrap_or("").trim_start();
        if addr.eq_ignore_ascii_case("DEFAULTS") {
            let mut d = Export::defaults();
            match apply_options(&mut d, rest, ids, &mut warn) {
                Ok(()) => defaults = d,
                Err(m) => warn(format!("{m}: DEFAULTS line ignored")),
            }
            continue;
        }
        if rest.is_empty() {
            warn("incomplete definition (address and path needed): line ignored".into());
            continue;
        }
        let Some((from, to)) = parse_address(addr) else {
            warn(format!(
                "incorrect ip/network definition '{addr}': line ignored"
            ));
            continue;
        };
        let mut parts = rest.splitn(2, [' ', '\t']);
        let p = parts.next().unwrap_or("");
        let opts = parts.next().unwrap_or("").trim();
        let mut e = defaults.clone();
        e.line = line;
        e.from = from;
        e.to = to;
        if p == "." {
            e.meta = true;
            e.rootuid = 0;
            e.rootgid = 0;
        } else {
            e.path = p.trim_matches('/').to_string();
        }
        match apply_options(&mut e, opts, ids, &mut warn) {
            Ok(()) => entries.push(e),
            Err(m) => warn(format!("{m}: line ignored")),
        }
    }
    if entries.is_empty() {
        return Err(ExportsError::Empty(path.into()));
    }
    Ok((
        Exports {
            path: path.into(),
            entries,
        },
        warnings,
    ))
}

fn parse_ip(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut v = 0u32;
    for p in parts {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = p.parse().ok()?;
        if n > 255 {
            return None;
        }
        v = v << 8 | n;
    }
    Some(v)
}

/// `*`, `a.b.c.d`, `a.b.c.d/bits`, `a.b.c.d/m.m.m.m` or `a.b.c.d-e.f.g.h` as an
/// inclusive range.
pub fn parse_address(s: &str) -> Option<(u32, u32)> {
    if s == "*" {
        return Some((0, u32::MAX));
    }
    if let Some((ip, mask)) = s.split_once('/') {
        let ip = parse_ip(ip)?;
        let mask = if mask.bytes().all(|b| b.is_ascii_digit()) && !mask.is_empty() {
            let bits: u32 = mask.parse().ok()?;
            if bits > 32 {
                return None;
            }
            if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            }
        } else {
            parse_ip(mask)?
        };
        let net = ip & mask;
        return Some((net, net | !mask));
    }
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (parse_ip(a)?, parse_ip(b)?);
        return (a <= b).then_some((a, b));
    }
    let ip = parse_ip(s)?;
    Some((ip, ip))
}

fn parse_ids(v: &str, ids: &dyn Ids) -> Result<(u32, u32), String> {
    let (u, g) = match v.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (v, None),
    };
    let (uid, pgid) = if let Ok(n) = u.parse::<u32>() {
        (n, ids.user_gid(n))
    } else {
        match ids.user(u) {
            Some((uid, gid)) => (uid, Some(gid)),
            None => return Err(format!("unknown user '{u}'")),
        }
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => ids.group(g).ok_or(format!("unknown group '{g}'"))?,
        },
        None => pgid.ok_or(format!(
            "user {uid} has no passwd entry: give the group as {uid}:GID"
        ))?,
    };
    Ok((uid, gid))
}

/// `N` seconds or `[#W][#D][#H][#M][#S]`.
fn parse_time(v: &str) -> Option<u32> {
    if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
        return v.parse().ok();
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut last_unit = 0;
    for c in v.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let (rank, mult) = match c.to_ascii_lowercase() {
            'w' => (1, 604_800),
            'd' => (2, 86_400),
            'h' => (3, 3_600),
            'm' => (4, 60),
            's' => (5, 1),
            _ => return None,
        };
        if num.is_empty() || rank <= last_unit {
            return None;
        }
        last_unit = rank;
        total = total.checked_add(num.parse::<u64>().ok()?.checked_mul(mult)?)?;
        num.clear();
    }
    if !num.is_empty() || total > u32::MAX as u64 {
        return None;
    }
    Some(total as u32)
}

fn parse_version(v: &str) -> Option<u32> {
    let mut it = v.split('.');
    let x: u32 = it.next()?.parse().ok()?;
    let y: u32 = it.next().map(|s| s.parse().ok()).unwrap_or(Some(0))?;
    let z: u32 = it.next().map(|s| s.parse().ok()).unwrap_or(Some(0))?;
    if it.next().is_some() || x > 0xffff || y > 0xff || z > 0xff {
        return None;
    }
    Some(x << 16 | y << 8 | z)
}

fn hex16(v: &str) -> Option<[u8; 16]> {
    if v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&v[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn md5(b: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(b).into()
}

/// Applies comma-separated options left to right. An error drops the line; unknown
/// options only warn.
fn apply_options<'a>(
    e: &mut Export,
    opts: &'a str,
    ids: &dyn Ids,
    warn: &mut dyn FnMut(String),
) -> Result<(), String> {
    let mut maproot_given = false;
    let mut mapall: Option<(u32, u32)> = None;
    for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (k, v) = match o.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (o, None),
        };
        let need = |v: Option<&'a str>| v.ok_or_else(|| format!("option '{k}' needs a value"));
        match k {
            "ro" | "readonly" => e.sesflags |= SESFLAG_READONLY,
            "rw" | "readwrite" => e.sesflags &= !SESFLAG_READONLY,
            "alldirs" => {
                if e.meta {
                    warn("'alldirs' is meaningless on a meta line (ignored)".into());
                } else {
                    e.alldirs = true;
                }
            }
            "dynamicip" => e.sesflags |= SESFLAG_DYNAMICIP,
            "ignoregid" if !e.meta => e.sesflags |= SESFLAG_IGNOREGID,
            "admin" | "canchangequota" if !e.meta => e.sesflags |= SESFLAG_ADMIN,
            "maproot" => {
                let (u, g) = parse_ids(need(v)?, ids)?;
                e.rootuid = u;
                e.rootgid = g;
                maproot_given = true;
            }
            "mapall" => {
                let ug = parse_ids(need(v)?, ids)?;
                e.mapalluid = ug.0;
                e.mapallgid = ug.1;
                e.sesflags |= SESFLAG_MAPALL;
                mapall = Some(ug);
            }
            "password" => e.password_md5 = Some(md5(need(v)?.as_bytes())),
            "md5pass" => {
                let h = need(v)?;
                e.password_md5 =
                    Some(hex16(h).ok_or(format!("md5pass '{h}' is not 32 hex digits"))?);
            }
            "minversion" => {
                let x = need(v)?;
                e.minversion = parse_version(x).ok_or(format!("bad minversion '{x}'"))?;
            }
            "mingoal" | "maxgoal" => {
                let x = need(v)?;
                let g = match x.parse::<u8>() {
                    Ok(g @ 1..=9) if x.len() == 1 => g,
                    _ => return Err(format!("bad {k} '{x}' (1..9)")),
                };
                if k == "mingoal" {
                    e.mingoal = g;
                } else {
                    e.maxgoal = g;
                }
            }
            "mintrashtime" | "maxtrashtime" => {
                let x = need(v)?;
                let t = parse_time(x).ok_or(format!("bad {k} '{x}'"))?;
                if k == "mintrashtime" {
                    e.mintrashtime = t;
                } else {
                    e.maxtrashtime = t;
                }
            }
            "umask" => {
                let x = need(v)?;
                let ok = x.len() == 4
                    && x.starts_with('0')
                    && x[1..].bytes().all(|b| (b'0'..=b'7').contains(&b));
                if !ok {
                    return Err(format!("bad umask '{x}' (0 and three octal digits)"));
                }
                e.umask = u16::from_str_radix(&x[1..], 8).expect("octal");
            }
            "disable" => {
                for op in need(v)?.split(':') {
                    match DISABLE_OPS.iter().position(|n| *n == op) {
                        Some(b) if !e.meta => e.disables |= 1 << b,
                        Some(_) => {}
                        None => warn(format!("unknown operation '{op}' in disable (ignored)")),
                    }
                }
            }
            "ignoregid" | "admin" | "canchangequota" => {
                warn(format!("'{k}' is meaningless on a meta line (ignored)"))
            }
            _ => warn(format!("unknown option '{o}' (ignored)")),
        }
    }
    if let (Some((u, g)), false) = (mapall, maproot_given) {
        e.rootuid = u;
        e.rootgid = g;
    }
    if e.mingoal > e.maxgoal {
        return Err(format!(
            "mingoal {} is above maxgoal {}",
            e.mingoal, e.maxgoal
        ));
    }
    if e.mintrashtime > e.maxtrashtime {
        return Err(format!(
            "mintrashtime {} is above maxtrashtime {}",
            e.mintrashtime, e.maxtrashtime
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeIds;
    impl Ids for FakeIds {
        fn user(&self, name: &str) -> Option<(u32, u32)> {
            (name == "mfs").then_some((120, 130))
        }
        fn user_gid(&self, uid: u32) -> Option<u32> {
            match uid {
                0 => Some(0),
                120 => Some(130),
                _ => None,
            }
        }
        fn group(&self, name: &str) -> Option<u32> {
            (name == "staff").then_some(50)
        }
    }

    fn ip(s: &str) -> u32 {
        parse_ip(s).unwrap()
    }

    fn req(addr: &str, path: &'static str) -> Request<'static> {
        Request {
            ip: ip(addr),
            version: 0x0003_00EA,
            meta: false,
            path,
            random: None,
            passcode: None,
        }
    }

    fn load(text: &str) -> (Exports, Vec<Warning>) {
        parse(Path::new("/etc/mfs/mfsexports.cfg"), text, &FakeIds).unwrap()
    }

    #[test]
    fn the_debian_default_file() {
        let (ex, w) = load("# comment\n\n*\t\t\t/\trw,alldirs,admin,maproot=0:0\n*\t\t\t.\trw\n");
        assert!(w.is_empty(), "{w:?}");
        let root = ex.choose(&req("192.0.2.7", "/")).unwrap();
        assert_eq!(root.line, 3);
        assert!(!root.readonly() && root.alldirs);
        assert_eq!(root.sesflags, SESFLAG_ADMIN);
        assert_eq!((root.rootuid, root.rootgid), (0, 0));
        assert_eq!((root.mingoal, root.maxgoal), (1, 9));
        assert_eq!(ex.choose(&req("192.0.2.7", "/a/b/")).unwrap().line, 3);
        let meta = ex
            .choose(&Request {
                meta: true,
                ..req("192.0.2.7", "")
            })
            .unwrap();
        assert!(meta.meta && !meta.readonly());
        assert_eq!((meta.rootuid, meta.rootgid), (0, 0));
    }

    #[test]
    fn address_forms() {
        assert_eq!(parse_address("*"), Some((0, u32::MAX)));
        assert_eq!(
            parse_address("198.51.100.9"),
            Some((ip("198.51.100.9"), ip("198.51.100.9")))
        );
        assert_eq!(
            parse_address("198.51.100.9/24"),
            Some((ip("198.51.100.0"), ip("198.51.100.255")))
        );
        assert_eq!(
            parse_address("198.51.100.9/255.255.255.128"),
            Some((ip("198.51.100.0"), ip("198.51.100.127")))
        );
        assert_eq!(
            parse_address("203.0.113.10-203.0.113.20"),
            Some((ip("203.0.113.10"), ip("203.0.113.20")))
        );
        assert_eq!(parse_address("0.0.0.0/0"), Some((0, u32::MAX)));
        for bad in [
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4/33",
            "1.2.3.4/1.2",
            "5.5.5.5-1.1.1.1",
            "x",
            "",
        ] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_is_read_only_with_root_squashed() {
        let (ex, _) = load("198.51.100.0/24 /data\n");
        let e = ex.choose(&req("198.51.100.3", "data")).unwrap();
        assert!(e.readonly());
        assert_eq!((e.rootuid, e.rootgid), (999, 999));
        // Not alldirs: a subdirectory, another address, or the root are refused.
        assert_eq!(
            ex.choose(&req("198.51.100.3", "data/x")),
            Err(Refusal::Eacces)
        );
        assert_eq!(
            ex.choose(&req("198.51.101.3", "data")),
            Err(Refusal::Eacces)
        );
        assert_eq!(ex.choose(&req("198.51.100.3", "/")), Err(Refusal::Eacces));
        // `data` does not export `database` even with alldirs.
        let (ex, _) = load("* /data alldirs\n");
        assert!(ex.choose(&req("192.0.2.1", "data/sub")).is_ok());
        assert_eq!(
            ex.choose(&req("192.0.2.1", "database")),
            Err(Refusal::Eacces)
        );
    }

    #[test]
    fn passwords_and_their_statuses() {
        let (ex, _) = load("* / rw,password=s3cret\n");
        let rnd = [9u8; 32];
        let good = antler_protocol::auth::challenge_response(&rnd, &md5(b"s3cret"));
        let mut r = req("192.0.2.1", "/");
        assert_eq!(ex.choose(&r), Err(Refusal::NoPassword));
        assert_eq!(Refusal::NoPassword.status(), 36);
        r.random = Some(rnd);
        r.passcode = Some([0; 16]);
        assert_eq!(ex.choose(&r), Err(Refusal::BadPassword));
        assert_eq!(Refusal::BadPassword.status(), 37);
        r.passcode = Some(good);
        assert!(ex.choose(&r).is_ok());
        // md5pass is the same password, given as its digest.
        let hex: String = md5(b"s3cret").iter().map(|b| format!("{b:02x}")).collect();
        let (ex2, _) = load(&format!("* / md5pass={hex}\n"));
        assert!(ex2.choose(&r).is_ok());
        // An open line next to a password line: no password needed.
        let (ex3, _) = load("* / rw,password=x\n* / ro\n");
        let e = ex3.choose(&req("192.0.2.1", "/")).unwrap();
        assert_eq!(e.line, 2);
        assert_eq!(Refusal::Eacces.status(), 4);
    }

    #[test]
    fn choosing_among_matches_follows_mooses_chain() {
        // rw beats ro.
        let (ex, _) = load("* / ro\n* / rw\n");
        assert_eq!(ex.choose(&req("192.0.2.1", "/")).unwrap().line, 2);
        // The first match stays when the later one is not better by the chain.
        let (ex, _) = load("* / rw,maproot=0\n* / ro\n");
        assert_eq!(ex.choose(&req("192.0.2.1", "/")).unwrap().line, 1);
        // It is a chain, not a ranking: a later ro line with maproot=0 beats an earlier
        // rw line without it (as in MooseFS).
        let (ex, _) = load("* / rw\n* / ro,maproot=0\n");
        assert_eq!(ex.choose(&req("192.0.2.1", "/")).unwrap().line, 2);
        // A later read-only line with maproot=0 beats an earlier read-only one.
        let (ex, _) = load("* / ro\n* / ro,maproot=0\n");
        assert_eq!(ex.choose(&req("192.0.2.1", "/")).unwrap().line, 2);
        // The longer path wins when nothing else differs.
        let (ex, _) = load("* / alldirs\n* /a alldirs\n");
        assert_eq!(ex.choose(&req("192.0.2.1", "a/b")).unwrap().line, 2);
        // minversion keeps old clients out. As in MooseFS the patch level is compared
        // undoubled against the client's doubled one (3.0.117 is sent as 3.0.234).
        let (ex, _) = load("* / rw,minversion=3.1\n");
        assert_eq!(ex.choose(&req("192.0.2.1", "/")), Err(Refusal::Eacces));
        let (ex, _) = load("* / rw,minversion=3.0.200\n");
        assert!(ex.choose(&req("192.0.2.1", "/")).is_ok());
    }

    #[test]
    fn options_ids_times_and_defaults() {
        let (ex, w) = load(
            "DEFAULTS rw,mingoal=2\n\
             * / maproot=mfs,mapall=120:staff,mintrashtime=1d2h,maxtrashtime=2W,umask=0027,disable=chown:rmdir,dynamicip,ignoregid,whatever\n\
             * /nomap\n",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0]
            .to_string()
            .contains("mfsexports.cfg:2: unknown option 'whatever'"));
        let e = &ex.entries[0];
        assert!(!e.readonly());
        assert_eq!(e.mingoal, 2);
        assert_eq!((e.rootuid, e.rootgid), (120, 130));
        assert_eq!((e.mapalluid, e.mapallgid), (120, 50));
        assert_eq!(
            e.sesflags,
            SESFLAG_MAPALL | SESFLAG_DYNAMICIP | SESFLAG_IGNOREGID
        );
        assert_eq!(e.mintrashtime, 86_400 + 7_200);
        assert_eq!(e.maxtrashtime, 2 * 604_800);
        assert_eq!(e.umask, 0o027);
        assert_eq!(e.disables, 1 << 0 | 1 << 8);
        // DEFAULTS carry over to later lines.
        assert!(!ex.entries[1].readonly());
        assert_eq!(ex.entries[1].mingoal, 2);
        // mapall without maproot maps root too.
        let (ex, _) = load("* / mapall=7:8\n");
        assert_eq!((ex.entries[0].rootuid, ex.entries[0].rootgid), (7, 8));
    }

    #[test]
    fn bad_lines_are_dropped_with_file_and_line() {
        let text = "* / rw\n\
                    300.1.1.1 / rw\n\
                    * / maproot=nobody_here\n\
                    * / mingoal=7,maxgoal=3\n\
                    * / umask=27\n\
                    * / md5pass=xyz\n\
                    * / mintrashtime=5x\n\
                    lonely\n";
        let (ex, w) = load(text);
        assert_eq!(ex.entries.len(), 1);
        let lines: Vec<usize> = w.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8]);
        for x in &w {
            assert!(x.to_string().starts_with("/etc/mfs/mfsexports.cfg:"), "{x}");
            assert!(x.message.contains("ignored"), "{x}");
        }
        assert!(w[1].message.contains("unknown user 'nobody_here'"));
        // Nothing usable at all is an error.
        let e = parse(Path::new("/x/mfsexports.cfg"), "# nothing\n", &FakeIds).unwrap_err();
        assert!(e.to_string().contains("/x/mfsexports.cfg"));
    }

    #[test]
    fn time_and_version_syntax() {
        assert_eq!(parse_time("3600"), Some(3600));
        assert_eq!(parse_time("1h30m"), Some(5400));
        assert_eq!(parse_time("1H"), Some(3600));
        assert_eq!(parse_time("30m1h"), None); // out of order
        assert_eq!(parse_time("h"), None);
        assert_eq!(parse_time("10000W"), None); // above 2^32
        assert_eq!(parse_version("3.0.117"), Some(3 << 16 | 117));
        assert_eq!(parse_version("3"), Some(3 << 16));
        assert_eq!(parse_version("3.x"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_fails_cleanly(
            lines in proptest::collection::vec("([ -~\t]|\\PC){0,60}", 0..8)
        ) {
            let text = lines.join("\n");
            if let Ok((ex, _)) = parse(Path::new("f"), &text, &FakeIds) {
                for e in &ex.entries {
                    proptest::prop_assert!(e.from <= e.to && e.mingoal <= e.maxgoal);
                }
                let _ = ex.choose(&req("192.0.2.1", "/"));
            }
        }
    }

    #[test]
    fn the_system_user_database_is_reachable() {
        // root exists everywhere.
        assert_eq!(SystemIds.user("root"), Some((0, 0)));
        assert_eq!(SystemIds.user_gid(0), Some(0));
        assert_eq!(SystemIds.group("root"), Some(0));
        assert_eq!(SystemIds.user("no-such-user-antler"), None);
    }
}
