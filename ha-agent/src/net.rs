//! Linux networking for the agent: interface facts, the VRRP raw sockets, virtual
//! address management and change notifications over rtnetlink, and gratuitous ARP /
//! unsolicited neighbour advertisements.
//!
//! - [`if_info`] / [`primary_ipv4`] / [`link_local_ipv6`]: index, MAC, state and
//!   addresses of a link; the advert source address of each family.
//! - [`VrrpSocket`]: raw IPv4 protocol 112 socket bound to an interface.
//! - [`Vrrp6Socket`]: raw IPv6 protocol 112 socket bound to an interface.
//! - [`Netlink`]: add / delete / query IPv4 and IPv6 addresses (hand-written
//!   `NETLINK_ROUTE`).
//! - [`NetMonitor`]: link up/down and IPv4/IPv6 address add/remove events.
//! - [`GarpSender`]: `AF_PACKET` socket sending [`crate::packet::garp_frame`]s and
//!   [`crate::packet::na_frame`]s.
//!
//! Everything here works in the network namespace of the *calling thread* at the
//! time a socket is opened (nothing reads `/sys`, whose view is fixed at mount time),
//! so a thread that has `setns(2)`-ed into a namespace sees that namespace.
//!
//! Errors are `io::Error`s whose message names the interface or address (they wrap a
//! [`NetError`]); [`raw_os_error`] recovers the errno underneath.

mod garp;
mod netlink;
pub(crate) mod sys;
mod vrrp6_socket;
mod vrrp_socket;

pub use garp::GarpSender;
pub use netlink::{NetEvent, NetMonitor, Netlink};
pub use vrrp6_socket::{Datagram6, Vrrp6Socket};
pub use vrrp_socket::VrrpSocket;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

/// What failed, and on which interface or address. Converted into `io::Error` (same
/// [`io::ErrorKind`] as the underlying error) by every function of this module.
#[derive(Debug, Error)]
pub enum NetError {
    /// An operation on a named interface failed.
    #[error("interface {ifname}: {op}: {error}")]
    Interface {
        /// Interface name.
        ifname: String,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        error: io::Error,
    },
    /// Adding or deleting an address failed.
    #[error("{op} {addr}/{prefix} on {iface}: {error}{}", kernel_hint(.kernel_msg))]
    Address {
        /// `"add"` or `"delete"`.
        op: &'static str,
        /// The interface, as `"name (index N)"`, or `"index N"` when it has no name.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix: u8,
        /// The underlying error (the kernel's errno for a refused request).
        error: io::Error,
        /// The kernel's extended-ack explanation, when it gave one.
        kernel_msg: Option<String>,
    },
    /// A netlink operation not tied to one interface failed.
    #[error("netlink: {op}: {error}")]
    Netlink {
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        error: io::Error,
    },
    /// The interface has no IPv4 address to use as the advert source.
    #[error("interface {ifname}: no IPv4 address other than the virtual ones {exclude:?}")]
    NoPrimaryAddress {
        /// Interface name.
        ifname: String,
        /// The addresses that were excluded.
        exclude: Vec<Ipv4Addr>,
    },
    /// The interface has no usable IPv6 link-local address to send adverts from.
    #[error(
        "interface {ifname}: no usable IPv6 link-local address{}",
        if *.tentative { " (only a tentative one: duplicate address detection has not finished)" } else { " (is IPv6 enabled on it?)" }
    )]
    NoLinkLocal {
        /// Interface name.
        ifname: String,
        /// A link-local address exists but is still tentative (or failed DAD).
        tentative: bool,
    },
}

fn kernel_hint(msg: &Option<String>) -> String {
    match msg {
        Some(m) if !m.is_empty() => format!(" (kernel: {m})"),
        _ => String::new(),
    }
}

impl NetError {
    /// The underlying I/O error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            NetError::Interface { error, .. }
            | NetError::Address { error, .. }
            | NetError::Netlink { error, .. } => Some(error),
            NetError::NoPrimaryAddress { .. } | NetError::NoLinkLocal { .. } => None,
        }
    }
}

impl From<NetError> for io::Error {
    fn from(e: NetError) -> io::Error {
        let kind = e
            .io_error()
            .map_or(io::ErrorKind::AddrNotAvailable, io::Error::kind);
        io::Error::new(kind, e)
    }
}

/// The errno behind an error from this module: `e.raw_os_error()`, or that of the
/// wrapped [`NetError`]'s underlying error.
pub fn raw_os_error(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()?
            .downcast_ref::<NetError>()?
            .io_error()?
            .raw_os_error()
    })
}

/// `"name (index N)"`, or `"index N"` when no interface has that index.
fn describe_ifindex(ifindex: u32) -> String {
    match sys::index_to_name(ifindex) {
        Some(n) => format!("{n} (index {ifindex})"),
        None => format!("index {ifindex}"),
    }
}

/// Facts about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfInfo {
    /// Interface index.
    pub index: u32,
    /// Hardware address (all zero for links without an Ethernet address).
    pub mac: [u8; 6],
    /// Administratively up (`IFF_UP`) and operationally running (`IFF_RUNNING`,
    /// which needs carrier).
    pub up: bool,
    /// IPv4 addresses with prefix lengths, in the kernel's order (primaries first).
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with prefix lengths, in the kernel's order (link-local and
    /// tentative ones included).
    pub addrs6: Vec<(Ipv6Addr, u8)>,
}

