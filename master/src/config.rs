//! `mfsmaster.cfg`: the options this master reads, with the MooseFS 3.0.117 defaults
//! (and clamps) described in `docs/notes/moosefs-master-cs-exports.md` §2.

use crate::chunks::LoopParams;
use antler_common::cfg::{CfgError, CfgFile};
use std::path::PathBuf;

/// Every option of the real 3.0.117 `mfsmaster.cfg`; anything else is warned about.
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
    "EXPORTS_FILENAME",
    "TOPOLOGY_FILENAME",
    "BACK_LOGS",
    "BACK_META_KEEP_PREVIOUS",
    "CHANGELOG_FSYNC",
    "CHANGELOG_PRESERVE_SECONDS",
    "CHANGELOG_SAVE_MODE",
    "MISSING_LOG_CAPACITY",
    "MATOML_LISTEN_HOST",
    "MATOML_LISTEN_PORT",
    "MATOCS_LISTEN_HOST",
    "MATOCS_LISTEN_PORT",
    "MATOCS_TIMEOUT",
    "AUTH_CODE",
    "REPLICATIONS_DELAY_INIT",
    "REPLICATIONS_DELAY_DISCONNECT",
    "REPLICATIONS_RESPECT_TOPOLOGY",
    "CREATIONS_RESPECT_TOPOLOGY",
    "CHUNKS_UNIQUE_MODE",
    "CHUNKS_LOOP_MAX_CPS",
    "CHUNKS_LOOP_MIN_TIME",
    "CHUNKS_LOOP_TIME",
    "CHUNKS_SOFT_DEL_LIMIT",
    "CHUNKS_HARD_DEL_LIMIT",
    "CHUNKS_WRITE_REP_LIMIT",
    "CHUNKS_READ_REP_LIMIT",
    "CS_HEAVY_LOAD_THRESHOLD",
    "CS_HEAVY_LOAD_RATIO_THRESHOLD",
    "CS_HEAVY_LOAD_GRACE_PERIOD",
    "ACCEPTABLE_PERCENTAGE_DIFFERENCE",
    "ACCEPTABLE_DIFFERENCE",
    "PRIORITY_QUEUES_LENGTH",
    "CS_MAINTENANCE_MODE_TIMEOUT",
    "CS_TEMP_MAINTENANCE_MODE_TIMEOUT",
    "CS_DAYS_TO_REMOVE_UNUSED",
    "MATOCL_LISTEN_HOST",
    "MATOCL_LISTEN_PORT",
    "SESSION_SUSTAIN_TIME",
    "QUOTA_DEFAULT_GRACE_PERIOD",
    "ATIME_MODE",
    "RESERVE_SPACE",
    "MAX_ALLOWED_HARD_LINKS",
    "INODE_REUSE_DELAY",
    "METADATA_SAVE_FREQ",
    "REMAP_BITS",
    "REMAP_SOURCE_IP_CLASS",
    "REMAP_DESTINATION_IP_CLASS",
];

/// Chunkserver address translation (`REMAP_*`): `(ip & mask) == src` → `(ip & !mask) | dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remap {
    /// Network mask.
    pub mask: u32,
    /// Source network.
    pub src: u32,
    /// Destination network.
    pub dst: u32,
}

impl Remap {
    /// Translates a chunkserver address.
    pub fn apply(&self, ip: u32) -> u32 {
        if ip & self.mask == self.src {
            (ip & !self.mask) | self.dst
        } else {
            ip
        }
    }
}

