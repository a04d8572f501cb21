//! rtnetlink (`NETLINK_ROUTE`) by hand: IPv4 and IPv6 address add/delete/dump, link
//! lookup by name, and a link/address event monitor.
//!
//! Wire format (all header fields in host byte order, addresses in network order):
//! ```text
//! nlmsghdr  len u32 | type u16 | flags u16 | seq u32 | pid u32        (16 bytes)
//! ifaddrmsg family u8 | prefixlen u8 | flags u8 | scope u8 | index u32 (8 bytes)
//! ifinfomsg family u8 | pad u8 | type u16 | index i32 | flags u32 | change u32 (16)
//! rtattr    len u16 | type u16 | data…, padded to 4
//! nlmsgerr  error i32 | the request's nlmsghdr [| its payload] [| ext-ack rtattrs]
//! ```

use super::sys;
use super::{describe_ifindex, NetError};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// Message types and flags (linux/netlink.h, linux/rtnetlink.h).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// On an `NLMSG_ERROR`: the request's payload was not echoed back.
const NLM_F_CAPPED: u16 = 0x100;
/// On an `NLMSG_ERROR`: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;

/// `ifa_flags`: no duplicate address detection (the address is usable at once).
const IFA_F_NODAD: u32 = 0x02;
/// `ifa_flags`: duplicate address detection failed.
const IFA_F_DADFAILED: u32 = 0x08;
/// `ifa_flags`: duplicate address detection has not finished; not usable yet.
const IFA_F_TENTATIVE: u32 = 0x40;
/// `ifa_scope` of a link-local address.
const RT_SCOPE_LINK: u8 = 253;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;

/// Strips `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` from an attribute type.
const NLA_TYPE_MASK: u16 = 0x3fff;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;

const AF_UNSPEC: u8 = libc::AF_UNSPEC as u8;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// How long a request waits for the kernel's answer before failing with `TimedOut`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A change seen by [`NetMonitor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetEvent {
    /// An IPv4 or IPv6 address was removed from interface `ifindex` (`RTM_DELADDR`).
    AddrRemoved {
        /// Interface index.
        ifindex: u32,
        /// The local address (`IFA_LOCAL`, or `IFA_ADDRESS` when absent).
        addr: IpAddr,
    },
    /// An IPv4 or IPv6 address was added to (or changed on) interface `ifindex`
    /// (`RTM_NEWADDR`; IPv6 also reports flag changes such as the end of duplicate
    /// address detection this way).
    AddrAdded {
        /// Interface index.
        ifindex: u32,
        /// The local address (`IFA_LOCAL`, or `IFA_ADDRESS` when absent).
        addr: IpAddr,
    },
    /// Link state of interface `ifindex`, from every `RTM_NEWLINK` (which the kernel
    /// also sends for changes unrelated to state, so consecutive events may repeat the
    /// same `up`) and `RTM_DELLINK` (always `up: false`).
    Link {
        /// Interface index.
        ifindex: u32,
        /// `IFF_UP` and `IFF_RUNNING` (operationally up, which implies carrier).
        up: bool,
    },
}

/// Netlink link flags to "usable": administratively up and operationally running.
pub(crate) fn link_flags_up(flags: u32) -> bool {
    flags & IFF_UP != 0 && flags & IFF_RUNNING != 0
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn ip_addr(family: u8, data: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => <[u8; 4]>::try_from(data).ok().map(IpAddr::from),
        AF_INET6 => <[u8; 16]>::try_from(data).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Appends one rtattr (header, data, padding) to `buf`.
fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

/// Iterates over the rtattrs in `b` as `(type, data)`; stops at the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16_at(b, 0) as usize;
        if len < 4 || len > b.len() {
            return None;
        }
        let item = (u16_at(b, 2) & NLA_TYPE_MASK, &b[4..len]);
        b = &b[align4(len).min(b.len())..];
        Some(item)
    })
}

/// One netlink message: its header fields and payload (after the 16-byte header).
struct Msg<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

/// Splits one datagram into its netlink messages; stops at the first malformed one.
fn messages(mut b: &[u8]) -> impl Iterator<Item = Msg<'_>> {
    std::iter::from_fn(move || {
        if b.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32_at(b, 0) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return None;
        }
        let m = Msg {
            ty: u16_at(b, 4),
            flags: u16_at(b, 6),
            seq: u32_at(b, 8),
            payload: &b[NLMSG_HDRLEN..len],
        };
        b = &b[align4(len).min(b.len())..];
        Some(m)
    })
}

