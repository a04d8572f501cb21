//! The MooseFS 3.0.117 compatible master, built up module by module (see `docs/master.md`).
//! So far: the exports file and how a register request picks its export.

pub mod exports;
