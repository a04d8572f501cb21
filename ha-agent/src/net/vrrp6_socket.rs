//! The raw IPv6 protocol-112 socket VRRPv3 adverts over IPv6 are sent and received on.
//!
//! A raw IPv6 socket never exposes the IPv6 header: sends carry the VRRP message only
//! (the kernel writes the header), and receives return the VRRP message with the
//! destination address and hop limit as ancillary data. The source address is set per
//! packet (`IPV6_PKTINFO`) to the interface's link-local address (RFC 5798 §5.1.2.1), so
//! the kernel's source address selection never picks a global address.
//!
//! # Checksum
//!
//! keepalived sets `IPV6_CHECKSUM` = 6 on its *sending* socket, so that the kernel fills
//! in the VRRP checksum over the IPv6 pseudo-header. This socket does not: the checksum
//! is computed in user space by [`crate::packet::Advert::encode`] over the same
//! pseudo-header (the source given here, the destination, the length, next header 112),
//! so the bytes on the wire are the same. On reception `IPV6_CHECKSUM` would make the
//! kernel drop bad packets silently; without it they reach
//! [`crate::packet::decode_v6`], which rejects them and lets `status` count them like
//! IPv4 ones.

use super::{sys, NetError};
use crate::packet::{VRRP_GROUP6, VRRP_TTL};
use std::io;
use std::mem;
use std::net::Ipv6Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// `IPV6_MULTICAST_ALL` (linux/in6.h, Linux 4.20+); not in every libc build.
const IPV6_MULTICAST_ALL: libc::c_int = 29;
/// Traffic class of adverts: network control (CS6), as keepalived sets it.
const TCLASS_NETWORK_CONTROL: libc::c_int = 0xc0;

/// One datagram received by [`Vrrp6Socket::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram6 {
    /// Bytes of VRRP message copied into the caller's buffer.
    pub len: usize,
    /// IPv6 source address.
    pub src: Ipv6Addr,
    /// IPv6 destination (from `IPV6_PKTINFO`; `::` if the kernel sent none).
    pub dst: Ipv6Addr,
    /// Hop limit the packet arrived with (from `IPV6_HOPLIMIT`; 0 if the kernel sent
    /// none, which no check accepts).
    pub hop_limit: u8,
}

/// A raw `AF_INET6`/`SOCK_RAW` socket for protocol 112, bound to one interface.
///
/// - `SO_BINDTODEVICE`: only packets arriving on the interface are received, and
///   packets leave through it.
/// - `IPV6_MULTICAST_IF` = the interface, `IPV6_MULTICAST_HOPS` and
///   `IPV6_UNICAST_HOPS` 255, `IPV6_MULTICAST_LOOP` off (the socket never sees its own
///   multicast sends), `IPV6_MULTICAST_ALL` off where the kernel has it (only groups
///   joined by this socket are delivered to it), `IPV6_TCLASS` 0xc0.
/// - `IPV6_RECVPKTINFO` and `IPV6_RECVHOPLIMIT`: every receive reports the destination
///   address and the hop limit.
/// - With `multicast`, ff02::12 is joined on the interface and the socket is bound to
///   it (as keepalived does): a raw IPv6 socket filters multicast groups only when bound
///   (`IPV6_MULTICAST_ALL` alone does not apply to raw sockets), and the binding also
///   keeps unicast packets out. Without `multicast` (unicast peers) the socket is not
///   bound, so it also sees protocol-112 multicast on the link; the instance ignores
///   adverts whose source is not one of its peers.
/// - No `IPV6_CHECKSUM`: see the module documentation.
///
/// All methods take `&self` and the type is `Send + Sync`: one thread may block in
/// [`Vrrp6Socket::recv`] while another sends.
#[derive(Debug)]
pub struct Vrrp6Socket {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
}

