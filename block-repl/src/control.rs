//! The operator's control channel: one JSON request and one JSON reply per connection
//! on a root-only Unix socket (`RUN_DIR/NAME.sock`).

use crate::status::Status;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case")]
pub enum Request {
    /// Status view.
    Status,
    /// Promote.
    Primary {
        /// Override the safety checks.
        force: bool,
    },
    /// Demote.
    Secondary,
    /// Start connecting.
    Connect,
    /// Drop the connection and stay StandAlone.
    Disconnect,
    /// Online verify.
    Verify,
    /// Throw the local data away (full resync follows).
    Invalidate,
    /// Mark the local data Outdated.
    Outdate,
    /// Stop the daemon.
    Down,
}

/// A reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// What happened, or why not.
    pub message: String,
    /// The status after the request.
    pub status: Option<Status>,
}

/// Sends a request and waits (up to `timeout`) for the reply.
pub fn call(socket: &Path, req: &Request, timeout: Duration) -> std::io::Result<Reply> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer)?;
    serde_json::from_str(&answer)
        .map_err(|e| std::io::Error::other(format!("bad reply from the daemon: {e}: {answer:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_readable_json() {
        let j = serde_json::to_string(&Request::Primary { force: true }).unwrap();
        assert_eq!(j, r#"{"verb":"primary","force":true}"#);
        let r: Request = serde_json::from_str(r#"{"verb":"status"}"#).unwrap();
        assert!(matches!(r, Request::Status));
        assert!(serde_json::from_str::<Request>(r#"{"verb":"explode"}"#).is_err());
    }
}
