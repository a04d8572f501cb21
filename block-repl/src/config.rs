//! `block-repl` resource configuration (`/etc/block-repl/NAME.toml`): strict TOML, names
//! a DRBD user knows. Unknown keys are errors; every error names the file, line and key.

use crate::policy::{After0Pri, After1Pri, After2Pri, Policies};
use antler_common::toml_cfg::{self, line_of, section_line, table_line, TomlError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// `[resource]`.
    pub resource: Resource,
    /// `[[node]]`, exactly two.
    pub node: Vec<NodeCfg>,
    /// `[net]`.
    #[serde(default)]
    pub net: Net,
    /// `[disk]`.
    #[serde(default)]
    pub disk: Disk,
    /// `[handlers]`.
    #[serde(default)]
    pub handlers: Handlers,
}

/// `[resource]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// Resource name (device link `/dev/block-repl/NAME`).
    pub name: String,
    /// `"C"` (synchronous) or `"A"` (asynchronous).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Secret for the HMAC challenge at connect.
    pub shared_secret: String,
}

fn default_protocol() -> String {
    "C".into()
}

/// One `[[node]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCfg {
    /// Node name (`--node`, default the hostname).
    pub name: String,
    /// Replication address `IP:PORT`.
    pub address: String,
    /// Backing file or block device.
    pub disk: PathBuf,
    /// `"internal"` (at the end of `disk`) or a metadata file path.
    #[serde(default = "default_meta")]
    pub meta_disk: String,
    /// Device link (default `/dev/block-repl/NAME`).
    pub device: Option<PathBuf>,
    /// Runtime directory: control socket, log, FUSE mount point (default `/run/block-repl`).
    pub run_dir: Option<PathBuf>,
}

fn default_meta() -> String {
    "internal".into()
}

/// `[net]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Net {
    /// Split brain with no primary.
    #[serde(default = "d_0pri")]
    pub after_sb_0pri: String,
    /// Split brain with one primary.
    #[serde(default = "d_1pri")]
    pub after_sb_1pri: String,
    /// Split brain with two primaries.
    #[serde(default = "d_2pri")]
    pub after_sb_2pri: String,
    /// Seconds without any frame from the peer before the link is declared dead.
    #[serde(default = "d_timeout")]
    pub timeout: f64,
}

fn d_0pri() -> String {
    "disconnect".into()
}
fn d_1pri() -> String {
    "disconnect".into()
}
fn d_2pri() -> String {
    "disconnect".into()
}
fn d_timeout() -> f64 {
    6.0
}

impl Default for Net {
    fn default() -> Self {
        Net {
            after_sb_0pri: d_0pri(),
            after_sb_1pri: d_1pri(),
            after_sb_2pri: d_2pri(),
            timeout: d_timeout(),
        }
    }
}

/// `[disk]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Resync bandwidth limit per second (MooseFS/DRBD size syntax: `500MiB`, `1G`).
    #[serde(default = "d_rate")]
    pub resync_rate: String,
    /// `"resource-only"` or `"dont-care"`.
    #[serde(default = "d_fencing")]
    pub fencing: String,
    /// Activity-log extents (4 MiB each) kept hot on the primary (DRBD's default count).
    #[serde(default = "d_al")]
    pub al_extents: u32,
    /// Seconds a block request may stay unanswered before the watchdog aborts the device
    /// (I/O then fails with EIO instead of hanging).
    #[serde(default = "d_stall")]
    pub stall_timeout: f64,
}

fn d_rate() -> String {
    "500MiB".into()
}
fn d_fencing() -> String {
    "dont-care".into()
}
fn d_al() -> u32 {
    1237
}
fn d_stall() -> f64 {
    30.0
}

impl Default for Disk {
    fn default() -> Self {
        Disk {
            resync_rate: d_rate(),
            fencing: d_fencing(),
            al_extents: d_al(),
            stall_timeout: d_stall(),
        }
    }
}

/// `[handlers]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handlers {
    /// Run by a primary that lost its peer, before it completes further writes.
    pub fence_peer: Option<String>,
    /// Run when a split brain is detected and not resolved automatically.
    pub split_brain: Option<String>,
}

/// Replication protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Asynchronous: complete locally, ship in order.
    A,
    /// Synchronous: complete when both nodes have it.
    C,
}

/// Where the metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaDisk {
    /// At the end of the data disk.
    Internal,
    /// In a separate file.
    External(PathBuf),
}

/// One node, resolved.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Name.
    pub name: String,
    /// Replication address.
    pub address: SocketAddr,
    /// Backing disk.
    pub disk: PathBuf,
    /// Metadata location.
    pub meta: MetaDisk,
    /// Device link.
    pub device: PathBuf,
    /// Runtime directory.
    pub run_dir: PathBuf,
}

