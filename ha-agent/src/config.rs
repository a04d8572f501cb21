//! `ha-agent.toml`: keepalived's settings under keepalived's names, as strict TOML.
//!
//! Unknown keys are errors. Every error names the file, the line and the key.

use crate::packet::Version;
use antler_common::toml_cfg::{self, line_of, table_line};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration that cannot be used (file, line and key in every message).
pub use antler_common::toml_cfg::TomlError as ConfigError;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[global]`.
    pub global: Global,
    /// `[smtp]`: email on every role change (optional).
    pub smtp: Option<Smtp>,
    /// `[[vrrp_script]]`: health checks.
    #[serde(default)]
    pub vrrp_script: Vec<Script>,
    /// `[[vrrp_instance]]`.
    pub vrrp_instance: Vec<InstanceCfg>,
}

/// `[global]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// Name of this node in logs and emails.
    pub router_id: String,
}

/// `[smtp]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    /// `host:port` of the relay.
    pub server: String,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Use STARTTLS.
    #[serde(default)]
    pub starttls: bool,
    /// AUTH user.
    pub user: Option<String>,
    /// File holding the AUTH password (must be mode 0600 or stricter).
    pub password_file: Option<PathBuf>,
    /// PEM file with the CA certificate(s) that sign the relay's certificate (a private
    /// CA); when set, STARTTLS trusts these only, not the public roots. Needs
    /// `starttls = true`.
    pub ca_file: Option<PathBuf>,
}

/// `[[vrrp_script]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Name referenced by `track_script`.
    pub name: String,
    /// Command line, run with `sh -c`.
    pub script: String,
    /// Seconds between runs.
    #[serde(default = "default_interval")]
    pub interval: f64,
    /// Seconds before a run counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Failures in a row before the tracker counts as failed.
    #[serde(default = "one")]
    pub fall: u32,
    /// Successes in a row before it counts as healthy again.
    #[serde(default = "one")]
    pub rise: u32,
    /// Priority change while failed (negative) or while healthy (positive); 0 = FAULT.
    #[serde(default)]
    pub weight: i32,
}

fn default_interval() -> f64 {
    1.0
}
fn default_timeout() -> f64 {
    2.0
}
fn one() -> u32 {
    1
}
fn default_advert_int() -> f64 {
    1.0
}
fn default_version() -> u8 {
    2
}
fn default_state() -> String {
    "BACKUP".into()
}
fn default_garp_repeat() -> u32 {
    5
}

/// `[[vrrp_instance]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceCfg {
    /// Instance name.
    pub name: String,
    /// Interface the VIPs and adverts use.
    pub interface: String,
    /// VRID, 1..255.
    pub virtual_router_id: u8,
    /// 1..255 (255 = address owner).
    pub priority: u8,
    /// Seconds; v3 allows 0.01 s steps, v2 whole seconds.
    #[serde(default = "default_advert_int")]
    pub advert_int: f64,
    /// 2 or 3.
    #[serde(default = "default_version")]
    pub version: u8,
    /// Initial state hint: MASTER or BACKUP (as in keepalived, only 255 starts as MASTER).
    #[serde(default = "default_state")]
    pub state: String,
    /// Do not take MASTER from a lower-priority master.
    #[serde(default)]
    pub nopreempt: bool,
    /// Seconds to wait before preempting.
    #[serde(default)]
    pub preempt_delay: f64,
    /// v2 PASS authentication (up to 8 characters).
    pub auth_pass: Option<String>,
    /// VIPs as `a.b.c.d/len` or `2001:db8::1/len`, all of one family: the family
    /// makes the instance an IPv4 or an IPv6 (VRRPv3 only) instance.
    pub virtual_ipaddress: Vec<String>,
    /// Unicast peers instead of multicast, of the instance's family (IPv6 peers by
    /// their link-local address, the source of their adverts).
    #[serde(default)]
    pub unicast_peer: Vec<IpAddr>,
    /// Names of `[[vrrp_script]]` entries.
    #[serde(default)]
    pub track_script: Vec<String>,
    /// Interfaces whose link-down means FAULT.
    #[serde(default)]
    pub track_interface: Vec<String>,
    /// Hook run on becoming MASTER.
    pub notify_master: Option<String>,
    /// Hook run on becoming BACKUP.
    pub notify_backup: Option<String>,
    /// Hook run on becoming FAULT.
    pub notify_fault: Option<String>,
    /// Hook run on stop.
    pub notify_stop: Option<String>,
    /// Hook run on every change with `INSTANCE NAME STATE PRIORITY`.
    pub notify: Option<String>,
    /// Gratuitous ARPs per burst.
    #[serde(default = "default_garp_repeat")]
    pub garp_repeat: u32,
    /// Seconds between the ARPs of a burst.
    #[serde(default)]
    pub garp_interval: f64,
    /// Seconds between repeated bursts while MASTER (0 = off).
    #[serde(default)]
    pub garp_refresh: f64,
}

