//! The VRRP state machine of one instance, as a pure function of (state, event, now).
//!
//! No sockets, no clocks: the shell feeds [`Event`]s with the current time and carries
//! out the returned [`Action`]s, then calls [`Instance::next_deadline`] to know when to
//! deliver the next [`Event::Tick`]. RFC 3768 §6.4 / RFC 5798 §6.4 are followed, with
//! keepalived's meaning of preempt, nopreempt and preempt_delay, plus three additions:
//! a master that hears a lower-priority master (a healed split brain) re-announces
//! itself with gratuitous ARPs; operator maintenance; and operator switchover.

use crate::packet::{Advert, Version};
use std::net::IpAddr;
use std::time::Duration;

/// Instance state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started yet.
    Init,
    /// Watching the master.
    Backup,
    /// Owning the virtual addresses.
    Master,
    /// A tracked script or interface failed (weight 0), or the interface is down.
    Fault,
    /// Shut down.
    Stopped,
}

impl serde::Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl State {
    /// Upper-case name as keepalived prints it (`MASTER`, `BACKUP`, ...).
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
            State::Stopped => "STOP",
        }
    }
}

/// Why a transition happened (reported in status, notify and email).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Reason {
    /// Instance start.
    Startup,
    /// No advert from the master within Master_Down_Interval.
    MasterTimeout,
    /// The master sent priority 0 (leaving).
    MasterLeft,
    /// An advert with higher priority (or equal priority, higher address).
    HigherPriorityPeer(IpAddr, u8),
    /// Preempting a lower-priority master.
    Preempt(IpAddr, u8),
    /// A tracked script or interface failed.
    TrackFailed,
    /// Tracked objects are healthy again.
    TrackRecovered,
    /// Operator asked to hand MASTER to the peer.
    OperatorSwitchover,
    /// Operator maintenance mode.
    Maintenance,
    /// The daemon is stopping.
    Shutdown,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Startup => write!(f, "startup"),
            Reason::MasterTimeout => {
                write!(f, "master timeout (no advert within master down interval)")
            }
            Reason::MasterLeft => write!(f, "master sent priority 0 (leaving)"),
            Reason::HigherPriorityPeer(a, p) => write!(f, "peer {a} with higher priority {p}"),
            Reason::Preempt(a, p) => {
                write!(f, "preempting lower-priority master {a} (priority {p})")
            }
            Reason::TrackFailed => write!(f, "track script or interface failed"),
            Reason::TrackRecovered => write!(f, "tracked objects recovered"),
            Reason::OperatorSwitchover => write!(f, "operator switchover"),
            Reason::Maintenance => write!(f, "operator maintenance"),
            Reason::Shutdown => write!(f, "shutdown"),
        }
    }
}

/// Static settings of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Protocol version.
    pub version: Version,
    /// Virtual router id.
    pub vrid: u8,
    /// Configured priority (1..=255).
    pub priority: u8,
    /// Advertisement interval in centiseconds.
    pub advert_int_cs: u16,
    /// Preempt lower-priority masters (`nopreempt = false`).
    pub preempt: bool,
    /// Wait this long in BACKUP before preempting.
    pub preempt_delay: Duration,
    /// v2 PASS authentication.
    pub auth: Option<[u8; 8]>,
    /// Our own address on the interface: the primary IPv4 address, or the IPv6
    /// link-local address (advert source and tie-break on equal priority).
    pub local_addr: IpAddr,
    /// Virtual addresses.
    pub vips: Vec<IpAddr>,
}

/// Inputs of the state machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Start the instance.
    Startup,
    /// Stop the instance (sends priority 0 when master).
    Shutdown,
    /// A valid advert for our VRID (already checked: TTL, auth, checksum, length).
    Advert {
        /// Sender address.
        src: IpAddr,
        /// The advert.
        advert: Advert,
    },
    /// Time passed; deliver at [`Instance::next_deadline`].
    Tick,
    /// Sum of tracked weights changed; `fault` = a weight-0 tracker is failing.
    Track {
        /// Priority adjustment (sum of weights of failing/succeeding trackers).
        delta: i32,
        /// A weight-0 tracker (or a tracked interface) is down.
        fault: bool,
    },
    /// Operator maintenance on/off.
    Maintenance(bool),
    /// Operator switchover: hand MASTER to the peer.
    Switchover,
    /// An ha-agent backup announced itself (see [`crate::hello`]).
    PeerHello {
        /// Its address.
        src: IpAddr,
        /// Its priority.
        priority: u8,
    },
}

