//! `mfschunkserver.cfg`: the options this chunkserver reads, with MooseFS defaults.

use antler_common::cfg::{CfgError, CfgFile};
#[cfg(test)]
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// Every option of the real 3.0.117 `mfschunkserver.cfg`; anything else is warned about.
pub const KNOWN_KEYS: &[&str] = &[
    "WORKING_USER",
    "WORKING_GROUP",
    "SYSLOG_IDENT",
    "LOCK_MEMORY",
    "LIMIT_GLIBC_MALLOC_ARENAS",
    "DISABLE_OOM_KILLER",
    "NICE_LEVEL",
    "FILE_UMASK",
    "DATA_PATH",
    "HDD_CONF_FILENAME",
    "HDD_TEST_FREQ",
    "HDD_LEAVE_SPACE_DEFAULT",
    "HDD_REBALANCE_UTILIZATION",
    "HDD_ERROR_TOLERANCE_COUNT",
    "HDD_ERROR_TOLERANCE_PERIOD",
    "HDD_FSYNC_BEFORE_CLOSE",
    "HDD_SPARSIFY_ON_WRITE",
    "HDD_PUNCH_HOLES",
    "HDD_CHECK_CRC_WHEN_READING",
    "HDD_CHECK_CRC_WHEN_WRITING",
    "HDD_ADVISE_NO_CACHE",
    "HDD_TEST_SPEED",
    "HDD_MIN_TEST_INTERVAL",
    "HDD_HIGH_SPEED_REBALANCE_LIMIT",
    "WORKERS_MAX",
    "WORKERS_MAX_IDLE",
    "LABELS",
    "BIND_HOST",
    "MASTER_HOST",
    "MASTER_PORT",
    "MASTER_TIMEOUT",
    "MASTER_RECONNECTION_DELAY",
    "AUTH_CODE",
    "CSSERV_LISTEN_HOST",
    "CSSERV_LISTEN_PORT",
    "CSSERV_TIMEOUT",
    "CHUNKS_PER_REGISTER_PACKET",
    "REPLICATION_BANDWIDTH_LIMIT",
    "ENABLE_LOAD_FACTOR",
    "LOAD_FACTOR_PENALTY",
];

/// The chunkserver's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CsConfig {
    /// Where `chunkserverid.mfs` and the lock file live.
    pub data_path: PathBuf,
    /// `mfshdd.cfg`.
    pub hdd_conf: PathBuf,
    /// Master host name or address (re-resolved at every connection attempt).
    pub master_host: String,
    /// Master's chunkserver port.
    pub master_port: u16,
    /// 0 = use the master's timeout; else 10..65535 seconds.
    pub master_timeout: u16,
    /// Seconds between connection attempts.
    pub reconnection_delay: Duration,
    /// Local address for the master connection (`*` = any).
    pub bind_host: String,
    /// Data port listen address (`*` = any).
    pub listen_host: String,
    /// Data port.
    pub listen_port: u16,
    /// Secret the master may ask for.
    pub auth_code: Option<String>,
    /// Space kept free on each disk unless mfshdd.cfg says otherwise.
    pub leave_space_default: u64,
    /// Seconds between background CRC tests of one chunk (0 = off).
    pub hdd_test_freq: u32,
    /// fsync chunk files when a write ends.
    pub fsync_before_close: bool,
    /// Chunks per registration batch.
    pub chunks_per_register_packet: u32,
    /// User to run as.
    pub working_user: String,
    /// Group to run as.
    pub working_group: String,
    /// Syslog identifier.
    pub syslog_ident: String,
    /// Nice level.
    pub nice_level: i32,
}

impl CsConfig {
    /// Reads the settings from a parsed file (missing keys take MooseFS defaults).
    pub fn from_cfg(c: &CfgFile) -> Result<CsConfig, CfgError> {
        let mut timeout = c.get_u32("MASTER_TIMEOUT", 0)?;
        if timeout > 0 {
            timeout = timeout.clamp(10, 65535);
        }
        let auth = c.get_str("AUTH_CODE", "");
        Ok(CsConfig {
            data_path: c.get_str("DATA_PATH", "/var/lib/mfs").into(),
            hdd_conf: c.get_str("HDD_CONF_FILENAME", "/etc/mfs/mfshdd.cfg").into(),
            master_host: c.get_str("MASTER_HOST", "mfsmaster"),
            master_port: c.get_u32("MASTER_PORT", 9420)? as u16,
            master_timeout: timeout as u16,
            reconnection_delay: Duration::from_secs(
                c.get_u32("MASTER_RECONNECTION_DELAY", 5)?.max(1) as u64,
            ),
            bind_host: c.get_str("BIND_HOST", "*"),
            listen_host: c.get_str("CSSERV_LISTEN_HOST", "*"),
            listen_port: c.get_u32("CSSERV_LISTEN_PORT", 9422)? as u16,
            auth_code: if auth.is_empty() { None } else { Some(auth) },
            leave_space_default: c.get_size("HDD_LEAVE_SPACE_DEFAULT", 256 << 20)?,
            hdd_test_freq: c.get_u32("HDD_TEST_FREQ", 10)?,
            fsync_before_close: c.get_bool("HDD_FSYNC_BEFORE_CLOSE", false)?,
            chunks_per_register_packet: c
                .get_u32("CHUNKS_PER_REGISTER_PACKET", 10_000)?
                .clamp(1, 100_000),
            working_user: c.get_str("WORKING_USER", "mfs"),
            working_group: c.get_str("WORKING_GROUP", ""),
            syslog_ident: c.get_str("SYSLOG_IDENT", "mfschunkserver"),
            nice_level: c.get_u32("NICE_LEVEL", 0).map(|v| v as i32).unwrap_or(0),
        })
    }
}

pub use antler_common::cfg::resolve;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn defaults_and_values() {
        let c = CfgFile::parse(Path::new("cs.cfg"), "MASTER_HOST = 192.0.2.1\nMASTER_TIMEOUT = 3\nAUTH_CODE = s3\nHDD_LEAVE_SPACE_DEFAULT = 1GiB\n").unwrap();
        let cfg = CsConfig::from_cfg(&c).unwrap();
        assert_eq!(cfg.master_host, "192.0.2.1");
        assert_eq!(cfg.master_port, 9420);
        assert_eq!(cfg.master_timeout, 10);
        assert_eq!(cfg.auth_code.as_deref(), Some("s3"));
        assert_eq!(cfg.leave_space_default, 1 << 30);
        assert_eq!(cfg.listen_port, 9422);
        let bad = CfgFile::parse(Path::new("cs.cfg"), "\nMASTER_PORT = x\n").unwrap();
        let e = CsConfig::from_cfg(&bad).unwrap_err().to_string();
        assert!(e.starts_with("cs.cfg:2: MASTER_PORT = 'x'"), "{e}");
    }

    #[test]
    fn resolves() {
        assert_eq!(
            resolve("*", 1).unwrap(),
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1)
        );
        assert_eq!(
            resolve("127.0.0.1", 9).unwrap(),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9)
        );
    }
}
