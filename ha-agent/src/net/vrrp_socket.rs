//! The raw IPv4 protocol-112 socket adverts are sent and received on.

use super::{sys, NetError};
use crate::packet::VRRP_GROUP;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// A raw `AF_INET`/`SOCK_RAW` socket for IP protocol 112, bound to one interface.
///
/// - `SO_BINDTODEVICE`: only packets arriving on the interface are received, and
///   packets leave through it.
/// - `IP_HDRINCL`: [`VrrpSocket::send`] takes complete IPv4 packets (as built by
///   [`crate::packet::encode_ip`]), so TTL 255 and TOS 0xc0 are ours to set; the
///   kernel fills in the total length and header checksum.
/// - `IP_MULTICAST_IF` = the interface, `IP_MULTICAST_LOOP` off (the socket never sees
///   its own multicast sends), `IP_MULTICAST_TTL` 255, and `IP_MULTICAST_ALL` off, so
///   only groups joined by this socket are delivered to it.
/// - With `multicast`, 224.0.0.18 is joined on the interface (`ip_mreqn` by index).
///
/// All methods take `&self` and the type is `Send + Sync`: one thread may block in
/// [`VrrpSocket::recv`] while another sends. [`VrrpSocket::try_clone`] duplicates the
/// descriptor when separate owners are wanted.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
}

impl VrrpSocket {
    /// Opens the socket on interface `ifname` (needs `CAP_NET_RAW`), joining the VRRP
    /// group there when `multicast` is true (false for unicast-peer mode). Opens in the
    /// calling thread's network namespace.
    pub fn open(ifname: &str, multicast: bool) -> io::Result<VrrpSocket> {
        let fail = |op: &'static str| super::if_error(ifname, op);
        let (fd, ifindex) = super::raw_vrrp_socket(ifname, libc::AF_INET, "open raw VRRP socket")?;
        let one: libc::c_int = 1;
        let zero: libc::c_int = 0;
        let ttl: libc::c_int = 255;
        sys::setsockopt(&fd, libc::IPPROTO_IP, libc::IP_HDRINCL, &one)
            .map_err(fail("IP_HDRINCL"))?;
        let mreqn = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr { s_addr: 0 },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: ifindex as libc::c_int,
        };
        sys::setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)
            .map_err(fail("IP_MULTICAST_IF"))?;
        sys::setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &zero)
            .map_err(fail("IP_MULTICAST_LOOP"))?;
        sys::setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &ttl)
            .map_err(fail("IP_MULTICAST_TTL"))?;
        sys::setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, &zero)
            .map_err(fail("IP_MULTICAST_ALL"))?;
        if multicast {
            let join = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(VRRP_GROUP.octets()),
                },
                ..mreqn
            };
            sys::setsockopt(&fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &join)
                .map_err(fail("join 224.0.0.18 (IP_ADD_MEMBERSHIP)"))?;
        }
        Ok(VrrpSocket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
        })
    }

    /// The interface name the socket is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends one complete IPv4 packet (header included, see
    /// [`crate::packet::encode_ip`]) to `dst`, which should match the header's
    /// destination: [`VRRP_GROUP`] or a unicast peer.
    pub fn send(&self, packet: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(dst.octets()),
            },
            sin_zero: [0; 8],
        };
        sys::sendto(&self.fd, packet, Some(&sa)).map_err(|error| {
            NetError::Interface {
                ifname: self.ifname.clone(),
                op: if dst.is_multicast() {
                    "send VRRP multicast"
                } else {
                    "send VRRP unicast"
                },
                error,
            }
            .into()
        })
    }

    /// Waits up to `timeout` for one packet and copies it, IPv4 header included, into
    /// `buf`; `Ok(None)` when the timeout passes first. A packet longer than `buf` is
    /// truncated to `buf.len()` (adverts are at most 20 + 16 + 4·255 bytes).
    /// Anything of protocol 112 that reaches the interface is returned, so callers
    /// validate with [`crate::packet::decode_ip`].
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let fail = |error: io::Error| -> io::Error {
            NetError::Interface {
                ifname: self.ifname.clone(),
                op: "receive VRRP",
                error,
            }
            .into()
        };
        let deadline = std::time::Instant::now().checked_add(timeout);
        loop {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(std::time::Instant::now()),
                None => Duration::MAX,
            };
            if !sys::wait_readable(self.fd.as_raw_fd(), left).map_err(fail)? {
                return Ok(None);
            }
            match sys::recvfrom::<libc::sockaddr_in>(self.fd.as_raw_fd(), buf, libc::MSG_DONTWAIT) {
                Ok((n, _)) => return Ok(Some(n)),
                // Another thread (a clone) took the packet, or a signal arrived.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(fail(e)),
            }
        }
    }

    /// A second handle on the same socket (`dup`), for example to move into a
    /// receiving thread.
    pub fn try_clone(&self) -> io::Result<VrrpSocket> {
        let fd = self.fd.try_clone().map_err(|error| NetError::Interface {
            ifname: self.ifname.clone(),
            op: "duplicate VRRP socket",
            error,
        })?;
        Ok(VrrpSocket {
            fd,
            ifname: self.ifname.clone(),
            ifindex: self.ifindex,
        })
    }
}

impl AsFd for VrrpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