/// A VIP with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vip {
    /// Address (IPv4 or IPv6).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses `a.b.c.d/len` (len defaults to 32) or `2001:db8::1/len` (len defaults to 128).
pub fn parse_vip(s: &str) -> Result<Vip, String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv6() { 128 } else { 32 };
    let prefix: u8 = match p {
        None => max,
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("'{s}': bad prefix length"))?,
    };
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
        return Err(format!("'{s}' cannot be a virtual address"));
    }
    Ok(Vip { addr, prefix })
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = toml_cfg::read(path)?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`; `path` names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml_cfg::parse(path, text)?;
        cfg.validate(path, text)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        for s in &self.vrrp_script {
            let at = table_line(text, "vrrp_script", &s.name);
            let bad = |key: &str, message: String| ConfigError::Invalid {
                path: path.into(),
                line: line_of(text, key, at),
                key: format!("vrrp_script.{}.{key}", s.name),
                message,
            };
            if s.interval.is_nan() || s.interval <= 0.0 {
                return Err(bad("interval", "must be > 0".into()));
            }
            if s.timeout.is_nan() || s.timeout <= 0.0 {
                return Err(bad("timeout", "must be > 0".into()));
            }
            if s.fall == 0 || s.rise == 0 {
                return Err(bad(
                    if s.fall == 0 { "fall" } else { "rise" },
                    "must be at least 1".into(),
                ));
            }
            if !(-254..=254).contains(&s.weight) {
                return Err(bad("weight", "must be within -254..254".into()));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for i in &self.vrrp_instance {
            let at = table_line(text, "vrrp_instance", &i.name);
            let bad = |key: &str, message: String| ConfigError::Invalid {
                path: path.into(),
                line: line_of(text, key, at),
                key: format!("vrrp_instance.{}.{key}", i.name),
                message,
            };
            if !seen.insert((i.interface.clone(), i.virtual_router_id)) {
                return Err(bad(
                    "virtual_router_id",
                    "used twice on this interface".into(),
                ));
            }
            if i.virtual_router_id == 0 {
                return Err(bad("virtual_router_id", "must be 1..255".into()));
            }
            if i.priority == 0 {
                return Err(bad(
                    "priority",
                    "must be 1..255 (0 is reserved for a leaving master)".into(),
                ));
            }
            match i.version {
                2 => {
                    if i.advert_int < 1.0 || i.advert_int > 255.0 || i.advert_int.fract() != 0.0 {
                        return Err(bad(
                            "advert_int",
                            "VRRPv2 takes whole seconds 1..255".into(),
                        ));
                    }
                }
                3 => {
                    let cs = (i.advert_int * 100.0).round();
                    if !(1.0..=4095.0).contains(&cs) || (cs - i.advert_int * 100.0).abs() > 1e-6 {
                        return Err(bad(
                            "advert_int",
                            "VRRPv3 takes 0.01..40.95 s in 0.01 s steps".into(),
                        ));
                    }
                    if i.auth_pass.is_some() {
                        return Err(bad("auth_pass", "VRRPv3 has no authentication".into()));
                    }
                }
                v => return Err(bad("version", format!("{v}: must be 2 or 3"))),
            }
            if let Some(p) = &i.auth_pass {
                if p.is_empty() || p.len() > 8 {
                    return Err(bad("auth_pass", "must be 1..8 characters".into()));
                }
            }
            match i.state.as_str() {
                "MASTER" | "BACKUP" => {}
                s => return Err(bad("state", format!("'{s}': must be MASTER or BACKUP"))),
            }
            if i.virtual_ipaddress.is_empty() {
                return Err(bad(
                    "virtual_ipaddress",
                    "at least one address is needed".into(),
                ));
            }
            let mut vips = Vec::new();
            for v in &i.virtual_ipaddress {
                vips.push(parse_vip(v).map_err(|m| bad("virtual_ipaddress", m))?);
            }
            let ipv6 = vips[0].addr.is_ipv6();
            if let Some(odd) = vips.iter().find(|v| v.addr.is_ipv6() != ipv6) {
                return Err(bad(
                    "virtual_ipaddress",
                    format!(
                        "{odd} is {} but {} is {}: all addresses of an instance must be of one family",
                        family_name(odd.addr.is_ipv6()),
                        vips[0],
                        family_name(ipv6)
                    ),
                ));
            }
            if ipv6 && i.version != 3 {
                let key = if line_of(text, "version", at) > 0 {
                    "version"
                } else {
                    "virtual_ipaddress"
                };
                let mut e = bad(
                    "version",
                    "IPv6 virtual addresses need version = 3 (VRRPv2 is IPv4 only)".into(),
                );
                if let ConfigError::Invalid { line, .. } = &mut e {
                    *line = line_of(text, key, at);
                }
                return Err(e);
            }
            for peer in &i.unicast_peer {
                if peer.is_ipv6() != ipv6 {
                    return Err(bad(
                        "unicast_peer",
                        format!(
                            "{peer} is {} but the instance's addresses are {}",
                            family_name(peer.is_ipv6()),
                            family_name(ipv6)
                        ),
                    ));
                }
                if let IpAddr::V6(p) = peer {
                    if (p.segments()[0] & 0xffc0) != 0xfe80 {
                        return Err(bad(
                            "unicast_peer",
                            format!(
                                "{peer}: IPv6 peers are given by their link-local address \
                                 (fe80::/10), the source of their adverts (RFC 5798 5.1.2.1)"
                            ),
                        ));
                    }
                }
            }
            for t in &i.track_script {
                if !self.vrrp_script.iter().any(|s| &s.name == t) {
                    return Err(bad(
                        "track_script",
                        format!("no [[vrrp_script]] named '{t}'"),
                    ));
                }
            }
            if i.preempt_delay < 0.0 || i.preempt_delay > 1000.0 {
                return Err(bad("preempt_delay", "must be 0..1000 seconds".into()));
            }
        }
        if let Some(s) = &self.smtp {
            let at = line_of(text, "[smtp]", 0);
            if s.to.is_empty() {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    line: line_of(text, "to", at),
                    key: "smtp.to".into(),
                    message: "at least one recipient".into(),
                });
            }
            if s.ca_file.is_some() && !s.starttls {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    line: line_of(text, "ca_file", at),
                    key: "smtp.ca_file".into(),
                    message: "only used with starttls = true".into(),
                });
            }
            if s.user.is_some() != s.password_file.is_some() {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    line: at,
                    key: "smtp.user".into(),
                    message: "user and password_file go together".into(),
                });
            }
        }
        Ok(())
    }
}

fn family_name(ipv6: bool) -> &'static str {
    if ipv6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

impl InstanceCfg {
    /// Whether this is an IPv6 instance (its VIPs are IPv6; validated at load).
    pub fn is_ipv6(&self) -> bool {
        self.vips().first().is_some_and(|v| v.addr.is_ipv6())
    }

    /// The protocol version.
    pub fn vrrp_version(&self) -> Version {
        if self.version == 3 {
            Version::V3
        } else {
            Version::V2
        }
    }

    /// Advertisement interval in centiseconds.
    pub fn advert_int_cs(&self) -> u16 {
        (self.advert_int * 100.0).round() as u16
    }

    /// The VIPs (validated at load).
    pub fn vips(&self) -> Vec<Vip> {
        self.virtual_ipaddress
            .iter()
            .filter_map(|v| parse_vip(v).ok())
            .collect()
    }

    /// The v2 password padded to 8 bytes.
    pub fn auth_bytes(&self) -> Option<[u8; 8]> {
        self.auth_pass.as_ref().map(|p| {
            let mut b = [0u8; 8];
            b[..p.len()].copy_from_slice(p.as_bytes());
            b
        })
    }

    /// preempt_delay as a duration.
    pub fn preempt_delay(&self) -> Duration {
        Duration::from_secs_f64(self.preempt_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[global]
router_id = "node1"
[smtp]                        # optional
server = "127.0.0.1:25"
from = "ha-agent@node1"
to = ["ops@example.com"]
starttls = false
[[vrrp_script]]
name = "check_master"
script = "pidof mfsmaster"
interval = 3.0
timeout = 2.0
fall = 2
rise = 2
weight = -60
[[vrrp_instance]]
name = "VI_MFS"
interface = "eth0"
virtual_router_id = 51
priority = 150
advert_int = 1.0
version = 2
state = "BACKUP"
nopreempt = false
preempt_delay = 0.0
auth_pass = "secret"
virtual_ipaddress = ["192.0.2.100/24"]
unicast_peer = []
track_script = ["check_master"]
track_interface = []
notify_master = "/etc/ha-agent/master.sh"
garp_repeat = 5
garp_interval = 0.0
garp_refresh = 0.0
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = Config::parse(Path::new("ha-agent.toml"), EXAMPLE).unwrap();
        let i = &c.vrrp_instance[0];
        assert_eq!(
            i.vips(),
            vec![Vip {
                addr: "192.0.2.100".parse().unwrap(),
                prefix: 24
            }]
        );
        assert!(!i.is_ipv6());
        assert_eq!(i.auth_bytes(), Some(*b"secret\0\0"));
        assert_eq!(i.advert_int_cs(), 100);
        assert_eq!(c.vrrp_script[0].weight, -60);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let t = EXAMPLE.replace("priority = 150", "priorty = 150");
        let e = Config::parse(Path::new("/etc/ha-agent/ha-agent.toml"), &t)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/ha-agent/ha-agent.toml:21:"), "{e}");
        assert!(e.contains("priorty"), "{e}");

        let t = EXAMPLE.replace(
            "advert_int = 1.0\nversion = 2",
            "advert_int = 0.5\nversion = 2",
        );
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "a.toml:22: vrrp_instance.VI_MFS.advert_int: VRRPv2 takes whole seconds 1..255"
        );

        let t = EXAMPLE.replace(
            "track_script = [\"check_master\"]",
            "track_script = [\"nope\"]",
        );
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "a.toml:30: vrrp_instance.VI_MFS.track_script: no [[vrrp_script]] named 'nope'"
        );

        let t = EXAMPLE.replace("192.0.2.100/24", "192.0.2.300/24");
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("a.toml:28: vrrp_instance.VI_MFS.virtual_ipaddress:"),
            "{e}"
        );

        let t = EXAMPLE.replace("virtual_router_id = 51", "virtual_router_id = 300");
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.toml:20:"), "{e}");
    }

    #[test]
    fn ipv6_instances() {
        let v6 = EXAMPLE
            .replace("version = 2", "version = 3")
            .replace("auth_pass = \"secret\"\n", "")
            .replace(
                "192.0.2.100/24",
                "2001:db8:0:1::100/64\", \"2001:db8:0:1::101",
            );
        let c = Config::parse(Path::new("a.toml"), &v6).unwrap();
        let i = &c.vrrp_instance[0];
        assert!(i.is_ipv6());
        assert_eq!(
            i.vips(),
            vec![
                Vip {
                    addr: "2001:db8:0:1::100".parse().unwrap(),
                    prefix: 64
                },
                Vip {
                    addr: "2001:db8:0:1::101".parse().unwrap(),
                    prefix: 128
                }
            ]
        );
        let t = v6.replace("unicast_peer = []", "unicast_peer = [\"fe80::ff:fe00:2\"]");
        let c = Config::parse(Path::new("a.toml"), &t).unwrap();
        assert_eq!(
            c.vrrp_instance[0].unicast_peer,
            vec!["fe80::ff:fe00:2".parse::<IpAddr>().unwrap()]
        );

        // A mixed list names the key and both families.
        let t = v6.replace("2001:db8:0:1::101", "192.0.2.101");
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "a.toml:27: vrrp_instance.VI_MFS.virtual_ipaddress: 192.0.2.101/32 is IPv4 but \
             2001:db8:0:1::100/64 is IPv6: all addresses of an instance must be of one family"
        );
        // IPv6 needs VRRPv3, reported at the version key ...
        let t = v6.replace("version = 3", "version = 2");
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "a.toml:23: vrrp_instance.VI_MFS.version: IPv6 virtual addresses need version = 3 \
             (VRRPv2 is IPv4 only)"
        );
        // ... or at the addresses when version is left at its default.
        let t = v6.replace("version = 3\n", "");
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("a.toml:26: vrrp_instance.VI_MFS.version: IPv6"),
            "{e}"
        );
        // Peers of the other family, and global IPv6 peers, are refused.
        let t = v6.replace("unicast_peer = []", "unicast_peer = [\"192.0.2.2\"]");
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "a.toml:28: vrrp_instance.VI_MFS.unicast_peer: 192.0.2.2 is IPv4 but the \
             instance's addresses are IPv6"
        );
        let t = v6.replace("unicast_peer = []", "unicast_peer = [\"2001:db8:0:1::2\"]");
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("link-local"), "{e}");
        let t = EXAMPLE.replace("unicast_peer = []", "unicast_peer = [\"fe80::1\"]");
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("a.toml:29: vrrp_instance.VI_MFS.unicast_peer: fe80::1 is IPv6"),
            "{e}"
        );
        // Bad IPv6 prefixes and non-unicast addresses.
        for bad in ["2001:db8::1/129", "ff02::12", "::", "::1/128"] {
            let t = v6.replace("2001:db8:0:1::101", bad);
            let e = Config::parse(Path::new("a.toml"), &t)
                .unwrap_err()
                .to_string();
            assert!(e.contains("virtual_ipaddress"), "{bad}: {e}");
        }
    }

    #[test]
    fn smtp_ca_file_needs_starttls() {
        let t = EXAMPLE.replace(
            "starttls = false",
            "starttls = true\nca_file = \"/etc/ha-agent/ca.pem\"",
        );
        let c = Config::parse(Path::new("a.toml"), &t).unwrap();
        assert_eq!(
            c.smtp.unwrap().ca_file,
            Some(PathBuf::from("/etc/ha-agent/ca.pem"))
        );
        let t = EXAMPLE.replace("starttls = false", "ca_file = \"/etc/ha-agent/ca.pem\"");
        let e = Config::parse(Path::new("a.toml"), &t)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "a.toml:8: smtp.ca_file: only used with starttls = true");
    }
}
