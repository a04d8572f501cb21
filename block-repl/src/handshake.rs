//! What two nodes do once they have exchanged their state at connect: a pure function
//! both sides evaluate on the same facts, reaching mirrored conclusions.

use crate::frame::DiskState;
use crate::gi::{compare, Gi, Verdict};
use crate::policy::{resolve, Policies, Resolution, Side};

/// One side's state as exchanged at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Node name.
    pub node: String,
    /// Generations (the low bit of `current` marks a primary that crashed).
    pub gi: Gi,
    /// Currently primary.
    pub primary: bool,
    /// Disk state.
    pub disk: DiskState,
    /// Dirty blocks in its bitmap.
    pub dirty: u64,
    /// When it became primary while disconnected (0 = did not).
    pub promoted_at: u64,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Same data, nothing to resync.
    InSync,
    /// Resync the union of both bitmaps (or everything when `full`); `source` says
    /// whether this node sends.
    Resync {
        /// This node is the sync source.
        source: bool,
        /// Resync the whole device.
        full: bool,
        /// A split brain was resolved by policy to get here.
        after_split_brain: bool,
    },
    /// Split brain not resolved by policy: stay disconnected, run the hook.
    SplitBrain(String),
    /// Refuse the connection for another reason.
    Refuse(String),
}

fn crashed(g: &Gi) -> bool {
    g.current & 1 != 0
}

/// Decides what the connection means, from this node's point of view.
pub fn plan(p: &Policies, me: &View, peer: &View) -> Plan {
    let verdict = compare(&me.gi, &peer.gi);
    let mut after_sb = false;
    let (source, full) = match verdict {
        Verdict::InSync => {
            if me.dirty == 0 && peer.dirty == 0 {
                return Plan::InSync;
            }
            // Same generation but blocks marked out of sync (a crashed primary's activity
            // log, or a verify): resync them from the primary, else from the crashed one.
            let source = if me.primary != peer.primary {
                me.primary
            } else if crashed(&me.gi) != crashed(&peer.gi) {
                crashed(&me.gi)
            } else {
                me.node < peer.node
            };
            (source, false)
        }
        Verdict::SourceBitmap => (true, false),
        Verdict::SourceFull => (true, true),
        Verdict::TargetBitmap => (false, false),
        Verdict::TargetFull => (false, true),
        Verdict::SplitBrain => {
            let side = |v: &View| Side {
                node: v.node.clone(),
                primary: v.primary,
                changes: v.dirty,
                promoted_at: (v.promoted_at != 0).then_some(v.promoted_at),
            };
            match resolve(p, &side(me), &side(peer)) {
                Resolution::DiscardMine => {
                    after_sb = true;
                    (false, false)
                }
                Resolution::DiscardPeer => {
                    after_sb = true;
                    (true, false)
                }
                Resolution::Disconnect => {
                    return Plan::SplitBrain(format!(
                        "split brain: both nodes changed the data independently ({} has {} changed KiB, {} has {}); \
                         not merged, no policy applies (roles: {} {}, {} {})",
                        me.node,
                        me.dirty * 4,
                        peer.node,
                        peer.dirty * 4,
                        me.node,
                        role(me.primary),
                        peer.node,
                        role(peer.primary)
                    ))
                }
            }
        }
        Verdict::SplitBrainUnrecoverable => {
            return Plan::SplitBrain(
                "unrecoverable split brain: the histories diverged more than one generation ago"
                    .into(),
            )
        }
        Verdict::Unrelated => {
            return Plan::Refuse(format!(
                "{} and {} hold unrelated data (no common generation): refusing to connect",
                me.node, peer.node
            ))
        }
    };
    let (target, target_is_me) = if source { (peer, false) } else { (me, true) };
    if target.primary {
        return Plan::Refuse(format!(
            "{} is Primary but its data is older than {}'s: demote it before connecting",
            target.node,
            if target_is_me { &peer.node } else { &me.node }
        ));
    }
    Plan::Resync {
        source,
        full,
        after_split_brain: after_sb,
    }
}