/// Decodes an `NLMSG_ERROR` payload: `Ok(())` for an ACK, else the errno and the
/// kernel's extended-ack message when it sent one.
fn parse_error(m: &Msg<'_>) -> Result<(), (io::Error, Option<String>)> {
    let p = m.payload;
    if p.len() < 4 {
        return Err((
            io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink error message",
            ),
            None,
        ));
    }
    let errno = -(u32_at(p, 0) as i32);
    if errno == 0 {
        return Ok(());
    }
    let mut text = None;
    if m.flags & NLM_F_ACK_TLVS != 0 && p.len() >= 4 + NLMSG_HDRLEN {
        let echoed = if m.flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            u32_at(p, 4) as usize
        };
        if let Some(tlvs) = p.get(4 + align4(echoed)..) {
            text = attrs(tlvs)
                .find(|(t, _)| *t == NLMSGERR_ATTR_MSG)
                .map(|(_, d)| {
                    String::from_utf8_lossy(d.split(|&c| c == 0).next().unwrap_or(d)).into_owned()
                });
        }
    }
    Err((io::Error::from_raw_os_error(errno), text))
}

/// Opens a `NETLINK_ROUTE` socket bound to `groups` (0 for a request socket).
fn open_route_socket(groups: u32) -> io::Result<OwnedFd> {
    let fd = sys::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = groups;
    sys::bind(&fd, &sa)?;
    Ok(fd)
}

/// Receives one netlink datagram from the kernel into `buf` (resized to fit; a peek
/// first learns the real size, so dumps are never truncated). Returns `Ok(None)` when
/// the datagram came from a user-space sender, which is dropped.
fn recv_from_kernel(fd: RawFd, buf: &mut Vec<u8>, flags: libc::c_int) -> io::Result<Option<usize>> {
    let (size, _) =
        sys::recvfrom::<libc::sockaddr_nl>(fd, &mut [], flags | libc::MSG_PEEK | libc::MSG_TRUNC)?;
    if buf.len() < size {
        buf.resize(size, 0);
    }
    let (n, from) = sys::recvfrom::<libc::sockaddr_nl>(fd, buf, flags)?;
    Ok((from.nl_pid == 0).then_some(n))
}

/// An IPv4 or IPv6 address record from an `RTM_*ADDR` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddrRecord {
    pub(crate) ifindex: u32,
    pub(crate) prefix: u8,
    pub(crate) addr: IpAddr,
    /// `IFA_F_*` flags (from `IFA_FLAGS` when present, which has all 32 bits).
    pub(crate) flags: u32,
    /// `ifa_scope` (`RT_SCOPE_LINK` for link-local addresses).
    pub(crate) scope: u8,
}

impl AddrRecord {
    /// An IPv6 link-local address that duplicate address detection has cleared.
    pub(crate) fn usable_link_local(&self) -> Option<Ipv6Addr> {
        match self.addr {
            IpAddr::V6(a)
                if self.scope == RT_SCOPE_LINK
                    && self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED) == 0 =>
            {
                Some(a)
            }
            _ => None,
        }
    }

    /// An IPv6 link-local address, usable or not yet.
    pub(crate) fn is_link_local6(&self) -> bool {
        self.addr.is_ipv6() && self.scope == RT_SCOPE_LINK
    }
}

fn parse_addr(payload: &[u8]) -> Option<AddrRecord> {
    if payload.len() < 8 || !matches!(payload[0], AF_INET | AF_INET6) {
        return None;
    }
    let family = payload[0];
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(payload[2]);
    for (t, d) in attrs(&payload[8..]) {
        match t {
            IFA_LOCAL => local = ip_addr(family, d),
            IFA_ADDRESS => address = ip_addr(family, d),
            IFA_FLAGS if d.len() == 4 => flags = u32_at(d, 0),
            _ => {}
        }
    }
    Some(AddrRecord {
        ifindex: u32_at(payload, 4),
        prefix: payload[1],
        addr: local.or(address)?,
        flags,
        scope: payload[3],
    })
}

