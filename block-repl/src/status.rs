//! The status view, in the style of `/proc/drbd` and `drbdadm status`.

use crate::frame::DiskState;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Everything the status view shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Resource name.
    pub name: String,
    /// Connection state (`Connected`, `StandAlone`, `WFConnection`, `SyncSource`, `SyncTarget`).
    pub cstate: String,
    /// Our role is primary.
    pub primary: bool,
    /// Peer role (None = unknown).
    pub peer_primary: Option<bool>,
    /// Our disk state.
    pub disk: DiskState,
    /// Peer disk state (None = unknown).
    pub peer_disk: Option<DiskState>,
    /// Replication protocol (`A` or `C`).
    pub protocol: char,
    /// KiB sent to the peer.
    pub sent_kib: u64,
    /// KiB received from the peer.
    pub received_kib: u64,
    /// KiB written locally.
    pub written_kib: u64,
    /// KiB read locally.
    pub read_kib: u64,
    /// KiB out of sync.
    pub out_of_sync_kib: u64,
    /// During a resync: total KiB to sync and the current speed (KiB/s).
    pub resync: Option<(u64, u64)>,
    /// The device path while primary.
    #[serde(default)]
    pub device: Option<String>,
    /// Why the node is not connected (last error, split brain), if it says anything.
    #[serde(default)]
    pub note: Option<String>,
}

fn role(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "Primary",
        Some(false) => "Secondary",
        None => "Unknown",
    }
}

fn disk(d: Option<DiskState>) -> &'static str {
    match d {
        Some(DiskState::Inconsistent) => "Inconsistent",
        Some(DiskState::Outdated) => "Outdated",
        Some(DiskState::Consistent) => "Consistent",
        Some(DiskState::UpToDate) => "UpToDate",
        None => "DUnknown",
    }
}

impl Status {
    /// Seconds left in the resync at the current speed.
    pub fn eta(&self) -> Option<Duration> {
        let (_, speed) = self.resync?;
        (speed > 0).then(|| Duration::from_secs(self.out_of_sync_kib.div_ceil(speed)))
    }

    /// The `/proc/drbd`-style text; `bar` adds the progress bar line during a resync.
    pub fn render(&self, bar: bool) -> String {
        let mut s = format!(
            "{}: cs:{} ro:{}/{} ds:{}/{} {}\n    ns:{} nr:{} dw:{} dr:{} oos:{}\n",
            self.name,
            self.cstate,
            role(Some(self.primary)),
            role(self.peer_primary),
            disk(Some(self.disk)),
            disk(self.peer_disk),
            self.protocol,
            self.sent_kib,
            self.received_kib,
            self.written_kib,
            self.read_kib,
            self.out_of_sync_kib
        );
        if let Some((total, speed)) = self.resync {
            let done = total.saturating_sub(self.out_of_sync_kib);
            let pct = if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            };
            if bar {
                let filled = (pct / 5.0).floor() as usize;
                s += &format!(
                    "    [{}>{}] sync'ed: {:.1}% ({}/{})K\n",
                    "=".repeat(filled.min(19)),
                    ".".repeat(19 - filled.min(19)),
                    pct,
                    self.out_of_sync_kib,
                    total
                );
            } else {
                s += &format!(
                    "    sync'ed: {pct:.1}% ({}/{})K\n",
                    self.out_of_sync_kib, total
                );
            }
            let eta = self.eta().map(|d| d.as_secs()).unwrap_or(0);
            s += &format!(
                "    finish: {}:{:02}:{:02} speed: {} K/sec\n",
                eta / 3600,
                eta / 60 % 60,
                eta % 60,
                speed
            );
        }
        if let Some(d) = &self.device {
            s += &format!("    device: {d}\n");
        }
        if let Some(n) = &self.note {
            s += &format!("    note: {n}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_proc_drbd() {
        let mut st = Status {
            name: "mfs".into(),
            cstate: "SyncSource".into(),
            primary: true,
            peer_primary: Some(false),
            disk: DiskState::UpToDate,
            peer_disk: Some(DiskState::Inconsistent),
            protocol: 'C',
            sent_kib: 1000,
            received_kib: 0,
            written_kib: 2048,
            read_kib: 10,
            out_of_sync_kib: 7680,
            resync: Some((10240, 512)),
            device: None,
            note: None,
        };
        let t = st.render(true);
        assert!(
            t.starts_with("mfs: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C\n"),
            "{t}"
        );
        assert!(t.contains("oos:7680"));
        assert!(
            t.contains("[=====>..............] sync'ed: 25.0% (7680/10240)K"),
            "{t}"
        );
        assert!(t.contains("finish: 0:00:15 speed: 512 K/sec"), "{t}");
        st.resync = None;
        st.cstate = "Connected".into();
        assert_eq!(st.render(true).lines().count(), 2);
    }
}