/// The master's settings.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Working directory (metadata, lock file).
    pub data_path: PathBuf,
    /// `mfsexports.cfg`.
    pub exports: PathBuf,
    /// `mfstopology.cfg` (read for completeness; placement ignores topology).
    pub topology: PathBuf,
    /// Metalogger listener (host, port).
    pub matoml: (String, u16),
    /// Chunkserver listener.
    pub matocs: (String, u16),
    /// Client listener.
    pub matocl: (String, u16),
    /// Chunkserver connection timeout (seconds).
    pub matocs_timeout: u16,
    /// Secret chunkservers must prove.
    pub auth_code: Option<String>,
    /// Chunk loop limits.
    pub loop_params: LoopParams,
    /// Minimum time for one full chunk loop pass (seconds).
    pub loop_min_time: u32,
    /// Seconds a disconnected session is kept.
    pub session_sustain_time: u32,
    /// Chunkserver address translation.
    pub remap: Option<Remap>,
    /// User to run as.
    pub working_user: String,
    /// Group to run as.
    pub working_group: String,
    /// Syslog identifier.
    pub syslog_ident: String,
    /// Nice level.
    pub nice_level: i32,
    /// Hard link limit.
    pub max_links: u32,
    /// Inode reuse delay (seconds).
    pub inode_reuse_delay: u32,
    /// Changelog files kept besides `changelog.0.mfs` (`BACK_LOGS`).
    pub back_logs: u32,
    /// Older metadata dumps kept (`BACK_META_KEEP_PREVIOUS`).
    pub back_meta_keep_previous: u32,
    /// Hours between background metadata dumps (`METADATA_SAVE_FREQ`).
    pub metadata_save_freq: u32,
    /// `fdatasync` the changelog before answering (`CHANGELOG_FSYNC`, an Antler key).
    pub changelog_fsync: bool,
}

