//! `ha-agent`: a keepalived-like VRRP agent (VRRPv2 over IPv4, VRRPv3 over IPv4 and IPv6).
//!
//! - [`packet`]: VRRP v2/v3 advert codec (IPv4 and IPv6), gratuitous ARP and unsolicited
//!   neighbour advertisement frames (pure).
//! - [`fsm`]: the per-instance VRRP state machine (pure, time injected).
//! - [`validate`]: acceptance checks and rejection counters.
//! - [`instance`]: the thread that runs one instance (sockets, VIPs, hooks, email).
//! - [`net`]: raw sockets, rtnetlink addresses and events, `AF_PACKET` announcements.
//! - [`config`], [`control`], [`email`], [`notify`], [`track`], [`hello`]: configuration,
//!   operator socket, mail, hooks, health checks, backup hellos.

pub mod config;
pub mod control;
pub mod email;
pub mod fsm;
pub mod hello;
pub mod instance;
pub mod net;
pub mod notify;
pub mod packet;
pub mod track;
pub mod validate;
