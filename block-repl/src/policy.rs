//! After-split-brain policies (DRBD's `after-sb-0pri`, `-1pri`, `-2pri`), as a pure
//! function both nodes evaluate; they always reach mirrored conclusions, so a split brain
//! is either resolved the same way on both sides or left disconnected on both.

use std::str::FromStr;

/// Policy when neither node is primary at detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After0Pri {
    /// Stay disconnected; the operator decides.
    Disconnect,
    /// The node that wrote nothing since the split loses; both wrote → disconnect.
    DiscardZeroChanges,
    /// The node with fewer changed blocks loses (ties broken by node name).
    DiscardLeastChanges,
    /// The node that became primary last loses (ties: least changes).
    DiscardYoungerPrimary,
    /// The node that became primary first loses (ties: least changes).
    DiscardOlderPrimary,
    /// This node always loses.
    DiscardNode(String),
}

/// Policy when exactly one node is primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After1Pri {
    /// Stay disconnected.
    Disconnect,
    /// Apply the 0-primary policy; accept only if it discards the secondary.
    Consensus,
    /// The secondary loses.
    DiscardSecondary,
}

/// Policy when both nodes are primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After2Pri {
    /// Stay disconnected.
    Disconnect,
}

fn bad(what: &str, s: &str, allowed: &str) -> String {
    format!("'{s}' is not a valid {what} policy (expected {allowed})")
}

impl FromStr for After0Pri {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disconnect" => After0Pri::Disconnect,
            "discard-zero-changes" => After0Pri::DiscardZeroChanges,
            "discard-least-changes" => After0Pri::DiscardLeastChanges,
            "discard-younger-primary" => After0Pri::DiscardYoungerPrimary,
            "discard-older-primary" => After0Pri::DiscardOlderPrimary,
            _ => match s.strip_prefix("discard-node-") {
                Some(n) if !n.is_empty() => After0Pri::DiscardNode(n.to_string()),
                _ => return Err(bad("after_sb_0pri", s, "disconnect, discard-zero-changes, discard-least-changes, discard-younger-primary, discard-older-primary or discard-node-NAME")),
            },
        })
    }
}

impl FromStr for After1Pri {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disconnect" => Ok(After1Pri::Disconnect),
            "consensus" => Ok(After1Pri::Consensus),
            "discard-secondary" => Ok(After1Pri::DiscardSecondary),
            _ => Err(bad(
                "after_sb_1pri",
                s,
                "disconnect, consensus or discard-secondary",
            )),
        }
    }
}

impl FromStr for After2Pri {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disconnect" => Ok(After2Pri::Disconnect),
            _ => Err(bad("after_sb_2pri", s, "disconnect")),
        }
    }
}

/// What a node knows about one side of the split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// Node name.
    pub node: String,
    /// Currently primary.
    pub primary: bool,
    /// Blocks changed since the split (dirty bits).
    pub changes: u64,
    /// When it became primary during the split (any monotonic stamp both sides exchange);
    /// None if it never did.
    pub promoted_at: Option<u64>,
}

/// The outcome, seen from the node evaluating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Leave both disconnected (run the split-brain hook).
    Disconnect,
    /// Our changes are discarded: we become sync target.
    DiscardMine,
    /// The peer's changes are discarded: we become sync source.
    DiscardPeer,
}

impl Resolution {
    /// The same outcome seen from the peer.
    pub fn mirrored(self) -> Resolution {
        match self {
            Resolution::DiscardMine => Resolution::DiscardPeer,
            Resolution::DiscardPeer => Resolution::DiscardMine,
            Resolution::Disconnect => Resolution::Disconnect,
        }
    }
}

/// Both sides' policies, as configured (they must be the same on both nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    /// after_sb_0pri.
    pub zero: After0Pri,
    /// after_sb_1pri.
    pub one: After1Pri,
    /// after_sb_2pri.
    pub two: After2Pri,
}

fn by_name(me: &Side, peer: &Side) -> Resolution {
    // Deterministic tie-break both sides compute the same way: the larger name loses.
    match me.node.cmp(&peer.node) {
        std::cmp::Ordering::Greater => Resolution::DiscardMine,
        std::cmp::Ordering::Less => Resolution::DiscardPeer,
        std::cmp::Ordering::Equal => Resolution::Disconnect,
    }
}

fn least_changes(me: &Side, peer: &Side) -> Resolution {
    match me.changes.cmp(&peer.changes) {
        std::cmp::Ordering::Less => Resolution::DiscardMine,
        std::cmp::Ordering::Greater => Resolution::DiscardPeer,
        std::cmp::Ordering::Equal => by_name(me, peer),
    }
}

fn zero_pri(p: &After0Pri, me: &Side, peer: &Side) -> Resolution {
    match p {
        After0Pri::Disconnect => Resolution::Disconnect,
        After0Pri::DiscardZeroChanges => match (me.changes, peer.changes) {
            (0, 0) => by_name(me, peer),
            (0, _) => Resolution::DiscardMine,
            (_, 0) => Resolution::DiscardPeer,
            _ => Resolution::Disconnect,
        },
        After0Pri::DiscardLeastChanges => least_changes(me, peer),
        After0Pri::DiscardYoungerPrimary | After0Pri::DiscardOlderPrimary => {
            let younger_loses = *p == After0Pri::DiscardYoungerPrimary;
            match (me.promoted_at, peer.promoted_at) {
                (Some(a), Some(b)) if a != b => {
                    if (a > b) == younger_loses {
                        Resolution::DiscardMine
                    } else {
                        Resolution::DiscardPeer
                    }
                }
                _ => least_changes(me, peer),
            }
        }
        After0Pri::DiscardNode(n) => {
            if &me.node == n && &peer.node != n {
                Resolution::DiscardMine
            } else if &peer.node == n && &me.node != n {
                Resolution::DiscardPeer
            } else {
                Resolution::Disconnect
            }
        }
    }
}