impl Vrrp6Socket {
    /// Opens the socket on interface `ifname` (needs `CAP_NET_RAW`), joining ff02::12
    /// there when `multicast` is true (false for unicast-peer mode). Opens in the
    /// calling thread's network namespace.
    pub fn open(ifname: &str, multicast: bool) -> io::Result<Vrrp6Socket> {
        let fail = |op: &'static str| super::if_error(ifname, op);
        let (fd, ifindex) =
            super::raw_vrrp_socket(ifname, libc::AF_INET6, "open raw IPv6 VRRP socket")?;
        let one: libc::c_int = 1;
        let zero: libc::c_int = 0;
        let hops = libc::c_int::from(VRRP_TTL);
        let index = ifindex as libc::c_int;
        let v6 = libc::IPPROTO_IPV6;
        sys::setsockopt(&fd, v6, libc::IPV6_MULTICAST_IF, &index)
            .map_err(fail("IPV6_MULTICAST_IF"))?;
        sys::setsockopt(&fd, v6, libc::IPV6_MULTICAST_HOPS, &hops)
            .map_err(fail("IPV6_MULTICAST_HOPS"))?;
        sys::setsockopt(&fd, v6, libc::IPV6_UNICAST_HOPS, &hops)
            .map_err(fail("IPV6_UNICAST_HOPS"))?;
        sys::setsockopt(&fd, v6, libc::IPV6_MULTICAST_LOOP, &zero)
            .map_err(fail("IPV6_MULTICAST_LOOP"))?;
        // Best effort (kernels before 4.20 lack it); see the binding below for what
        // actually keeps other groups out of a raw socket.
        let _ = sys::setsockopt(&fd, v6, IPV6_MULTICAST_ALL, &zero);
        sys::setsockopt(&fd, v6, libc::IPV6_TCLASS, &TCLASS_NETWORK_CONTROL)
            .map_err(fail("IPV6_TCLASS"))?;
        sys::setsockopt(&fd, v6, libc::IPV6_RECVPKTINFO, &one).map_err(fail("IPV6_RECVPKTINFO"))?;
        sys::setsockopt(&fd, v6, libc::IPV6_RECVHOPLIMIT, &one)
            .map_err(fail("IPV6_RECVHOPLIMIT"))?;
        if multicast {
            let join = libc::ipv6_mreq {
                ipv6mr_multiaddr: libc::in6_addr {
                    s6_addr: VRRP_GROUP6.octets(),
                },
                ipv6mr_interface: ifindex as libc::c_uint,
            };
            sys::setsockopt(&fd, v6, libc::IPV6_ADD_MEMBERSHIP, &join)
                .map_err(fail("join ff02::12 (IPV6_ADD_MEMBERSHIP)"))?;
            // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
            let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_addr.s6_addr = VRRP_GROUP6.octets();
            sa.sin6_scope_id = ifindex;
            sys::bind(&fd, &sa).map_err(fail("bind to ff02::12"))?;
        }
        Ok(Vrrp6Socket {
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

    /// Sends one VRRP message (as built by [`crate::packet::Advert::encode`] with the
    /// same `src` and `dst`) from `src` (the interface's link-local address) to `dst`
    /// ([`VRRP_GROUP6`] or a unicast peer), out of the bound interface.
    pub fn send(&self, vrrp: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> io::Result<()> {
        // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_addr.s6_addr = dst.octets();
        // Needed for link-local and link-scope multicast destinations, ignored otherwise.
        sa.sin6_scope_id = self.ifindex;
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: src.octets(),
            },
            ipi6_ifindex: self.ifindex,
        };
        const SPACE: usize = 64;
        // u64 elements keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; SPACE / 8];
        let mut iov = libc::iovec {
            iov_base: vrrp.as_ptr() as *mut libc::c_void,
            iov_len: vrrp.len(),
        };
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&mut sa as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        msg.msg_controllen =
            unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in6_pktinfo>() as u32) } as _;
        debug_assert!(msg.msg_controllen as usize <= SPACE);
        // SAFETY: `msg` points at `control`, which is large enough (checked above) and
        // aligned, so CMSG_FIRSTHDR returns a valid header pointer inside it; the data
        // written fits in CMSG_LEN(size_of::<in6_pktinfo>()) bytes.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::IPPROTO_IPV6;
            (*c).cmsg_type = libc::IPV6_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<libc::in6_pktinfo>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(), info);
        }
        let op = if dst.is_multicast() {
            "send VRRP IPv6 multicast"
        } else {
            "send VRRP IPv6 unicast"
        };
        loop {
            // SAFETY: `msg` and everything it points to (`sa`, `iov` over `vrrp`,
            // `control`) are live for the call; the kernel only reads them.
            let r = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
            match sys::cvt_size(r) {
                Ok(n) if n == vrrp.len() => return Ok(()),
                Ok(n) => {
                    return Err(self.error(
                        op,
                        io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("short send: {n} of {} bytes", vrrp.len()),
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.error(op, e)),
            }
        }
    }

    fn error(&self, op: &'static str, error: io::Error) -> io::Error {
        NetError::Interface {
            ifname: self.ifname.clone(),
            op,
            error,
        }
        .into()
    }

    /// Waits up to `timeout` for one packet and copies its VRRP message (no IPv6 header)
    /// into `buf`; `Ok(None)` when the timeout passes first. A longer message is
    /// truncated to `buf.len()` (adverts are at most 8 + 16·255 bytes). Anything of
    /// protocol 112 that reaches the interface is returned, so callers validate with
    /// [`crate::packet::decode_v6`].
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Datagram6>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if !sys::wait_readable(self.fd.as_raw_fd(), left)
                .map_err(|e| self.error("receive VRRP IPv6", e))?
            {
                return Ok(None);
            }
            match self.recv_now(buf) {
                Ok(d) => return Ok(Some(d)),
                // Another thread took the packet, or a signal arrived.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(self.error("receive VRRP IPv6", e)),
            }
        }
    }

    /// One non-blocking `recvmsg` with the ancillary data decoded.
    fn recv_now(&self, buf: &mut [u8]) -> io::Result<Datagram6> {
        // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_in6 = unsafe { mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&mut sa as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `msg` refers to a live, writable buffer of the size
        // given (`sa`, `buf` through `iov`, `control`).
        let r = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        let len = sys::cvt_size(r)?;
        let mut d = Datagram6 {
            len,
            src: Ipv6Addr::from(sa.sin6_addr.s6_addr),
            dst: Ipv6Addr::UNSPECIFIED,
            hop_limit: 0,
        };
        // SAFETY: the kernel filled `msg_controllen` bytes of `control` with cmsg
        // records; CMSG_FIRSTHDR/CMSG_NXTHDR walk them within that length, and each
        // record's data is read only when its length covers the type read.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let data_len = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                        if data_len >= mem::size_of::<libc::in6_pktinfo>() =>
                    {
                        let info: libc::in6_pktinfo =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        d.dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT)
                        if data_len >= mem::size_of::<libc::c_int>() =>
                    {
                        let h: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        d.hop_limit = u8::try_from(h).unwrap_or(0);
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(d)
    }

    /// A second handle on the same socket (`dup`).
    pub fn try_clone(&self) -> io::Result<Vrrp6Socket> {
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| self.error("duplicate VRRP IPv6 socket", e))?;
        Ok(Vrrp6Socket {
            fd,
            ifname: self.ifname.clone(),
            ifindex: self.ifindex,
        })
    }
}

impl AsFd for Vrrp6Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