/// A link record from an `RTM_NEWLINK` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkRecord {
    pub(crate) ifindex: u32,
    pub(crate) flags: u32,
    pub(crate) mac: [u8; 6],
}

fn parse_link(payload: &[u8]) -> Option<LinkRecord> {
    if payload.len() < 16 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (t, d) in attrs(&payload[16..]) {
        if t == IFLA_ADDRESS && d.len() == 6 {
            mac.copy_from_slice(d);
        }
    }
    Some(LinkRecord {
        ifindex: u32_at(payload, 4),
        flags: u32_at(payload, 8),
        mac,
    })
}

/// Turns the messages of one multicast datagram into events (unknown ones skipped).
fn parse_events(datagram: &[u8], out: &mut Vec<NetEvent>) -> Result<(), NlOverrun> {
    for m in messages(datagram) {
        match m.ty {
            RTM_NEWADDR | RTM_DELADDR => {
                if let Some(a) = parse_addr(m.payload) {
                    out.push(if m.ty == RTM_NEWADDR {
                        NetEvent::AddrAdded {
                            ifindex: a.ifindex,
                            addr: a.addr,
                        }
                    } else {
                        NetEvent::AddrRemoved {
                            ifindex: a.ifindex,
                            addr: a.addr,
                        }
                    });
                }
            }
            RTM_NEWLINK | RTM_DELLINK => {
                if let Some(l) = parse_link(m.payload) {
                    out.push(NetEvent::Link {
                        ifindex: l.ifindex,
                        up: m.ty == RTM_NEWLINK && link_flags_up(l.flags),
                    });
                }
            }
            NLMSG_OVERRUN => return Err(NlOverrun),
            _ => {}
        }
    }
    Ok(())
}

/// Marker: the kernel reported lost multicast messages.
struct NlOverrun;

/// A failed request: the errno (or I/O error) and the kernel's ext-ack text, if any.
type ReqError = (io::Error, Option<String>);

/// A request/response `NETLINK_ROUTE` socket for address management.
///
/// Every request asks for and checks the kernel's answer (ACK, error, or the end of
/// a dump), waiting at most 5 s. Methods take `&self` and requests are serialised
/// internally, so one `Netlink` may be shared between threads. The socket operates
/// in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    /// Last sequence number used; the lock also serialises request/answer pairs.
    seq: Mutex<u32>,
}

impl Netlink {
    /// Opens and binds a `NETLINK_ROUTE` socket, with extended acks (kernel error
    /// messages) enabled when the kernel supports them.
    pub fn open() -> io::Result<Netlink> {
        let fd = open_route_socket(0).map_err(|error| NetError::Netlink {
            op: "open NETLINK_ROUTE socket",
            error,
        })?;
        // Best effort: older kernels lack these, and errors are still reported.
        let _ = sys::setsockopt(&fd, SOL_NETLINK, NETLINK_EXT_ACK, &1 as &libc::c_int);
        let _ = sys::setsockopt(&fd, SOL_NETLINK, NETLINK_CAP_ACK, &1 as &libc::c_int);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Ok(Netlink {
            fd,
            seq: Mutex::new(seed),
        })
    }