/// A validated configuration, seen from one node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Resource name.
    pub name: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Shared secret.
    pub secret: String,
    /// This node.
    pub me: NodeSpec,
    /// The peer.
    pub peer: NodeSpec,
    /// Split-brain policies.
    pub policies: Policies,
    /// Link timeout.
    pub timeout: Duration,
    /// Resync bytes per second.
    pub resync_rate: u64,
    /// Fence the peer on link loss.
    pub fencing: bool,
    /// Activity-log extents.
    pub al_extents: u32,
    /// Watchdog limit.
    pub stall_timeout: Duration,
    /// Hooks.
    pub handlers: Handlers,
    /// The file it came from.
    pub path: PathBuf,
}

impl NodeSpec {
    /// Control socket path.
    pub fn socket(&self, resource: &str) -> PathBuf {
        self.run_dir.join(format!("{resource}.sock"))
    }
    /// Daemon log path.
    pub fn log(&self, resource: &str) -> PathBuf {
        self.run_dir.join(format!("{resource}.log"))
    }
    /// FUSE mount point (inside the daemon's private mount namespace).
    pub fn fuse_dir(&self, resource: &str) -> PathBuf {
        self.run_dir.join(format!("{resource}.fuse"))
    }
}

impl Config {
    /// Reads and validates `path` for node `node`.
    pub fn load(path: &Path, node: &str) -> Result<Config, TomlError> {
        let text = toml_cfg::read(path)?;
        Self::parse(path, &text, node)
    }

