//! Sending complete Ethernet frames (gratuitous ARP, unsolicited neighbour
//! advertisements) through an `AF_PACKET` socket.

use super::{sys, NetError};
use crate::packet::{garp_frame, na_frame};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

const ETH_P_ARP: u16 = 0x0806;

/// An `AF_PACKET`/`SOCK_RAW` socket bound to one interface, for sending whole
/// Ethernet frames such as [`crate::packet::garp_frame`] and [`crate::packet::na_frame`].
///
/// The socket is opened with protocol 0, so it never queues received frames.
/// Methods take `&self`; the type is `Send + Sync`.
#[derive(Debug)]
pub struct GarpSender {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
}

impl GarpSender {
    /// Opens the socket on interface `ifname` (needs `CAP_NET_RAW`), in the calling
    /// thread's network namespace.
    pub fn open(ifname: &str) -> io::Result<GarpSender> {
        let fail = |op: &'static str| {
            move |error: io::Error| -> io::Error {
                NetError::Interface {
                    ifname: ifname.to_string(),
                    op,
                    error,
                }
                .into()
            }
        };
        let ifindex = sys::name_to_index(ifname).map_err(fail("look up interface index"))?;
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
            .map_err(fail("open AF_PACKET socket"))?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = 0; // send only: do not subscribe to any received frames
        sll.sll_ifindex = ifindex as libc::c_int;
        sys::bind(&fd, &sll).map_err(fail("bind AF_PACKET socket"))?;
        Ok(GarpSender {
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

    /// Sends one complete Ethernet frame (destination MAC first, then source MAC and
    /// EtherType) out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_ifindex = self.ifindex as libc::c_int;
        let ethertype = frame
            .get(12..14)
            .map_or(ETH_P_ARP, |t| u16::from_be_bytes([t[0], t[1]]));
        sll.sll_protocol = ethertype.to_be();
        sll.sll_halen = 6;
        if let Some(dst) = frame.get(..6) {
            sll.sll_addr[..6].copy_from_slice(dst);
        }
        sys::sendto(&self.fd, frame, Some(&sll)).map_err(|error| {
            NetError::Interface {
                ifname: self.ifname.clone(),
                op: "send Ethernet frame",
                error,
            }
            .into()
        })
    }

    /// Sends `repeat` rounds of gratuitous ARP, one [`garp_frame`]`(mac, vip)` per
    /// address in `vips` per round, sleeping `interval` between rounds (not after the
    /// last). Blocks the calling thread for `(repeat - 1) * interval`. Stops at the
    /// first failed send.
    pub fn send_burst(
        &self,
        mac: [u8; 6],
        vips: &[Ipv4Addr],
        repeat: u32,
        interval: Duration,
    ) -> io::Result<()> {
        for round in 0..repeat {
            if round > 0 && !interval.is_zero() {
                std::thread::sleep(interval);
            }
            for &vip in vips {
                self.send(&garp_frame(mac, vip))?;
            }
        }
        Ok(())
    }
}

impl GarpSender {
    /// Sends `repeat` rounds of unsolicited neighbour advertisements, one
    /// [`na_frame`]`(mac, vip, router)` per address in `vips` per round, sleeping
    /// `interval` between rounds (not after the last): the IPv6 counterpart of
    /// [`GarpSender::send_burst`]. Stops at the first failed send.
    pub fn send_na_burst(
        &self,
        mac: [u8; 6],
        vips: &[Ipv6Addr],
        router: bool,
        repeat: u32,
        interval: Duration,
    ) -> io::Result<()> {
        for round in 0..repeat {
            if round > 0 && !interval.is_zero() {
                std::thread::sleep(interval);
            }
            for &vip in vips {
                self.send(&na_frame(mac, vip, router))?;
            }
        }
        Ok(())
    }
}

impl AsFd for GarpSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