    /// Sends one request and reads the answer, passing every data message of the
    /// answer to `each(type, payload)`. Non-dump requests are sent with `NLM_F_ACK`
    /// and end at the ACK/error; dumps end at `NLMSG_DONE`. Messages with another
    /// sequence number (late answers to an earlier, timed-out request) are skipped.
    fn request(
        &self,
        ty: u16,
        flags: u16,
        body: &[u8],
        mut each: impl FnMut(u16, &[u8]),
    ) -> Result<(), ReqError> {
        let mut guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *guard = guard.wrapping_add(1);
        let seq = *guard;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };

        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body.len());
        msg.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sys::sendto(&self.fd, &msg, Some(&kernel)).map_err(|e| (e, None))?;

        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !sys::wait_readable(self.fd.as_raw_fd(), left).map_err(|e| (e, None))? {
                return Err((
                    io::Error::new(io::ErrorKind::TimedOut, "no answer from the kernel"),
                    None,
                ));
            }
            let n = match recv_from_kernel(self.fd.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err((e, None)),
            };
            for m in messages(&buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_ERROR => return parse_error(&m),
                    NLMSG_DONE => {
                        // A dump that failed part-way reports a negative errno here.
                        let err = m.payload.get(..4).map_or(0, |b| u32_at(b, 0) as i32);
                        return if err < 0 {
                            Err((io::Error::from_raw_os_error(-err), None))
                        } else {
                            Ok(())
                        };
                    }
                    NLMSG_NOOP => {}
                    t => each(t, m.payload),
                }
            }
        }
    }

    /// `ifaddrmsg` + attributes for `addr/prefix` on `ifindex`. With `label` (an add
    /// request), IPv4 gets a broadcast address and the label, IPv6 `IFA_F_NODAD`.
    fn addr_body(ifindex: u32, addr: IpAddr, prefix: u8, label: Option<&str>) -> Vec<u8> {
        let addr = match addr {
            IpAddr::V4(a) => a,
            IpAddr::V6(a) => {
                let flags = if label.is_some() { IFA_F_NODAD } else { 0 };
                let mut b = vec![
                    AF_INET6,
                    prefix,
                    flags as u8,
                    0, /* RT_SCOPE_UNIVERSE */
                ];
                b.extend_from_slice(&ifindex.to_ne_bytes());
                push_attr(&mut b, IFA_LOCAL, &a.octets());
                push_attr(&mut b, IFA_ADDRESS, &a.octets());
                if label.is_some() {
                    push_attr(&mut b, IFA_FLAGS, &flags.to_ne_bytes());
                }
                return b;
            }
        };
        let mut b = vec![AF_INET, prefix, 0, 0 /* RT_SCOPE_UNIVERSE */];
        b.extend_from_slice(&ifindex.to_ne_bytes());
        push_attr(&mut b, IFA_LOCAL, &addr.octets());
        push_attr(&mut b, IFA_ADDRESS, &addr.octets());
        if let Some(label) = label {
            // /31 (RFC 3021) and /32 have no broadcast address.
            if prefix <= 30 {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                let brd = Ipv4Addr::from(u32::from(addr) | !mask);
                push_attr(&mut b, IFA_BROADCAST, &brd.octets());
            }
            let mut l = label.as_bytes().to_vec();
            l.push(0);
            push_attr(&mut b, IFA_LABEL, &l);
        }
        b
    }

    fn addr_error(
        op: &'static str,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
        (error, kernel_msg): ReqError,
    ) -> io::Error {
        NetError::Address {
            op,
            iface: describe_ifindex(ifindex),
            addr,
            prefix,
            error,
            kernel_msg,
        }
        .into()
    }

    /// Adds `addr/prefix` to interface `ifindex`, with `NLM_F_CREATE | NLM_F_EXCL |
    /// NLM_F_ACK`. IPv4 like `ip addr add addr/prefix brd + dev NAME`: `IFA_LOCAL`,
    /// `IFA_ADDRESS`, `IFA_BROADCAST` (prefix ≤ 30) and `IFA_LABEL` = the interface name.
    /// IPv6 like `ip -6 addr add addr/prefix dev NAME nodad`: `IFA_LOCAL`, `IFA_ADDRESS`
    /// and `IFA_F_NODAD`, so the address is usable at once instead of after duplicate
    /// address detection (a VIP moves between nodes: a DAD probe would only delay it).
    /// An address that is already present (`EEXIST`) is success.
    pub fn add_addr(&self, ifindex: u32, addr: impl Into<IpAddr>, prefix: u8) -> io::Result<()> {
        let addr = addr.into();
        let fail = |e: ReqError| Self::addr_error("add", ifindex, addr, prefix, e);
        let max = if addr.is_ipv6() { 128 } else { 32 };
        if prefix > max {
            return Err(fail((
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("prefix length over {max}"),
                ),
                None,
            )));
        }
        let name = sys::index_to_name(ifindex).ok_or_else(|| {
            fail((
                io::Error::from_raw_os_error(libc::ENODEV),
                Some("no interface with this index".into()),
            ))
        })?;
        let body = Self::addr_body(ifindex, addr, prefix, Some(&name));
        match self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body, |_, _| {}) {
            Ok(()) => Ok(()),
            Err((e, _)) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(fail(e)),
        }
    }

    /// Removes `addr/prefix` from interface `ifindex` (`RTM_DELADDR` with `IFA_LOCAL`
    /// and `IFA_ADDRESS`, so the prefix must match). An address that is not there
    /// (`EADDRNOTAVAIL` / `ENOENT`) is success. As with `ip addr del`, deleting a
    /// primary address also deletes its secondaries unless `promote_secondaries` is set.
    pub fn del_addr(&self, ifindex: u32, addr: impl Into<IpAddr>, prefix: u8) -> io::Result<()> {
        let addr = addr.into();
        let body = Self::addr_body(ifindex, addr, prefix, None);
        match self.request(RTM_DELADDR, 0, &body, |_, _| {}) {
            Ok(()) => Ok(()),
            Err((e, _))
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EADDRNOTAVAIL) | Some(libc::ENOENT)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(Self::addr_error("delete", ifindex, addr, prefix, e)),
        }
    }

    /// Dumps every IPv4 and IPv6 address of the namespace (`RTM_GETADDR`,
    /// `NLM_F_DUMP`), in the kernel's order (IPv4 first; per interface: primaries before
    /// secondaries).
    pub(crate) fn dump_addrs(&self) -> Result<Vec<AddrRecord>, ReqError> {
        let body = [AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0];
        let mut out = Vec::new();
        self.request(RTM_GETADDR, NLM_F_DUMP, &body, |ty, p| {
            if ty == RTM_NEWADDR {
                out.extend(parse_addr(p));
            }
        })?;
        Ok(out)
    }

    /// The IPv4 addresses of interface `ifindex` as `(address, prefix length)`, in the
    /// kernel's order (primaries first).
    pub fn addrs(&self, ifindex: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let all = self.dump_addrs().map_err(|(error, _)| NetError::Netlink {
            op: "dump addresses",
            error,
        })?;
        Ok(all
            .into_iter()
            .filter(|a| a.ifindex == ifindex)
            .filter_map(|a| match a.addr {
                IpAddr::V4(v4) => Some((v4, a.prefix)),
                IpAddr::V6(_) => None,
            })
            .collect())
    }

    /// The IPv6 addresses of interface `ifindex` as `(address, prefix length)`, in the
    /// kernel's order, link-local and tentative ones included.
    pub fn addrs6(&self, ifindex: u32) -> io::Result<Vec<(Ipv6Addr, u8)>> {
        let all = self.dump_addrs().map_err(|(error, _)| NetError::Netlink {
            op: "dump addresses",
            error,
        })?;
        Ok(all
            .into_iter()
            .filter(|a| a.ifindex == ifindex)
            .filter_map(|a| match a.addr {
                IpAddr::V6(v6) => Some((v6, a.prefix)),
                IpAddr::V4(_) => None,
            })
            .collect())
    }

    /// Whether interface `ifindex` has `addr` (IPv4 or IPv6, any prefix length), from
    /// an `RTM_GETADDR` dump.
    pub fn has_addr(&self, ifindex: u32, addr: impl Into<IpAddr>) -> io::Result<bool> {
        let addr = addr.into();
        let all = self.dump_addrs().map_err(|(error, _)| NetError::Netlink {
            op: "dump addresses",
            error,
        })?;
        Ok(all.iter().any(|a| a.ifindex == ifindex && a.addr == addr))
    }

    /// Looks a link up by name (`RTM_GETLINK` with `IFLA_IFNAME`).
    pub(crate) fn link_by_name(&self, name: &str) -> Result<LinkRecord, ReqError> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err((
                io::Error::new(io::ErrorKind::InvalidInput, "invalid interface name"),
                None,
            ));
        }
        let mut body = vec![0u8; 16]; // ifinfomsg, family AF_UNSPEC, index 0
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        push_attr(&mut body, IFLA_IFNAME, &n);
        let mut found = None;
        self.request(RTM_GETLINK, 0, &body, |ty, p| {
            if ty == RTM_NEWLINK && found.is_none() {
                found = parse_link(p);
            }
        })?;
        found.ok_or_else(|| {
            (
                io::Error::new(io::ErrorKind::InvalidData, "kernel sent no link message"),
                None,
            )
        })
    }
}

