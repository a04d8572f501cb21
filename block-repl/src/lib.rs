//! `block-repl`: a DRBD-like replicated block device for the master's data directory.
//!
//! Pure core:
//! - [`gi`]: generation identifiers and the resync / split-brain decision on connect.
//! - [`handshake`]: what a connection means, from both nodes' exchanged state.
//! - [`bitmap`]: the dirty-block bitmap (one bit per 4 KiB).
//! - [`al`]: the activity log of hot extents.
//! - [`frame`]: replication frames (decoded whole before anything is applied).
//! - [`meta`]: persistent metadata (generations, disk state, bitmap, activity log).
//! - [`status`]: the `/proc/drbd`-style status view.
//! - [`policy`]: after-split-brain policies, evaluated identically on both nodes.
//! - [`config`]: the TOML resource file.
//! - [`acks`]: which cumulative acks the secondary owes when requests finish out of order.
//!
//! Shell: [`store`] (local copy), [`ranges`] (range locks ordering overlapping I/O),
//! [`wire`] (frame I/O, authentication), [`node`] (the replication engine), [`fuse`] +
//! [`device`] (the block device), [`watchdog`], [`hooks`], [`control`] (operator
//! socket), [`daemon`].

pub mod acks;
pub mod al;
pub mod bitmap;
pub mod config;
pub mod control;
pub mod daemon;
pub mod device;
pub mod frame;
pub mod fuse;
pub mod gi;
pub mod handshake;
pub mod hooks;
pub mod meta;
pub mod node;
pub mod outbox;
pub mod policy;
pub mod ranges;
pub mod status;
pub mod store;
pub mod watchdog;
pub mod wire;