fn parse_ip(s: &str) -> Option<u32> {
    s.trim().parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

/// Parses `N` or `A,B,C,D` (MooseFS replication limits); returns the undergoal class (B).
fn rep_limit(c: &CfgFile, key: &str, default: &str) -> Result<u32, CfgError> {
    let v = c.get_str(key, default);
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let pick = match parts.len() {
        1 => parts[0],
        4 => parts[1],
        _ => "",
    };
    pick.parse::<f64>()
        .ok()
        .filter(|x| *x >= 0.0)
        .map(|x| x.ceil().max(1.0) as u32)
        .ok_or_else(|| CfgError::BadValue {
            file: c.path().to_path_buf(),
            line: c.line_of(key).unwrap_or(0),
            key: key.to_string(),
            value: v.clone(),
            expected: "N or A,B,C,D".to_string(),
        })
}

fn host_port(c: &CfgFile, host: &str, port: &str, defport: u32) -> Result<(String, u16), CfgError> {
    Ok((c.get_str(host, "*"), c.get_u32(port, defport)? as u16))
}

impl MasterConfig {
    /// Reads the settings from a parsed file (missing keys take MooseFS defaults).
    pub fn from_cfg(c: &CfgFile) -> Result<MasterConfig, CfgError> {
        let auth = c.get_str("AUTH_CODE", "");
        let soft = c.get_u32("CHUNKS_SOFT_DEL_LIMIT", 10)?;
        if soft == 0 {
            return Err(CfgError::BadValue {
                file: c.path().to_path_buf(),
                line: c.line_of("CHUNKS_SOFT_DEL_LIMIT").unwrap_or(0),
                key: "CHUNKS_SOFT_DEL_LIMIT".into(),
                value: "0".into(),
                expected: "a non-zero delete limit".into(),
            });
        }
        let remap = match (
            c.get_opt("REMAP_BITS"),
            c.get_opt("REMAP_SOURCE_IP_CLASS").and_then(parse_ip),
            c.get_opt("REMAP_DESTINATION_IP_CLASS").and_then(parse_ip),
        ) {
            (Some(b), Some(src), Some(dst)) => match b.trim().parse::<u32>() {
                Ok(bits @ 1..=32) => {
                    let mask = if bits == 32 {
                        u32::MAX
                    } else {
                        !(u32::MAX >> bits)
                    };
                    (src & !mask == 0 && dst & !mask == 0).then_some(Remap { mask, src, dst })
                }
                _ => None,
            },
            _ => None,
        };
        Ok(MasterConfig {
            data_path: c.get_str("DATA_PATH", "/var/lib/mfs").into(),
            exports: c
                .get_str("EXPORTS_FILENAME", "/etc/mfs/mfsexports.cfg")
                .into(),
            topology: c
                .get_str("TOPOLOGY_FILENAME", "/etc/mfs/mfstopology.cfg")
                .into(),
            matoml: host_port(c, "MATOML_LISTEN_HOST", "MATOML_LISTEN_PORT", 9419)?,
            matocs: host_port(c, "MATOCS_LISTEN_HOST", "MATOCS_LISTEN_PORT", 9420)?,
            matocl: host_port(c, "MATOCL_LISTEN_HOST", "MATOCL_LISTEN_PORT", 9421)?,
            matocs_timeout: c.get_u32("MATOCS_TIMEOUT", 10)?.clamp(10, 65535) as u16,
            auth_code: if auth.is_empty() { None } else { Some(auth) },
            loop_params: LoopParams {
                replications_delay_init: c.get_u32("REPLICATIONS_DELAY_INIT", 60)?,
                write_rep_limit: rep_limit(c, "CHUNKS_WRITE_REP_LIMIT", "2,1,1,4")?,
                read_rep_limit: rep_limit(c, "CHUNKS_READ_REP_LIMIT", "10,5,2,5")?,
                del_limit: soft,
                max_cps: c
                    .get_u32("CHUNKS_LOOP_MAX_CPS", 100_000)?
                    .clamp(10_000, 10_000_000),
            },
            loop_min_time: c.get_u32("CHUNKS_LOOP_MIN_TIME", 300)?.clamp(60, 7200),
            session_sustain_time: c
                .get_u32("SESSION_SUSTAIN_TIME", 86_400)?
                .clamp(60, 604_800),
            remap,
            working_user: c.get_str("WORKING_USER", "mfs"),
            working_group: c.get_str("WORKING_GROUP", ""),
            syslog_ident: c.get_str("SYSLOG_IDENT", "mfsmaster"),
            nice_level: c.get_u32("NICE_LEVEL", 0).map(|v| v as i32).unwrap_or(0),
            max_links: c.get_u32("MAX_ALLOWED_HARD_LINKS", 32767)?.clamp(8, 65000),
            inode_reuse_delay: c
                .get_u32("INODE_REUSE_DELAY", 86_400)?
                .clamp(300, 3_000_000),
            back_logs: c.get_u32("BACK_LOGS", 50)?.clamp(1, 10_000),
            back_meta_keep_previous: c.get_u32("BACK_META_KEEP_PREVIOUS", 1)?.min(99),
            metadata_save_freq: c.get_u32("METADATA_SAVE_FREQ", 1)?.clamp(1, 24),
            changelog_fsync: c.get_u32("CHANGELOG_FSYNC", 1)? != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn defaults_and_values() {
        let c = CfgFile::parse(
            Path::new("m.cfg"),
            "MATOCL_LISTEN_PORT = 19421\nCHUNKS_WRITE_REP_LIMIT = 5\nCHUNKS_READ_REP_LIMIT = 10,7,2,5\nSESSION_SUSTAIN_TIME = 5\nREMAP_BITS = 24\nREMAP_SOURCE_IP_CLASS = 192.0.2.0\nREMAP_DESTINATION_IP_CLASS = 198.51.100.0\n",
        )
        .unwrap();
        let m = MasterConfig::from_cfg(&c).unwrap();
        assert_eq!(m.matocl, ("*".to_string(), 19421));
        assert_eq!(m.matocs.1, 9420);
        assert_eq!(m.loop_params.write_rep_limit, 5);
        assert_eq!(m.loop_params.read_rep_limit, 7);
        assert_eq!(m.session_sustain_time, 60);
        let r = m.remap.unwrap();
        assert_eq!(r.apply(0xC000_0207), 0xC633_6407);
        assert_eq!(r.apply(0xCB00_7101), 0xCB00_7101);
    }

    #[test]
    fn bad_values_name_file_and_line() {
        let c = CfgFile::parse(Path::new("m.cfg"), "\nCHUNKS_SOFT_DEL_LIMIT = 0\n").unwrap();
        let e = MasterConfig::from_cfg(&c).unwrap_err().to_string();
        assert!(e.contains("m.cfg:2"), "{e}");
        let c = CfgFile::parse(Path::new("m.cfg"), "CHUNKS_WRITE_REP_LIMIT = 1,2\n").unwrap();
        let e = MasterConfig::from_cfg(&c).unwrap_err().to_string();
        assert!(
            e.contains("m.cfg:1") && e.contains("CHUNKS_WRITE_REP_LIMIT"),
            "{e}"
        );
    }
}