impl AsFd for Netlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Listens for link changes and IPv4 and IPv6 address changes in the calling thread's
/// network namespace (`RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`), for
/// every interface.
#[derive(Debug)]
pub struct NetMonitor {
    fd: OwnedFd,
}

impl NetMonitor {
    /// Opens the monitor socket, with a 1 MiB receive buffer (forced when privileged)
    /// so bursts of changes are not lost.
    pub fn open() -> io::Result<NetMonitor> {
        let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        let fd = open_route_socket(groups).map_err(|error| NetError::Netlink {
            op: "open link/address monitor",
            error,
        })?;
        let size: libc::c_int = 1 << 20;
        if sys::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
            let _ = sys::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size);
        }
        Ok(NetMonitor { fd })
    }

    /// Waits up to `timeout` for changes and returns all that are queued, in kernel
    /// order; an empty `Vec` means the timeout passed with nothing relevant.
    ///
    /// If the kernel dropped notifications because the socket buffer was full, this
    /// fails with `ENOBUFS` ([`NetMonitor::is_overrun`] is true); the socket stays
    /// usable, but the caller must re-read the state it tracks (for example with
    /// [`Netlink::has_addr`] and [`super::if_info`]) since events were lost.
    pub fn recv(&self, timeout: Duration) -> io::Result<Vec<NetEvent>> {
        let deadline = Instant::now().checked_add(timeout);
        let overrun = || -> io::Error {
            NetError::Netlink {
                op: "monitor overrun, events lost",
                error: io::Error::from_raw_os_error(libc::ENOBUFS),
            }
            .into()
        };
        let mut events = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            let readable = sys::wait_readable(self.fd.as_raw_fd(), left).map_err(|error| {
                NetError::Netlink {
                    op: "wait for monitor events",
                    error,
                }
            })?;
            if !readable {
                return Ok(events);
            }
            // Drain everything queued without blocking.
            loop {
                match recv_from_kernel(self.fd.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT) {
                    Ok(Some(n)) => parse_events(&buf[..n], &mut events).map_err(|_| overrun())?,
                    Ok(None) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(overrun()),
                    Err(error) => {
                        return Err(NetError::Netlink {
                            op: "receive monitor events",
                            error,
                        }
                        .into())
                    }
                }
            }
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// Whether an error from [`NetMonitor::recv`] means notifications were lost.
    pub fn is_overrun(e: &io::Error) -> bool {
        super::raw_os_error(e) == Some(libc::ENOBUFS)
    }
}