fn role(p: bool) -> &'static str {
    if p {
        "Primary"
    } else {
        "Secondary"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{After0Pri, After1Pri, After2Pri};

    fn pol(zero: After0Pri) -> Policies {
        Policies {
            zero,
            one: After1Pri::DiscardSecondary,
            two: After2Pri::Disconnect,
        }
    }

    fn view(node: &str, gi: Gi, primary: bool, dirty: u64) -> View {
        View {
            node: node.into(),
            gi,
            primary,
            disk: DiskState::UpToDate,
            dirty,
            promoted_at: 0,
        }
    }

    fn synced() -> (Gi, Gi) {
        let mut a = Gi::new();
        a.new_generation(0x1000, true);
        let mut b = Gi::new();
        b.adopt(&a);
        a.clear_bitmap();
        (a, b)
    }

    /// Both sides always reach mirrored conclusions.
    fn both(p: &Policies, a: &View, b: &View) -> Plan {
        let pa = plan(p, a, b);
        let pb = plan(p, b, a);
        match (&pa, &pb) {
            (
                Plan::Resync {
                    source: s1,
                    full: f1,
                    ..
                },
                Plan::Resync {
                    source: s2,
                    full: f2,
                    ..
                },
            ) => {
                assert_ne!(s1, s2);
                assert_eq!(f1, f2);
            }
            (Plan::InSync, Plan::InSync)
            | (Plan::SplitBrain(_), Plan::SplitBrain(_))
            | (Plan::Refuse(_), Plan::Refuse(_)) => {}
            _ => panic!("not mirrored: {pa:?} vs {pb:?}"),
        }
        pa
    }

    #[test]
    fn failover_then_reconnect_resyncs_the_new_primarys_bitmap() {
        let p = pol(After0Pri::Disconnect);
        let (mut old, mut new) = synced();
        // The old primary crashed (flag), the secondary was promoted while disconnected.
        old.current |= 1;
        new.new_generation(0x2000, true);
        let a = view("node1", old, false, 7);
        let b = view("node2", new, true, 100);
        assert_eq!(
            both(&p, &b, &a),
            Plan::Resync {
                source: true,
                full: false,
                after_split_brain: false
            }
        );
    }

    #[test]
    fn crashed_primary_with_same_generation_resyncs_its_activity_log() {
        let p = pol(After0Pri::Disconnect);
        let (mut a, b) = synced();
        a.current |= 1;
        let va = view("node2", a, false, 32);
        let vb = view("node1", b, false, 0);
        assert!(matches!(
            both(&p, &va, &vb),
            Plan::Resync { source: true, .. }
        ));
        assert_eq!(
            both(&p, &view("n1", b, false, 0), &view("n2", b, false, 0)),
            Plan::InSync
        );
    }

    #[test]
    fn split_brain_policies() {
        let (mut a, mut b) = synced();
        a.new_generation(0xa000, true);
        b.new_generation(0xb000, true);
        let va = view("node1", a, false, 10);
        let vb0 = view("node2", b, false, 0);
        let vb5 = view("node2", b, false, 5);
        // discard-zero-changes: the side without changes loses.
        let p = pol(After0Pri::DiscardZeroChanges);
        assert_eq!(
            both(&p, &va, &vb0),
            Plan::Resync {
                source: true,
                full: false,
                after_split_brain: true
            }
        );
        assert!(matches!(both(&p, &va, &vb5), Plan::SplitBrain(_)));
        // disconnect: never merged.
        assert!(matches!(
            both(&pol(After0Pri::Disconnect), &va, &vb0),
            Plan::SplitBrain(_)
        ));
        // Two primaries: disconnect.
        let pa = view("node1", a, true, 10);
        let pb = view("node2", b, true, 0);
        assert!(matches!(both(&p, &pa, &pb), Plan::SplitBrain(_)));
    }

    #[test]
    fn a_primary_never_becomes_sync_target_and_unrelated_data_is_refused() {
        let p = pol(After0Pri::Disconnect);
        let (a, mut b) = synced();
        b.new_generation(0x3000, false);
        // a is primary with the older generation, b has newer data.
        assert!(matches!(
            both(&p, &view("n1", a, true, 0), &view("n2", b, false, 3)),
            Plan::Refuse(_)
        ));
        let mut x = Gi::new();
        x.new_generation(0x7000, true);
        let mut y = Gi::new();
        y.new_generation(0x9000, true);
        assert!(matches!(
            both(&p, &view("n1", x, false, 0), &view("n2", y, false, 0)),
            Plan::Refuse(_)
        ));
        // A just-created peer gets everything.
        assert_eq!(
            both(
                &p,
                &view("n1", x, true, 0),
                &view("n2", Gi::new(), false, 0)
            ),
            Plan::Resync {
                source: true,
                full: true,
                after_split_brain: false
            }
        );
    }
}
