//! Shared building blocks of the Antler daemons (`mfschunkserver`,
//! `mfsmaster`, `mfsmetalogger`), which must behave like their MooseFS
//! 3.0.117 counterparts for operators.
//!
//! Layout:
//!
//! * [`cfg`](mod@cfg): reader for MooseFS `.cfg` files (`KEY = VALUE`, `#` comments)
//!   with typed getters and the MooseFS size syntax (`256MiB`, `1GB`, `1.5G`),
//! * [`daemon`]: the common daemon lifecycle: command line
//!   (`[-f] [-c CFG] ... [start|stop|restart|reload|test|kill]`), the
//!   `DATA_PATH/.NAME.lock` PID lock file and the actions on a running
//!   instance, signal flags, daemonizing, dropping privileges,
//! * [`durable`]: durable small-file writes (temp file, fsync, rename, fsync dir),
//! * [`logging`]: `tracing` output to syslog (facility daemon) and stderr,
//! * [`toml_cfg`]: strict TOML files for Antler's own daemons, errors with file:line: key.

pub mod cfg;
pub mod daemon;
pub mod durable;
pub mod logging;
pub mod toml_cfg;

pub use cfg::{parse_size, CfgError, CfgFile};
pub use daemon::{Action, DaemonArgs, LockError, LockFile, Signals};
