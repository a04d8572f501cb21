//! Backup hellos: how a master learns that an ha-agent backup is alive.
//!
//! A VRRP backup is silent, so a master cannot know whether anybody would take over if it
//! stepped down. Operator switchover must refuse in that case. ha-agent backups therefore
//! broadcast a small UDP hello on the instance's LAN every advert interval:
//!
//! ```text
//! "ANTLER-HA-HELLO 1 <vrid> <priority>"   UDP to the subnet broadcast address, port 9779
//! ```
//! A master that hears one records the sender as a live peer. keepalived peers send none;
//! switchover to them is refused ("no peer heard").

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

/// UDP port of backup hellos.
pub const HELLO_PORT: u16 = 9779;

/// A received hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Sender address.
    pub src: Ipv4Addr,
    /// VRID it is a backup for.
    pub vrid: u8,
    /// Its effective priority.
    pub priority: u8,
}

/// Encodes a hello.
pub fn encode(vrid: u8, priority: u8) -> Vec<u8> {
    format!("ANTLER-HA-HELLO 1 {vrid} {priority}").into_bytes()
}

/// Decodes a hello; anything else is ignored.
pub fn decode(src: Ipv4Addr, b: &[u8]) -> Option<Hello> {
    let s = std::str::from_utf8(b).ok()?;
    let mut w = s.split(' ');
    if w.next()? != "ANTLER-HA-HELLO" || w.next()? != "1" {
        return None;
    }
    let vrid = w.next()?.parse().ok()?;
    let priority = w.next()?.parse().ok()?;
    if w.next().is_some() {
        return None;
    }
    Some(Hello {
        src,
        vrid,
        priority,
    })
}

/// Subnet broadcast address of `addr/prefix`.
pub fn broadcast(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    };
    Ipv4Addr::from(u32::from(addr) | !mask)
}

/// The daemon's hello socket (one per daemon, shared by its instances).
#[derive(Debug)]
pub struct HelloSocket(UdpSocket);

impl HelloSocket {
    /// Binds `0.0.0.0:HELLO_PORT` with broadcast enabled.
    pub fn open() -> std::io::Result<HelloSocket> {
        let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, HELLO_PORT))?;
        s.set_broadcast(true)?;
        Ok(HelloSocket(s))
    }

    /// Sends a hello to `dst`.
    pub fn send(&self, dst: Ipv4Addr, vrid: u8, priority: u8) -> std::io::Result<()> {
        self.0
            .send_to(&encode(vrid, priority), SocketAddrV4::new(dst, HELLO_PORT))
            .map(|_| ())
    }

    /// Waits up to `timeout` for one hello.
    pub fn recv(&self, timeout: Duration) -> std::io::Result<Option<Hello>> {
        self.0.set_read_timeout(Some(timeout))?;
        let mut b = [0u8; 64];
        match self.0.recv_from(&mut b) {
            Ok((n, std::net::SocketAddr::V4(a))) => Ok(decode(*a.ip(), &b[..n])),
            Ok(_) => Ok(None),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A second handle on the same socket.
    pub fn try_clone(&self) -> std::io::Result<HelloSocket> {
        Ok(HelloSocket(self.0.try_clone()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec() {
        let src = Ipv4Addr::new(192, 0, 2, 2);
        assert_eq!(
            decode(src, &encode(51, 100)),
            Some(Hello {
                src,
                vrid: 51,
                priority: 100
            })
        );
        assert_eq!(decode(src, b"ANTLER-HA-HELLO 2 51 100"), None);
        assert_eq!(decode(src, b"ANTLER-HA-HELLO 1 51 300"), None);
        assert_eq!(decode(src, b"garbage"), None);
        assert_eq!(
            broadcast(Ipv4Addr::new(192, 0, 2, 1), 24),
            Ipv4Addr::new(192, 0, 2, 255)
        );
    }
}
