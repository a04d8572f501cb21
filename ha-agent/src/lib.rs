//! `ha-agent`: a keepalived-like VRRP agent (work in progress).
//!
//! - [`packet`]: VRRP v2/v3 advert codec and gratuitous ARP frames (pure).
//! - [`fsm`]: the per-instance VRRP state machine (pure, time injected).

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
