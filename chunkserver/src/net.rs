//! Blocking packet I/O on TCP streams, shared by the data server, the write chain,
//! replication and the master connection.

use antler_protocol::frame::{FrameError, Header, HEADER_LEN};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;
use thiserror::Error;

/// Why a packet could not be read.
#[derive(Debug, Error)]
pub enum PacketError {
    /// The socket failed or timed out.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection in the middle of a packet.
    #[error("connection closed in the middle of a packet")]
    Truncated,
    /// The header is unacceptable.
    #[error("{0}")]
    Frame(#[from] FrameError),
}

/// Reads one packet into `buf` (reused between calls). `Ok(None)` is a clean close
/// between packets.
pub fn read_packet(
    s: &mut impl Read,
    buf: &mut Vec<u8>,
    max_len: u32,
) -> Result<Option<u32>, PacketError> {
    let mut hdr = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match s.read(&mut hdr[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(PacketError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let h = Header::decode(&hdr, max_len)?;
    buf.clear();
    buf.resize(h.len as usize, 0);
    s.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            PacketError::Truncated
        } else {
            e.into()
        }
    })?;
    Ok(Some(h.msg_type))
}

/// Writes a complete packet.
pub fn send(s: &mut impl Write, pkt: &[u8]) -> io::Result<()> {
    s.write_all(pkt)
}

/// Connects with a timeout and sets TCP_NODELAY.
pub fn connect(addr: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `a.b.c.d:port` for a wire address.
pub fn ip_port(ip: u32, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip.into(), port)
}