/// Decides a detected split brain according to the policies.
pub fn resolve(p: &Policies, me: &Side, peer: &Side) -> Resolution {
    match (me.primary, peer.primary) {
        (false, false) => zero_pri(&p.zero, me, peer),
        (true, true) => match p.two {
            After2Pri::Disconnect => Resolution::Disconnect,
        },
        (mine_primary, _) => {
            let discard_secondary = if mine_primary {
                Resolution::DiscardPeer
            } else {
                Resolution::DiscardMine
            };
            match p.one {
                After1Pri::Disconnect => Resolution::Disconnect,
                After1Pri::DiscardSecondary => discard_secondary,
                After1Pri::Consensus => {
                    if zero_pri(&p.zero, me, peer) == discard_secondary {
                        discard_secondary
                    } else {
                        Resolution::Disconnect
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn side(node: &str, primary: bool, changes: u64, promoted_at: Option<u64>) -> Side {
        Side {
            node: node.into(),
            primary,
            changes,
            promoted_at,
        }
    }

    fn pol(zero: &str, one: &str) -> Policies {
        Policies {
            zero: zero.parse().unwrap(),
            one: one.parse().unwrap(),
            two: After2Pri::Disconnect,
        }
    }

    #[test]
    fn the_usual_safe_setting() {
        let p = pol("discard-zero-changes", "discard-secondary");
        // One side unchanged: it loses, resolved by itself.
        assert_eq!(
            resolve(
                &p,
                &side("a", false, 0, None),
                &side("b", false, 10, Some(1))
            ),
            Resolution::DiscardMine
        );
        // Both changed: never merged silently.
        assert_eq!(
            resolve(
                &p,
                &side("a", false, 5, Some(1)),
                &side("b", false, 10, Some(2))
            ),
            Resolution::Disconnect
        );
        // One primary: the secondary's changes go.
        assert_eq!(
            resolve(
                &p,
                &side("a", true, 5, Some(1)),
                &side("b", false, 10, Some(2))
            ),
            Resolution::DiscardPeer
        );
        // Two primaries: disconnect.
        assert_eq!(
            resolve(
                &p,
                &side("a", true, 5, Some(1)),
                &side("b", true, 10, Some(2))
            ),
            Resolution::Disconnect
        );
    }

    #[test]
    fn other_policies_and_parsing() {
        let p = pol("discard-younger-primary", "consensus");
        assert_eq!(
            resolve(
                &p,
                &side("a", false, 5, Some(1)),
                &side("b", false, 1, Some(2))
            ),
            Resolution::DiscardPeer
        );
        // consensus: 0pri says discard the younger b, which is the secondary here → accepted.
        assert_eq!(
            resolve(
                &p,
                &side("a", true, 5, Some(1)),
                &side("b", false, 1, Some(2))
            ),
            Resolution::DiscardPeer
        );
        // ... and if 0pri would discard the primary, disconnect.
        assert_eq!(
            resolve(
                &p,
                &side("a", true, 5, Some(3)),
                &side("b", false, 1, Some(2))
            ),
            Resolution::Disconnect
        );
        let p = pol("discard-node-b", "disconnect");
        assert_eq!(
            resolve(&p, &side("a", false, 5, None), &side("b", false, 1, None)),
            Resolution::DiscardPeer
        );
        assert!("discard-node-".parse::<After0Pri>().is_err());
        assert_eq!(
            "merge".parse::<After1Pri>().unwrap_err(),
            "'merge' is not a valid after_sb_1pri policy (expected disconnect, consensus or discard-secondary)"
        );
    }

    fn any_zero() -> impl Strategy<Value = After0Pri> {
        prop_oneof![
            Just(After0Pri::Disconnect),
            Just(After0Pri::DiscardZeroChanges),
            Just(After0Pri::DiscardLeastChanges),
            Just(After0Pri::DiscardYoungerPrimary),
            Just(After0Pri::DiscardOlderPrimary),
            prop_oneof![Just("a"), Just("b")].prop_map(|n| After0Pri::DiscardNode(n.to_string())),
        ]
    }

    proptest! {
        #[test]
        fn both_nodes_reach_mirrored_conclusions(
            zero in any_zero(), one in prop_oneof![Just(After1Pri::Disconnect), Just(After1Pri::Consensus), Just(After1Pri::DiscardSecondary)],
            pa: bool, pb: bool, ca in 0u64..3, cb in 0u64..3, ta in proptest::option::of(0u64..3), tb in proptest::option::of(0u64..3),
        ) {
            let p = Policies { zero, one, two: After2Pri::Disconnect };
            let a = side("a", pa, ca, ta);
            let b = side("b", pb, cb, tb);
            prop_assert_eq!(resolve(&p, &a, &b), resolve(&p, &b, &a).mirrored());
            // A primary's data is never discarded automatically unless the policy says
            // so for one primary (discard-secondary / consensus discard the other side).
            if pa && pb { prop_assert_eq!(resolve(&p, &a, &b), Resolution::Disconnect); }
        }
    }
}
