//! The operator control socket: a root-only Unix socket speaking one JSON request and
//! one JSON reply per connection.
//!
//! ```text
//! {"cmd":"status"}                                   -> {"ok":true,"instances":[...]}
//! {"cmd":"switchover","instance":"VI_MFS"}           -> {"ok":true,"message":"... in 612 ms"}
//! {"cmd":"maintenance","instance":"VI_MFS","on":true}
//! {"cmd":"reload"}
//! ```

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/ha-agent.sock";

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Status of every instance.
    Status,
    /// Hand MASTER of `instance` to the peer.
    Switchover {
        /// Instance name.
        instance: String,
    },
    /// Maintenance on/off for `instance`.
    Maintenance {
        /// Instance name.
        instance: String,
        /// On or off.
        on: bool,
    },
    /// Re-read the configuration file.
    Reload,
}

/// A reply on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// Success.
    pub ok: bool,
    /// Human-readable outcome or error.
    #[serde(default)]
    pub message: String,
    /// Status details (for `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<serde_json::Value>,
}

/// Binds the socket (replacing a stale one) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use: another ha-agent is running", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves requests with `handle` until the listener fails.
pub fn serve(l: UnixListener, handle: impl Fn(Request) -> Reply + Send + Sync + 'static) {
    let handle = std::sync::Arc::new(handle);
    for conn in l.incoming().flatten() {
        let handle = std::sync::Arc::clone(&handle);
        std::thread::spawn(move || {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut line = String::new();
            let mut r = BufReader::new(&conn);
            if r.read_line(&mut line).is_err() {
                return;
            }
            let reply = match serde_json::from_str::<Request>(line.trim()) {
                Ok(req) => handle(req),
                Err(e) => Reply {
                    ok: false,
                    message: format!("bad request: {e}"),
                    instances: None,
                },
            };
            let mut w = &conn;
            let _ = writeln!(w, "{}", serde_json::to_string(&reply).unwrap_or_default());
        });
    }
}

/// Sends one request to a running daemon.
pub fn call(path: &Path, req: &Request, timeout: Duration) -> Result<Reply, String> {
    let s = UnixStream::connect(path).map_err(|e| {
        format!(
            "can't connect to {}: {e} (is ha-agent running?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut w = &s;
    writeln!(
        w,
        "{}",
        serde_json::to_string(req).map_err(|e| e.to_string())?
    )
    .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .map_err(|e| format!("no reply from {}: {e}", path.display()))?;
    serde_json::from_str(line.trim()).map_err(|e| format!("bad reply: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_roundtrip_as_json() {
        for r in [
            Request::Status,
            Request::Reload,
            Request::Switchover {
                instance: "VI_MFS".into(),
            },
            Request::Maintenance {
                instance: "VI_MFS".into(),
                on: true,
            },
        ] {
            let j = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&j).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
    }

    #[test]
    fn socket_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.sock");
        let l = bind(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::thread::spawn(move || {
            serve(l, |r| Reply {
                ok: true,
                message: format!("{r:?}"),
                instances: None,
            });
        });
        let r = call(&p, &Request::Reload, Duration::from_secs(5)).unwrap();
        assert!(r.ok);
        assert_eq!(r.message, "Reload");
        assert!(
            bind(&p).is_err(),
            "a second daemon must not steal the socket"
        );
    }
}
