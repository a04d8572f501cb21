//! Linux networking for the agent: interface facts, the VRRP raw socket, virtual
//! address management and change notifications over rtnetlink, and gratuitous ARP.
//!
//! - [`if_info`] / [`primary_ipv4`]: index, MAC, state and IPv4 addresses of a link.
//! - [`VrrpSocket`]: raw IP protocol 112 socket bound to an interface.
//! - [`Netlink`]: add / delete / query IPv4 addresses (hand-written `NETLINK_ROUTE`).
//! - [`NetMonitor`]: link up/down and IPv4 address add/remove events.
//! - [`GarpSender`]: `AF_PACKET` socket sending [`crate::packet::garp_frame`]s.
//!
//! Everything here works in the network namespace of the *calling thread* at the
//! time a socket is opened (nothing reads `/sys`, whose view is fixed at mount time),
//! so a thread that has `setns(2)`-ed into a namespace sees that namespace.
//!
//! Errors are `io::Error`s whose message names the interface or address (they wrap a
//! [`NetError`]); [`raw_os_error`] recovers the errno underneath.

mod garp;
mod netlink;
mod sys;
mod vrrp_socket;

pub use garp::GarpSender;
pub use netlink::{NetEvent, NetMonitor, Netlink};
pub use vrrp_socket::VrrpSocket;

use std::io;
use std::net::Ipv4Addr;
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
        addr: Ipv4Addr,
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
            NetError::NoPrimaryAddress { .. } => None,
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
    let addrs = nl
        .dump_addrs()
        .map_err(|(e, _)| e)
        .map_err(fail("list IPv4 addresses"))?
        .into_iter()
        .filter(|a| a.ifindex == link.ifindex)
        .map(|a| (a.addr, a.prefix))
        .collect();
    Ok(IfInfo {
        index: link.ifindex,
        mac: link.mac,
        up: netlink::link_flags_up(link.flags),
        addrs,
    })
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