    /// Parses and validates `text` (from `path`) for node `node`.
    pub fn parse(path: &Path, text: &str, node: &str) -> Result<Config, TomlError> {
        let f: File = toml_cfg::parse(path, text)?;
        let invalid = |line: usize, key: String, message: String| TomlError::Invalid {
            path: path.into(),
            line,
            key,
            message,
        };
        let res_at = section_line(text, "resource");
        let r = &f.resource;
        if r.name.is_empty() || r.name.contains(['/', '\0']) || r.name.starts_with('.') {
            return Err(invalid(
                line_of(text, "name", res_at),
                "resource.name".into(),
                format!("'{}' is not usable as a device name", r.name),
            ));
        }
        let protocol = match r.protocol.as_str() {
            "A" => Protocol::A,
            "C" => Protocol::C,
            p => {
                return Err(invalid(
                    line_of(text, "protocol", res_at),
                    "resource.protocol".into(),
                    format!("'{p}': expected \"A\" or \"C\""),
                ))
            }
        };
        if r.shared_secret.is_empty() {
            return Err(invalid(
                line_of(text, "shared_secret", res_at),
                "resource.shared_secret".into(),
                "must not be empty".into(),
            ));
        }
        if f.node.len() != 2 {
            return Err(invalid(
                0,
                "node".into(),
                format!(
                    "exactly two [[node]] sections are needed, found {}",
                    f.node.len()
                ),
            ));
        }
        let mut specs = Vec::new();
        for n in &f.node {
            let at = table_line(text, "node", &n.name);
            let address = n.address.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    line_of(text, "address", at),
                    format!("node.{}.address", n.name),
                    format!("'{}': {e} (expected IP:PORT)", n.address),
                )
            })?;
            let meta = if n.meta_disk == "internal" {
                MetaDisk::Internal
            } else if n.meta_disk.starts_with('/') {
                MetaDisk::External(PathBuf::from(&n.meta_disk))
            } else {
                return Err(invalid(
                    line_of(text, "meta_disk", at),
                    format!("node.{}.meta_disk", n.name),
                    format!(
                        "'{}': expected \"internal\" or an absolute path",
                        n.meta_disk
                    ),
                ));
            };
            specs.push(NodeSpec {
                name: n.name.clone(),
                address,
                disk: n.disk.clone(),
                meta,
                device: n
                    .device
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/dev/block-repl").join(&r.name)),
                run_dir: n
                    .run_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/run/block-repl")),
            });
        }
        if specs[0].name == specs[1].name {
            return Err(invalid(
                table_line(text, "node", &specs[1].name),
                "node.name".into(),
                format!("both nodes are named '{}'", specs[0].name),
            ));
        }
        let Some(mi) = specs.iter().position(|s| s.name == node) else {
            return Err(invalid(
                0,
                "node".into(),
                format!(
                    "no [[node]] named '{node}' (this node; choose with --node): have '{}' and '{}'",
                    specs[0].name, specs[1].name
                ),
            ));
        };
        let peer = specs.remove(1 - mi);
        let me = specs.remove(0);
        let net_at = section_line(text, "net");
        let policy_err =
            |key: &str, m: String| invalid(line_of(text, key, net_at), format!("net.{key}"), m);
        let policies = Policies {
            zero: f
                .net
                .after_sb_0pri
                .parse::<After0Pri>()
                .map_err(|m| policy_err("after_sb_0pri", m))?,
            one: f
                .net
                .after_sb_1pri
                .parse::<After1Pri>()
                .map_err(|m| policy_err("after_sb_1pri", m))?,
            two: f
                .net
                .after_sb_2pri
                .parse::<After2Pri>()
                .map_err(|m| policy_err("after_sb_2pri", m))?,
        };
        if !(f.net.timeout.is_finite() && f.net.timeout >= 0.5 && f.net.timeout <= 600.0) {
            return Err(policy_err(
                "timeout",
                format!("{}: must be within 0.5..600 seconds", f.net.timeout),
            ));
        }
        let disk_at = section_line(text, "disk");
        let disk_err =
            |key: &str, m: String| invalid(line_of(text, key, disk_at), format!("disk.{key}"), m);
        let resync_rate = antler_common::parse_size(&f.disk.resync_rate)
            .ok()
            .filter(|r| *r >= 1 << 20)
            .ok_or_else(|| {
                disk_err(
                    "resync_rate",
                    format!(
                        "'{}': expected a size per second of at least 1MiB (e.g. \"500MiB\")",
                        f.disk.resync_rate
                    ),
                )
            })?;
        let fencing = match f.disk.fencing.as_str() {
            "resource-only" => true,
            "dont-care" => false,
            o => {
                return Err(disk_err(
                    "fencing",
                    format!("'{o}': expected \"resource-only\" or \"dont-care\""),
                ))
            }
        };
        if f.disk.al_extents == 0 || f.disk.al_extents > 65_536 {
            return Err(disk_err(
                "al_extents",
                format!("{}: must be within 1..65536", f.disk.al_extents),
            ));
        }
        if !(f.disk.stall_timeout.is_finite() && f.disk.stall_timeout >= 1.0) {
            return Err(disk_err(
                "stall_timeout",
                format!("{}: must be at least 1 second", f.disk.stall_timeout),
            ));
        }
        Ok(Config {
            name: r.name.clone(),
            protocol,
            secret: r.shared_secret.clone(),
            me,
            peer,
            policies,
            timeout: Duration::from_secs_f64(f.net.timeout),
            resync_rate,
            fencing,
            al_extents: f.disk.al_extents,
            stall_timeout: Duration::from_secs_f64(f.disk.stall_timeout),
            handlers: f.handlers,
            path: path.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[resource]
name = "mfs"
protocol = "C"
shared_secret = "bqrPnf9"
[[node]]
name = "node1"
address = "198.51.100.1:7789"
disk = "/var/lib/block-repl/mfs.img"
meta_disk = "internal"
[[node]]
name = "node2"
address = "198.51.100.2:7789"
disk = "/var/lib/block-repl/mfs.img"
meta_disk = "internal"
[net]
after_sb_0pri = "discard-zero-changes"
after_sb_1pri = "discard-secondary"
after_sb_2pri = "disconnect"
timeout = 6.0
[disk]
resync_rate = "500MiB"
fencing = "resource-only"
[handlers]
fence_peer = "/etc/block-repl/fence-peer.sh"
split_brain = "/etc/block-repl/split-brain.sh"
"#;

    fn p() -> &'static Path {
        Path::new("/etc/block-repl/mfs.toml")
    }

    #[test]
    fn the_issue_example_parses() {
        let c = Config::parse(p(), GOOD, "node2").unwrap();
        assert_eq!(c.me.name, "node2");
        assert_eq!(c.peer.address, "198.51.100.1:7789".parse().unwrap());
        assert_eq!(c.protocol, Protocol::C);
        assert_eq!(c.resync_rate, 500 << 20);
        assert!(c.fencing);
        assert_eq!(c.me.device, PathBuf::from("/dev/block-repl/mfs"));
        assert_eq!(c.policies.zero, After0Pri::DiscardZeroChanges);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = |t: &str, node: &str| Config::parse(p(), t, node).unwrap_err().to_string();
        let bad = GOOD.replace("protocol = \"C\"", "protocol = \"B\"");
        assert_eq!(
            e(&bad, "node1"),
            "/etc/block-repl/mfs.toml:4: resource.protocol: 'B': expected \"A\" or \"C\""
        );
        let bad = GOOD.replace("timeout = 6.0", "timeout = 6.0\nretries = 3");
        let m = e(&bad, "node1");
        assert!(m.starts_with("/etc/block-repl/mfs.toml:21: "), "{m}");
        assert!(m.contains("retries"), "{m}");
        let bad = GOOD.replace("198.51.100.2:7789", "198.51.100.2");
        let m = e(&bad, "node1");
        assert!(
            m.starts_with("/etc/block-repl/mfs.toml:13: node.node2.address: "),
            "{m}"
        );
        let bad = GOOD.replace("\"discard-secondary\"", "\"discard-primary\"");
        let m = e(&bad, "node1");
        assert!(
            m.starts_with("/etc/block-repl/mfs.toml:18: net.after_sb_1pri: "),
            "{m}"
        );
        let bad = GOOD.replace("\"500MiB\"", "\"fast\"");
        let m = e(&bad, "node1");
        assert!(
            m.starts_with("/etc/block-repl/mfs.toml:22: disk.resync_rate: "),
            "{m}"
        );
        let m = e(GOOD, "node3");
        assert!(m.contains("no [[node]] named 'node3'"), "{m}");
    }
}