/// Outputs the shell must carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send an advert with this priority.
    SendAdvert {
        /// Priority to advertise (0 when leaving).
        priority: u8,
    },
    /// Add the virtual addresses to the interface.
    AddVips,
    /// Remove the virtual addresses.
    RemoveVips,
    /// Send gratuitous ARPs for every VIP (garp_repeat times).
    SendGarp,
    /// A state change happened: run notify hooks and send email.
    Transition {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Reason,
    },
}

/// Why a switchover cannot be done now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchoverRefused {
    /// Only a master can hand over.
    #[error("instance is {0}, not MASTER")]
    NotMaster(&'static str),
    /// No peer advert was heard recently.
    #[error("no peer heard in the last {0:?}; refusing to give up MASTER")]
    NoPeer(Duration),
    /// The peer's priority makes it unable to take over.
    #[error("peer {0} advertises priority {1}, which cannot take over")]
    PeerUnusable(IpAddr, u8),
}

/// The last advert heard from another router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Peer {
    /// Its address.
    pub addr: IpAddr,
    /// Its advertised priority.
    pub priority: u8,
    /// When it was heard (time since the clock's origin).
    pub at: Duration,
}

/// One VRRP instance.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Settings.
    pub params: Params,
    /// Current state.
    pub state: State,
    track_delta: i32,
    track_fault: bool,
    maintenance: bool,
    /// After an operator switchover we behave as nopreempt until we are master again.
    yielded: bool,
    master_adver_int_cs: u16,
    master_down_at: Option<Duration>,
    adver_at: Option<Duration>,
    preempt_since: Option<Duration>,
    /// The master-down timer runs because the master sent priority 0 (it left), so a
    /// takeover is reported as [`Reason::MasterLeft`] rather than a timeout.
    master_left: bool,
    /// Last advert heard from another router.
    pub peer: Option<Peer>,
    /// Address of the current master (ourselves when master).
    pub current_master: Option<IpAddr>,
    /// Last transition: (from, to, reason, when).
    pub last_transition: Option<(State, State, Reason, Duration)>,
}

fn cs(d: u64) -> Duration {
    Duration::from_millis(d * 10)
}

impl Instance {
    /// A new instance in INIT.
    pub fn new(params: Params) -> Self {
        let ai = params.advert_int_cs;
        Instance {
            params,
            state: State::Init,
            track_delta: 0,
            track_fault: false,
            maintenance: false,
            yielded: false,
            master_adver_int_cs: ai,
            master_down_at: None,
            adver_at: None,
            preempt_since: None,
            master_left: false,
            peer: None,
            current_master: None,
            last_transition: None,
        }
    }

    /// Priority after tracker weights (1..=254 unless configured 255; 255 is never
    /// lowered, as for an address owner).
    pub fn effective_priority(&self) -> u8 {
        if self.params.priority == 255 {
            return 255;
        }
        (self.params.priority as i32 + self.track_delta).clamp(1, 254) as u8
    }

    /// The advertisement interval that times the master: ours for v2, the master's
    /// (learned from its adverts) for v3.
    fn timing_interval_us(&self) -> u64 {
        let cs = match self.params.version {
            Version::V2 => self.params.advert_int_cs,
            Version::V3 => self.master_adver_int_cs,
        };
        cs as u64 * 10_000
    }

    /// Skew_Time = ((256 - priority) × interval) / 256.
    pub fn skew(&self) -> Duration {
        Duration::from_micros(
            (256 - self.effective_priority() as u64) * self.timing_interval_us() / 256,
        )
    }

