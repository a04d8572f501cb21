//! The MooseFS 3.0.117 compatible master (see `docs/master.md`).
//!
//! - [`exports`]: `mfsexports.cfg` and how a register request picks its export.
//! - [`fs`]: the in-memory namespace (pure; time is passed in).
//! - [`chunks`]: chunk records, copies on chunkservers, operations and the chunk loop (pure).
//! - [`config`]: the `mfsmaster.cfg` settings.
//! - [`server`]: the network shell (client, chunkserver listeners) around the pure core.

pub mod chunks;
pub mod config;
pub mod exports;
pub mod fs;
pub mod server;
