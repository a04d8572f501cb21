//! `block-repl`: a DRBD-like replicated block device for the master's data directory
//! (work in progress: the pure core).
//!
//! - [`gi`]: generation identifiers and the resync / split-brain decision on connect.
//! - [`bitmap`]: the dirty-block bitmap (one bit per 4 KiB).
//! - [`frame`]: replication frames (decoded whole before anything is applied).
//! - [`meta`]: persistent metadata (generations, disk state, bitmap), written durably.
//! - [`status`]: the `/proc/drbd`-style status view.
//! - [`policy`]: after-split-brain policies, evaluated identically on both nodes.

pub mod bitmap;
pub mod frame;
pub mod gi;
pub mod meta;
pub mod policy;
pub mod status;
