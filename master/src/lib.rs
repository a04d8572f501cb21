//! The MooseFS 3.0.117 compatible master (see `docs/master.md`).
//!
//! - [`exports`]: `mfsexports.cfg` and how a register request picks its export.
//! - [`fs`]: the in-memory namespace (pure; time is passed in).
//! - [`chunks`]: chunk records, copies on chunkservers, operations and the chunk loop (pure).
//! - [`changelog`]: `changelog.N.mfs` writing and rotation.
//! - [`config`]: the `mfsmaster.cfg` settings.
//! - [`restore`]: replaying changelog lines (`-a`, `mfsmetarestore`).
//! - [`metadata`]: the state as a `MFSM 2.0` image and back.
//! - [`recovery`]: finding metadata and changelog files and replaying them.
//! - [`server`]: the network shell (client, chunkserver listeners) around the pure core.

pub mod changelog;
pub mod chunks;
pub mod config;
pub mod exports;
pub mod fs;
pub mod metadata;
pub mod recovery;
pub mod restore;
pub mod server;