/// Reads index, MAC, state and IPv4 addresses of interface `name` over rtnetlink
/// (`RTM_GETLINK` by name, `RTM_GETADDR` dump), in the calling thread's namespace.
/// A missing interface fails with `ENODEV`.
pub fn if_info(name: &str) -> io::Result<IfInfo> {
    let fail = |op: &'static str| {
        move |error: io::Error| -> io::Error {
            NetError::Interface {
                ifname: name.to_string(),
                op,
                error,
            }
            .into()
        }
    };
    let nl = Netlink::open().map_err(fail("open netlink"))?;
    let link = nl
        .link_by_name(name)
        .map_err(|(e, _)| e)
        .map_err(fail("look up link"))?;
    let all: Vec<_> = nl
        .dump_addrs()
        .map_err(|(e, _)| e)
        .map_err(fail("list addresses"))?
        .into_iter()
        .filter(|a| a.ifindex == link.ifindex)
        .collect();
    let addrs = all
        .iter()
        .filter_map(|a| match a.addr {
            IpAddr::V4(v4) => Some((v4, a.prefix)),
            IpAddr::V6(_) => None,
        })
        .collect();
    let addrs6 = all
        .iter()
        .filter_map(|a| match a.addr {
            IpAddr::V6(v6) => Some((v6, a.prefix)),
            IpAddr::V4(_) => None,
        })
        .collect();
    Ok(IfInfo {
        index: link.ifindex,
        mac: link.mac,
        up: netlink::link_flags_up(link.flags),
        addrs,
        addrs6,
    })
}

/// The IPv6 link-local address of interface `name` that duplicate address detection
/// has cleared: the source of VRRPv3 adverts over IPv6 (RFC 5798 §5.1.2.1) and the
/// tie-break address. Fails with `AddrNotAvailable` when there is none (IPv6 disabled,
/// or the address is still tentative: the error says which).
pub fn link_local_ipv6(name: &str) -> io::Result<Ipv6Addr> {
    let fail = |error: io::Error| -> io::Error {
        NetError::Interface {
            ifname: name.to_string(),
            op: "list addresses",
            error,
        }
        .into()
    };
    let nl = Netlink::open().map_err(fail)?;
    let link = nl.link_by_name(name).map_err(|(e, _)| fail(e))?;
    let all: Vec<_> = nl
        .dump_addrs()
        .map_err(|(e, _)| fail(e))?
        .into_iter()
        .filter(|a| a.ifindex == link.ifindex)
        .collect();
    if let Some(a) = all.iter().find_map(|a| a.usable_link_local()) {
        return Ok(a);
    }
    Err(NetError::NoLinkLocal {
        ifname: name.to_string(),
        tentative: all.iter().any(|a| a.is_link_local6()),
    }
    .into())
}

/// The first IPv4 address of interface `name` that is not in `exclude` (the virtual
/// addresses), to use as the advert source. Fails with `AddrNotAvailable` when there
/// is none.
pub fn primary_ipv4(name: &str, exclude: &[Ipv4Addr]) -> io::Result<Ipv4Addr> {
    if_info(name)?
        .addrs
        .iter()
        .map(|&(a, _)| a)
        .find(|a| !exclude.contains(a))
        .ok_or_else(|| {
            NetError::NoPrimaryAddress {
                ifname: name.to_string(),
                exclude: exclude.to_vec(),
            }
            .into()
        })
}

/// Whether interface `name` forwards IPv6 (`net.ipv6.conf.NAME.forwarding`), which
/// decides the router flag of its neighbour advertisements. Read from `/proc/sys` in
/// the namespace of the calling process; false when unreadable.
pub fn ipv6_forwarding(name: &str) -> bool {
    if name.contains('/') || name.starts_with('.') {
        return false;
    }
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{name}/forwarding"))
        .is_ok_and(|v| v.trim() == "1")
}

/// Maps an I/O error on interface `ifname` during `op` to a [`NetError::Interface`].
pub(crate) fn if_error<'a>(
    ifname: &'a str,
    op: &'static str,
) -> impl Fn(io::Error) -> io::Error + 'a {
    move |error| {
        NetError::Interface {
            ifname: ifname.to_string(),
            op,
            error,
        }
        .into()
    }
}

/// A raw IP protocol-112 socket of `family` bound to interface `ifname`, with the
/// interface's index; `what` names the socket in errors.
pub(crate) fn raw_vrrp_socket(
    ifname: &str,
    family: libc::c_int,
    what: &'static str,
) -> io::Result<(std::os::fd::OwnedFd, u32)> {
    let ifindex =
        sys::name_to_index(ifname).map_err(if_error(ifname, "look up interface index"))?;
    let fd = sys::socket(
        family,
        libc::SOCK_RAW,
        libc::c_int::from(crate::packet::IPPROTO_VRRP),
    )
    .map_err(if_error(ifname, what))?;
    sys::setsockopt_bytes(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        ifname.as_bytes(),
    )
    .map_err(if_error(ifname, "SO_BINDTODEVICE"))?;
    Ok((fd, ifindex))
}