impl AsFd for NetMonitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(align4(m.len()), 0);
        m
    }

    #[test]
    fn addr_body_matches_ip_addr_add() {
        let b = Netlink::addr_body(7, Ipv4Addr::new(192, 0, 2, 100).into(), 24, Some("eth0"));
        assert_eq!(&b[..8], &[2, 24, 0, 0, 7, 0, 0, 0][..]);
        let a: Vec<_> = attrs(&b[8..]).collect();
        assert_eq!(
            a,
            vec![
                (IFA_LOCAL, &[192, 0, 2, 100][..]),
                (IFA_ADDRESS, &[192, 0, 2, 100][..]),
                (IFA_BROADCAST, &[192, 0, 2, 255][..]),
                (IFA_LABEL, &b"eth0\0"[..]),
            ]
        );
        let b = Netlink::addr_body(7, Ipv4Addr::new(192, 0, 2, 100).into(), 32, Some("eth0"));
        assert!(attrs(&b[8..]).all(|(t, _)| t != IFA_BROADCAST));
        let b = Netlink::addr_body(7, Ipv4Addr::new(192, 0, 2, 100).into(), 0, Some("eth0"));
        assert!(attrs(&b[8..]).any(|(t, d)| t == IFA_BROADCAST && d == [255; 4]));
    }

    #[test]
    fn ipv6_addr_body_has_nodad_and_no_label() {
        let vip: Ipv6Addr = "2001:db8:0:1::100".parse().unwrap();
        let b = Netlink::addr_body(7, vip.into(), 64, Some("eth0"));
        assert_eq!(&b[..8], &[10, 64, 2, 0, 7, 0, 0, 0][..]);
        let a: Vec<_> = attrs(&b[8..]).collect();
        assert_eq!(
            a,
            vec![
                (IFA_LOCAL, &vip.octets()[..]),
                (IFA_ADDRESS, &vip.octets()[..]),
                (IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes()[..]),
            ]
        );
        // A delete request carries the address only.
        let b = Netlink::addr_body(7, vip.into(), 64, None);
        assert_eq!(&b[..8], &[10, 64, 0, 0, 7, 0, 0, 0][..]);
        assert_eq!(attrs(&b[8..]).count(), 2);
    }

    #[test]
    fn ipv6_records_and_link_local() {
        let ll: Ipv6Addr = "fe80::ff:fe00:1".parse().unwrap();
        let mut m = vec![AF_INET6, 64, IFA_F_TENTATIVE as u8, RT_SCOPE_LINK];
        m.extend_from_slice(&3u32.to_ne_bytes());
        push_attr(&mut m, IFA_ADDRESS, &ll.octets());
        let r = parse_addr(&m).unwrap();
        assert_eq!(r.addr, IpAddr::V6(ll));
        assert!(r.is_link_local6());
        assert_eq!(r.usable_link_local(), None, "tentative");
        // IFA_FLAGS (32 bits) wins over the 8-bit field: DAD has finished.
        push_attr(&mut m, IFA_FLAGS, &0x80u32.to_ne_bytes());
        assert_eq!(parse_addr(&m).unwrap().usable_link_local(), Some(ll));
        let mut ev = Vec::new();
        assert!(parse_events(&nlmsg(RTM_DELADDR, 0, 0, &m), &mut ev).is_ok());
        assert_eq!(
            ev,
            vec![NetEvent::AddrRemoved {
                ifindex: 3,
                addr: IpAddr::V6(ll)
            }]
        );
    }

    #[test]
    fn events_from_messages() {
        let mut addr = vec![AF_INET, 24, 0, 0];
        addr.extend_from_slice(&3u32.to_ne_bytes());
        push_attr(&mut addr, IFA_ADDRESS, &[192, 0, 2, 9]);
        push_attr(&mut addr, IFA_LOCAL, &[192, 0, 2, 100]);
        let mut link = vec![0u8, 0, 1, 0];
        link.extend_from_slice(&5i32.to_ne_bytes());
        link.extend_from_slice(&(IFF_UP | IFF_RUNNING).to_ne_bytes());
        link.extend_from_slice(&0u32.to_ne_bytes());
        let mut down = link.clone();
        down[8..12].copy_from_slice(&IFF_UP.to_ne_bytes());

        let mut dgram = nlmsg(RTM_DELADDR, 0, 0, &addr);
        dgram.extend(nlmsg(RTM_NEWADDR, 0, 0, &addr));
        dgram.extend(nlmsg(RTM_NEWLINK, 0, 0, &link));
        dgram.extend(nlmsg(RTM_NEWLINK, 0, 0, &down));
        dgram.extend(nlmsg(RTM_DELLINK, 0, 0, &link));
        dgram.extend(nlmsg(99, 0, 0, &[1, 2, 3]));
        let mut ev = Vec::new();
        assert!(parse_events(&dgram, &mut ev).is_ok());
        let vip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
        assert_eq!(
            ev,
            vec![
                NetEvent::AddrRemoved {
                    ifindex: 3,
                    addr: vip
                },
                NetEvent::AddrAdded {
                    ifindex: 3,
                    addr: vip
                },
                NetEvent::Link {
                    ifindex: 5,
                    up: true
                },
                NetEvent::Link {
                    ifindex: 5,
                    up: false
                },
                NetEvent::Link {
                    ifindex: 5,
                    up: false
                },
            ]
        );
        // Truncated / garbage input never panics.
        for cut in 0..dgram.len() {
            let _ = parse_events(&dgram[..cut], &mut Vec::new());
        }
    }

    #[test]
    fn error_with_ext_ack() {
        let mut p = (-libc::EEXIST).to_ne_bytes().to_vec();
        p.extend(nlmsg(RTM_NEWADDR, 0, 1, &[])); // echoed header only (capped)
        push_attr(&mut p, NLMSGERR_ATTR_MSG, b"address exists\0");
        let m = nlmsg(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 1, &p);
        let msg = messages(&m).next().unwrap();
        let (e, text) = parse_error(&msg).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(text.as_deref(), Some("address exists"));
        let ack = nlmsg(NLMSG_ERROR, 0, 1, &[0; 20]);
        assert!(parse_error(&messages(&ack).next().unwrap()).is_ok());
    }
}
