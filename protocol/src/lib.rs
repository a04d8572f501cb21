//! MooseFS 3.0.117 wire and disk formats, as pure code (no sockets, no files).
//!
//! Layout:
//! - [`version`]: the version we advertise (3.0.117, `0x0300EA` on the wire) and the
//!   single place where a peer's version is judged.
//! - [`frame`]: the `type:u32 length:u32 payload` framing shared by every link, with a
//!   per-link size limit, plus a bounds-checked big-endian [`frame::Reader`] and
//!   [`frame::Writer`].
//! - [`codes`]: message type numbers, status codes and MooseFS size constants.
//! - [`cltoma`]: client (mfsmount, tools) ↔ master messages.
//! - [`cstoma`]: master ↔ chunkserver messages.
//! - [`data`]: client ↔ chunkserver and chunkserver ↔ chunkserver messages (the data path).
//! - [`chunkfile`]: the on-disk chunk file (`MFSC 1.0` header, CRC table, 64 KiB blocks)
//!   and its file name.
//! - [`crc`]: zlib CRC-32 helpers (MooseFS uses plain CRC-32 per 64 KiB block).
//! - [`changelog`]: the master's text changelog lines (`<version>: <ts>|OP(args):result`).
//! - [`matoml`]: master ↔ metalogger messages.
//! - [`metadata`]: the master's `MFSM 2.0` metadata file.
//! - [`auth`]: the MD5 challenge used by AUTH_CODE and export passwords.
//!
//! Every decoder returns a typed [`DecodeError`]; none of them log or panic on bad input.

pub mod auth;
pub mod changelog;
pub mod chunkfile;
pub mod cltoma;
pub mod codes;
pub mod crc;
pub mod cstoma;
pub mod data;
pub mod frame;
pub mod matoml;
pub mod metadata;
pub mod version;

pub use frame::{DecodeError, FrameError};
