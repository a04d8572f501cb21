//! Handler scripts (`fence_peer`, `split_brain`): `sh -c` with the resource in the
//! environment, a timeout, output logged.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Environment handed to a handler.
pub struct HookEnv<'a> {
    /// Resource name.
    pub resource: &'a str,
    /// This node.
    pub node: &'a str,
    /// The peer.
    pub peer: &'a str,
    /// The peer's replication address.
    pub peer_address: String,
}

/// Runs `cmd` with `sh -c`; returns its exit code (None: killed, timed out or not run).
pub fn run(what: &str, cmd: &str, env: &HookEnv, timeout: Duration) -> Option<i32> {
    let mut child = match Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("BLOCK_REPL_RESOURCE", env.resource)
        .env("BLOCK_REPL_NODE", env.node)
        .env("BLOCK_REPL_PEER", env.peer)
        .env("BLOCK_REPL_PEER_ADDRESS", &env.peer_address)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            warn!("{what} handler '{cmd}' could not start: {e}");
            return None;
        }
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                warn!("{what} handler '{cmd}' timed out after {timeout:?}: killed");
                break None;
            }
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    let code = status.and_then(|s| s.code());
    info!(
        "{what} handler '{cmd}' exited with {code:?} after {:?}{}{}",
        start.elapsed(),
        if out.trim().is_empty() { "" } else { ": " },
        out.trim()
    );
    code
}