    /// Master_Down_Interval = 3 × interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        Duration::from_micros(3 * self.timing_interval_us()) + self.skew()
    }

    /// When the next [`Event::Tick`] is due.
    pub fn next_deadline(&self) -> Option<Duration> {
        [self.master_down_at, self.adver_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a peer was heard within three advert intervals.
    pub fn peer_recent(&self, now: Duration) -> Option<Peer> {
        let window = cs(3 * self.params.advert_int_cs.max(self.master_adver_int_cs) as u64 + 100);
        self.peer.filter(|p| now.saturating_sub(p.at) <= window)
    }

    /// Checks whether an operator switchover can be done now.
    pub fn can_switchover(&self, now: Duration) -> Result<Peer, SwitchoverRefused> {
        if self.state != State::Master {
            return Err(SwitchoverRefused::NotMaster(self.state.name()));
        }
        let window = cs(3 * self.params.advert_int_cs as u64 + 100);
        let p = self
            .peer_recent(now)
            .ok_or(SwitchoverRefused::NoPeer(window))?;
        if p.priority == 0 {
            return Err(SwitchoverRefused::PeerUnusable(p.addr, p.priority));
        }
        Ok(p)
    }

    fn go(&mut self, to: State, reason: Reason, now: Duration, out: &mut Vec<Action>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.master_left = false;
        match to {
            State::Master => {
                out.push(Action::SendAdvert {
                    priority: self.effective_priority(),
                });
                out.push(Action::AddVips);
                out.push(Action::SendGarp);
                self.adver_at = Some(now + cs(self.params.advert_int_cs as u64));
                self.master_down_at = None;
                self.current_master = Some(self.params.local_addr);
                self.yielded = false;
            }
            State::Backup => {
                if from == State::Master {
                    out.push(Action::RemoveVips);
                }
                self.adver_at = None;
                self.master_down_at = Some(now + self.master_down_interval());
                self.preempt_since = None;
                if from != State::Master {
                    self.current_master = None;
                }
            }
            State::Fault | State::Stopped => {
                if from == State::Master {
                    out.push(Action::SendAdvert { priority: 0 });
                    out.push(Action::RemoveVips);
                }
                self.adver_at = None;
                self.master_down_at = None;
                self.current_master = None;
            }
            State::Init => {}
        }
        self.state = to;
        self.last_transition = Some((from, to, reason.clone(), now));
        out.push(Action::Transition { from, to, reason });
    }

    /// Feeds one event at time `now`; returns the actions to carry out.
    pub fn handle(&mut self, ev: Event, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            Event::Startup => {
                // A leftover VIP (for example after kill -9) is removed first.
                out.push(Action::RemoveVips);
                if self.track_fault {
                    self.go(State::Fault, Reason::TrackFailed, now, &mut out);
                } else if self.params.priority == 255 && !self.maintenance {
                    self.go(State::Master, Reason::Startup, now, &mut out);
                } else {
                    self.go(State::Backup, Reason::Startup, now, &mut out);
                }
            }
            Event::Shutdown => self.go(State::Stopped, Reason::Shutdown, now, &mut out),
            Event::Tick => self.tick(now, &mut out),
            Event::Advert { src, advert } => self.advert(src, advert, now, &mut out),
            Event::Track { delta, fault } => {
                let was_fault = self.track_fault;
                self.track_delta = delta;
                self.track_fault = fault;
                match (was_fault, fault, self.state) {
                    (false, true, State::Init | State::Stopped) | (true, true, _) => {}
                    (false, true, _) => self.go(State::Fault, Reason::TrackFailed, now, &mut out),
                    (true, false, State::Fault) => {
                        self.go(State::Backup, Reason::TrackRecovered, now, &mut out)
                    }
                    _ => {
                        // Priority changed: a master keeps its adverts current at the
                        // next interval; a backup recomputes its timer on the next advert.
                    }
                }
            }
            Event::Maintenance(on) => {
                self.maintenance = on;
                if on && self.state == State::Master {
                    out.push(Action::SendAdvert { priority: 0 });
                    self.go(State::Backup, Reason::Maintenance, now, &mut out);
                }
            }
            Event::PeerHello { src, priority } => {
                if src != self.params.local_addr {
                    self.peer = Some(Peer {
                        addr: src,
                        priority,
                        at: now,
                    });
                }
            }
            Event::Switchover => {
                if self.can_switchover(now).is_ok() {
                    self.yielded = true;
                    out.push(Action::SendAdvert { priority: 0 });
                    self.go(State::Backup, Reason::OperatorSwitchover, now, &mut out);
                }
            }
        }
        out
    }

    fn tick(&mut self, now: Duration, out: &mut Vec<Action>) {
        match self.state {
            State::Master if self.adver_at.is_some_and(|t| now >= t) => {
                out.push(Action::SendAdvert {
                    priority: self.effective_priority(),
                });
                self.adver_at = Some(now + cs(self.params.advert_int_cs as u64));
            }
            State::Backup if self.master_down_at.is_some_and(|t| now >= t) => {
                if self.maintenance {
                    self.master_down_at = Some(now + self.master_down_interval());
                } else if self.master_left {
                    self.go(State::Master, Reason::MasterLeft, now, out);
                } else {
                    self.go(State::Master, Reason::MasterTimeout, now, out);
                }
            }
            _ => {}
        }
    }

    fn advert(&mut self, src: IpAddr, a: Advert, now: Duration, out: &mut Vec<Action>) {
        if src == self.params.local_addr {
            return;
        }
        self.peer = Some(Peer {
            addr: src,
            priority: a.priority,
            at: now,
        });
        let mine = self.effective_priority();
        match self.state {
            State::Backup => {
                if a.priority == 0 {
                    // RFC: Master_Down_Timer = Skew_Time.
                    self.master_down_at = Some(now + self.skew());
                    self.current_master = None;
                    self.master_left = true;
                    return;
                }
                self.master_left = false;
                let preempt = self.params.preempt && !self.yielded && !self.maintenance;
                if !preempt || a.priority >= mine {
                    if self.params.version == Version::V3 {
                        self.master_adver_int_cs = a.interval_cs.max(1);
                    }
                    self.master_down_at = Some(now + self.master_down_interval());
                    self.current_master = Some(src);
                    self.preempt_since = None;
                } else if !self.params.preempt_delay.is_zero() {
                    // Lower-priority master: preempt, but only after preempt_delay.
                    let since = *self.preempt_since.get_or_insert(now);
                    if now.saturating_sub(since) < self.params.preempt_delay {
                        self.master_down_at = Some(now + self.master_down_interval());
                        self.current_master = Some(src);
                    }
                } else {
                    // Discard: the master-down timer will make us master.
                    self.current_master = Some(src);
                }
            }
            State::Master => {
                if a.priority == 0 {
                    out.push(Action::SendAdvert { priority: mine });
                    self.adver_at = Some(now + cs(self.params.advert_int_cs as u64));
                } else if a.priority > mine || (a.priority == mine && src > self.params.local_addr)
                {
                    if self.params.version == Version::V3 {
                        self.master_adver_int_cs = a.interval_cs.max(1);
                    }
                    self.go(
                        State::Backup,
                        Reason::HigherPriorityPeer(src, a.priority),
                        now,
                        out,
                    );
                    self.current_master = Some(src);
                } else {
                    // Another master with lower priority: a split brain just healed.
                    // Re-announce so every client learns our MAC now.
                    out.push(Action::SendAdvert { priority: mine });
                    out.push(Action::SendGarp);
                    self.adver_at = Some(now + cs(self.params.advert_int_cs as u64));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{Ipv4Addr, Ipv6Addr};

    const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn params(version: Version, prio: u8, ai_cs: u16, preempt: bool) -> Params {
        Params {
            version,
            vrid: 51,
            priority: prio,
            advert_int_cs: ai_cs,
            preempt,
            preempt_delay: Duration::ZERO,
            auth: None,
            local_addr: ME,
            vips: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
        }
    }

    fn adv(version: Version, prio: u8, ai_cs: u16) -> Event {
        Event::Advert {
            src: PEER,
            advert: Advert {
                version,
                vrid: 51,
                priority: prio,
                interval_cs: ai_cs,
                auth: None,
                addrs: vec![],
            },
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn states(actions: &[Action]) -> Vec<(State, State)> {
        actions
            .iter()
            .filter_map(|a| {
                if let Action::Transition { from, to, .. } = a {
                    Some((*from, *to))
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn timers_match_rfc_and_keepalived_measurements() {
        // prio 100, v2, 1 s: 3 s + 156/256 s = 3.609 s (keepalived: 3609.6-3610.4 ms measured)
        let i = Instance::new(params(Version::V2, 100, 100, true));
        assert_eq!(i.master_down_interval(), Duration::from_micros(3_609_375));
        assert_eq!(i.skew(), Duration::from_micros(609_375));
        // v3 at 100 ms: 300 ms + 15.6 ms... = 360.9 ms (keepalived: 361.2-363.6 ms measured)
        let i = Instance::new(params(Version::V3, 100, 10, true));
        assert_eq!(i.master_down_interval(), Duration::from_micros(360_937));
        assert_eq!(i.skew(), Duration::from_micros(60_937));
    }

    #[test]
    fn backup_takes_over_after_master_down_interval() {
        let mut i = Instance::new(params(Version::V2, 100, 100, true));
        let a = i.handle(Event::Startup, ms(0));
        assert_eq!(states(&a), vec![(State::Init, State::Backup)]);
        assert_eq!(a[0], Action::RemoveVips);
        i.handle(adv(Version::V2, 150, 100), ms(500));
        assert_eq!(i.next_deadline(), Some(ms(500) + i.master_down_interval()));
        assert!(i.handle(Event::Tick, ms(4100)).is_empty());
        let a = i.handle(Event::Tick, ms(4110));
        assert_eq!(states(&a), vec![(State::Backup, State::Master)]);
        assert_eq!(
            &a[..3],
            &[
                Action::SendAdvert { priority: 100 },
                Action::AddVips,
                Action::SendGarp
            ]
        );
        // Adverts every interval while master.
        let a = i.handle(Event::Tick, ms(5110));
        assert_eq!(a, vec![Action::SendAdvert { priority: 100 }]);
    }

    #[test]
    fn priority_zero_means_takeover_after_skew() {
        let mut i = Instance::new(params(Version::V3, 100, 10, true));
        i.handle(Event::Startup, ms(0));
        i.handle(adv(Version::V3, 150, 10), ms(100));
        i.handle(adv(Version::V3, 0, 10), ms(150));
        assert_eq!(
            i.next_deadline(),
            Some(ms(150) + Duration::from_micros(60_937))
        );
        assert!(i.handle(Event::Tick, ms(210)).is_empty());
        let a = i.handle(Event::Tick, ms(211));
        assert_eq!(states(&a), vec![(State::Backup, State::Master)]);
        assert!(
            a.contains(&Action::Transition {
                from: State::Backup,
                to: State::Master,
                reason: Reason::MasterLeft
            }),
            "{a:?}"
        );
    }

    #[test]
    fn graceful_stop_sends_priority_zero_and_removes_vips() {
        let mut i = Instance::new(params(Version::V2, 255, 100, true));
        assert_eq!(
            states(&i.handle(Event::Startup, ms(0))),
            vec![(State::Init, State::Master)]
        );
        let a = i.handle(Event::Shutdown, ms(10));
        assert_eq!(
            &a[..2],
            &[Action::SendAdvert { priority: 0 }, Action::RemoveVips]
        );
        assert_eq!(i.state, State::Stopped);
    }

    #[test]
    fn preempt_and_nopreempt() {
        // preempt: lower-priority master's adverts are ignored, so we take over.
        let mut i = Instance::new(params(Version::V2, 150, 100, true));
        i.handle(Event::Startup, ms(0));
        for t in (0..4000).step_by(1000) {
            i.handle(adv(Version::V2, 100, 100), ms(t));
        }
        assert_eq!(
            states(&i.handle(Event::Tick, ms(3500))),
            vec![(State::Backup, State::Master)]
        );
        // nopreempt: the lower-priority master keeps the VIP as long as it advertises.
        let mut i = Instance::new(params(Version::V2, 150, 100, false));
        i.handle(Event::Startup, ms(0));
        for t in (0..20_000).step_by(1000) {
            i.handle(adv(Version::V2, 100, 100), ms(t));
            assert!(i.handle(Event::Tick, ms(t + 999)).is_empty());
        }
        assert_eq!(i.state, State::Backup);
    }

    #[test]
    fn preempt_delay_holds_back_then_preempts() {
        let mut p = params(Version::V2, 150, 100, true);
        p.preempt_delay = Duration::from_secs(10);
        let mut i = Instance::new(p);
        i.handle(Event::Startup, ms(0));
        for t in (0..10_000).step_by(1000) {
            i.handle(adv(Version::V2, 100, 100), ms(t));
            assert_eq!(i.state, State::Backup);
            assert!(
                i.handle(Event::Tick, ms(t + 999)).is_empty(),
                "preempted before the delay at {t}"
            );
        }
        for t in (10_000..14_000).step_by(1000) {
            i.handle(adv(Version::V2, 100, 100), ms(t));
            i.handle(Event::Tick, ms(t + 999));
        }
        assert_eq!(i.state, State::Master);
    }

    #[test]
    fn master_yields_to_higher_priority_and_reannounces_on_split_brain_heal() {
        let mut i = Instance::new(params(Version::V2, 100, 100, true));
        i.handle(Event::Startup, ms(0));
        i.handle(Event::Tick, ms(3610));
        assert_eq!(i.state, State::Master);
        // A lower-priority master appears (split brain healed): advert + GARP at once.
        let a = i.handle(adv(Version::V2, 50, 100), ms(4000));
        assert_eq!(
            a,
            vec![Action::SendAdvert { priority: 100 }, Action::SendGarp]
        );
        // Equal priority, higher address wins.
        let a = i.handle(adv(Version::V2, 100, 100), ms(4100));
        assert_eq!(states(&a), vec![(State::Master, State::Backup)]);
        assert_eq!(a[0], Action::RemoveVips);
        assert_eq!(i.current_master, Some(PEER));
    }

    #[test]
    fn track_weight_and_fault() {
        let mut i = Instance::new(params(Version::V2, 150, 100, true));
        i.handle(Event::Startup, ms(0));
        i.handle(Event::Tick, ms(3500));
        assert_eq!(i.state, State::Master);
        i.handle(
            Event::Track {
                delta: -60,
                fault: false,
            },
            ms(4000),
        );
        assert_eq!(i.effective_priority(), 90);
        // The peer at 100 now wins.
        let a = i.handle(adv(Version::V2, 100, 100), ms(4100));
        assert_eq!(states(&a), vec![(State::Master, State::Backup)]);
        let a = i.handle(
            Event::Track {
                delta: 0,
                fault: true,
            },
            ms(5000),
        );
        assert_eq!(states(&a), vec![(State::Backup, State::Fault)]);
        let a = i.handle(
            Event::Track {
                delta: 0,
                fault: false,
            },
            ms(6000),
        );
        assert_eq!(states(&a), vec![(State::Fault, State::Backup)]);
    }

    #[test]
    fn switchover_needs_a_live_peer_and_holds_us_back() {
        let mut i = Instance::new(params(Version::V2, 150, 100, true));
        i.handle(Event::Startup, ms(0));
        i.handle(Event::Tick, ms(3500));
        assert_eq!(
            i.can_switchover(ms(3600)),
            Err(SwitchoverRefused::NoPeer(ms(4000)))
        );
        assert!(i.handle(Event::Switchover, ms(3600)).is_empty());
        // The backup peer announces itself with a hello (VRRP backups send no adverts).
        i.handle(
            Event::PeerHello {
                src: PEER,
                priority: 100,
            },
            ms(3700),
        );
        let a = i.handle(Event::Switchover, ms(3800));
        assert_eq!(a[0], Action::SendAdvert { priority: 0 });
        assert_eq!(states(&a), vec![(State::Master, State::Backup)]);
        // The peer takes over; we do not preempt it back although our priority is higher.
        for t in (4000..20_000).step_by(1000) {
            i.handle(adv(Version::V2, 100, 100), ms(t));
            i.handle(Event::Tick, ms(t + 999));
        }
        assert_eq!(i.state, State::Backup);
        // If the peer dies we do take over again.
        i.handle(Event::Tick, ms(24_000));
        assert_eq!(i.state, State::Master);
    }

    #[test]
    fn maintenance_keeps_backup() {
        let mut i = Instance::new(params(Version::V2, 150, 100, true));
        i.handle(Event::Startup, ms(0));
        i.handle(Event::Tick, ms(3500));
        let a = i.handle(Event::Maintenance(true), ms(4000));
        assert_eq!(a[0], Action::SendAdvert { priority: 0 });
        for t in (5000..30_000).step_by(1000) {
            i.handle(Event::Tick, ms(t));
        }
        assert_eq!(i.state, State::Backup);
        i.handle(Event::Maintenance(false), ms(30_000));
        i.handle(Event::Tick, ms(30_500));
        i.handle(Event::Tick, ms(34_000));
        assert_eq!(i.state, State::Master);
    }

    #[test]
    fn ipv6_tie_break_compares_link_local_addresses() {
        // Equal priority: the higher (link-local) address wins, as with IPv4.
        let me = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1));
        let peer = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 2));
        let mut p = params(Version::V3, 100, 100, true);
        p.local_addr = me;
        p.vips = vec![IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x100,
        ))];
        let mut i = Instance::new(p);
        i.handle(Event::Startup, ms(0));
        i.handle(Event::Tick, ms(3610));
        assert_eq!(i.state, State::Master);
        let advert = |src: IpAddr| Event::Advert {
            src,
            advert: Advert {
                version: Version::V3,
                vrid: 51,
                priority: 100,
                interval_cs: 100,
                auth: None,
                addrs: vec![],
            },
        };
        let lower = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
        let a = i.handle(advert(lower), ms(4000));
        assert_eq!(
            a,
            vec![Action::SendAdvert { priority: 100 }, Action::SendGarp]
        );
        let a = i.handle(advert(peer), ms(4100));
        assert_eq!(states(&a), vec![(State::Master, State::Backup)]);
        assert_eq!(i.current_master, Some(peer));
    }
}
