//! `mfschunkserver`: a chunkserver that real MooseFS 3.0.117 masters, mounts and
//! chunkservers work with.
//!
//! - [`config`] reads `mfschunkserver.cfg`, [`hddcfg`] reads `mfshdd.cfg`.
//! - [`store`] keeps the chunk files (MooseFS on-disk format) and checks every block CRC.
//! - [`masterconn`] registers with the master, reports space and damaged or lost chunks,
//!   and carries out the master's orders; [`replicator`] fetches chunk copies.
//! - [`csserv`] serves reads and write chains to clients and other chunkservers.
//! - [`ids`] keeps the chunkserver id and the pinned metadata id.
//! - [`net`] is the blocking packet I/O they share.

pub mod config;
pub mod csserv;
pub mod hddcfg;
pub mod ids;
pub mod masterconn;
pub mod net;
pub mod replicator;
pub mod store;
