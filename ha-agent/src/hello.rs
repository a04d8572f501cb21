//! Backup hellos: how a master learns that an ha-agent backup is alive.
//!
//! A VRRP backup is silent, so a master cannot know whether anybody would take over if it
//! stepped down. Operator switchover must refuse in that case. ha-agent backups therefore
//! broadcast a small UDP hello on the instance's LAN every advert interval:
//!
//! ```text
//! "ANTLER-HA-HELLO 1 <vrid> <priority>"   UDP port 9779: IPv4 instances to the subnet
//!                                         broadcast address, IPv6 instances to ff02::1
//!                                         on the instance's interface
//! ```
//! A master that hears one records the sender as a live peer. The IPv6 hello leaves from
//! the interface's link-local address, the same source as the node's adverts, so the
//! master matches it with the advertising peer. keepalived peers send none; switchover
//! to them is refused ("no peer heard").

use crate::packet::ALL_NODES6;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// UDP port of backup hellos.
pub const HELLO_PORT: u16 = 9779;

/// A received hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Sender address.
    pub src: IpAddr,
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
pub fn decode(src: IpAddr, b: &[u8]) -> Option<Hello> {
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

/// Where an IPv6 instance on interface `ifindex` sends its hellos: ff02::1 there.
pub fn ipv6_destination(ifindex: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(ALL_NODES6, HELLO_PORT, 0, ifindex))
}

/// The daemon's hello sockets (one pair per daemon, shared by its instances):
/// `0.0.0.0:9779` with broadcast enabled, and `[::]:9779` (IPv6 only) when the host
/// has IPv6.
#[derive(Debug)]
pub struct HelloSocket {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
}

/// Opens `[::]:HELLO_PORT` with `IPV6_V6ONLY`, so it does not collide with the IPv4
/// socket on the same port.
fn open_v6() -> io::Result<UdpSocket> {
    use crate::net::sys;
    let fd: OwnedFd = sys::socket(libc::AF_INET6, libc::SOCK_DGRAM, 0)?;
    let one: libc::c_int = 1;
    sys::setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &one)?;
    // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value (`::`).
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_port = HELLO_PORT.to_be();
    sys::bind(&fd, &sa)?;
    Ok(UdpSocket::from(fd))
}

impl HelloSocket {
    /// Binds `0.0.0.0:HELLO_PORT` with broadcast enabled and, if IPv6 is available,
    /// `[::]:HELLO_PORT`. Fails only if the IPv4 socket cannot be bound; without the
    /// IPv6 socket, IPv6 instances send no hellos and hear none (switchover refuses).
    pub fn open() -> io::Result<HelloSocket> {
        let v4 = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, HELLO_PORT))?;
        v4.set_broadcast(true)?;
        let v6 = match open_v6() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("no IPv6 backup-hello socket ([::]:{HELLO_PORT}): {e}");
                None
            }
        };
        Ok(HelloSocket { v4, v6 })
    }

    /// Sends a hello to `dst` (a subnet broadcast address, or
    /// [`ipv6_destination`]).
    pub fn send(&self, dst: SocketAddr, vrid: u8, priority: u8) -> io::Result<()> {
        let sock = match dst {
            SocketAddr::V4(_) => &self.v4,
            SocketAddr::V6(_) => self.v6.as_ref().ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "no IPv6 hello socket")
            })?,
        };
        sock.send_to(&encode(vrid, priority), dst).map(|_| ())
    }

    /// Waits up to `timeout` for one hello on either socket.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Hello>> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut fds = vec![libc::pollfd {
                fd: self.v4.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(v6) = &self.v6 {
                fds.push(libc::pollfd {
                    fd: v6.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // SAFETY: `fds` is a live array of `fds.len()` pollfd structures.
            let r = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    left.as_millis().min(i32::MAX as u128) as libc::c_int,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                return Ok(None);
            }
            for (i, pfd) in fds.iter().enumerate() {
                if pfd.revents == 0 {
                    continue;
                }
                let mut b = [0u8; 64];
                // MSG_DONTWAIT: another handle on the socket may have taken the datagram.
                let got = if i == 0 {
                    crate::net::sys::recvfrom::<libc::sockaddr_in>(
                        pfd.fd,
                        &mut b,
                        libc::MSG_DONTWAIT,
                    )
                    .map(|(n, a)| {
                        (
                            n,
                            IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()),
                        )
                    })
                } else {
                    crate::net::sys::recvfrom::<libc::sockaddr_in6>(
                        pfd.fd,
                        &mut b,
                        libc::MSG_DONTWAIT,
                    )
                    .map(|(n, a)| (n, IpAddr::from(a.sin6_addr.s6_addr)))
                };
                match got {
                    Ok((n, from)) => return Ok(decode(from, &b[..n])),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// A second handle on the same sockets.
    pub fn try_clone(&self) -> io::Result<HelloSocket> {
        Ok(HelloSocket {
            v4: self.v4.try_clone()?,
            v6: self.v6.as_ref().map(UdpSocket::try_clone).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec() {
        let src = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
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
        let ll: IpAddr = "fe80::ff:fe00:2".parse().unwrap();
        assert_eq!(decode(ll, &encode(51, 100)).map(|h| h.src), Some(ll));
        assert_eq!(
            ipv6_destination(4).to_string(),
            format!("[ff02::1%4]:{HELLO_PORT}")
        );
    }
}
