//! The data server: reads, write chains and chunk queries from clients and other
//! chunkservers, one thread per connection.
//!
//! A malformed or truncated packet closes that connection with a logged reason; every
//! other connection carries on.

use crate::net::{self, read_packet, send, PacketError};
use crate::store::{Session, Status, Store};
use antler_protocol::codes::{
    status, BLOCK_SIZE, CHUNK_SIZE, CLTOCS_MAXPACKETSIZE, CSTOCS_MAXPACKETSIZE,
};
use antler_protocol::cstoma::CsToMaster;
use antler_protocol::data::{self, ReadReq, ToCs, WriteReq, READ_DATA_PREFIX};
use antler_protocol::frame::HEADER_LEN;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info_span, warn};

/// How long a connection may stay silent in the middle of an operation.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the next link of a write chain to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts data connections until the listener fails.
pub fn serve(listener: TcpListener, store: Arc<Store>) {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                let store = Arc::clone(&store);
                let _ = std::thread::Builder::new()
                    .name("csserv-conn".into())
                    .spawn(move || {
                        let peer = s
                            .peer_addr()
                            .map(|a| a.to_string())
                            .unwrap_or_else(|_| "?".into());
                        let span = info_span!("data_conn", %peer);
                        let _g = span.enter();
                        Conn::new(s, store).run();
                    });
            }
            Err(e) => {
                warn!("accept error: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

struct Conn {
    s: TcpStream,
    peer: Option<SocketAddr>,
    store: Arc<Store>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

enum Next {
    Keep,
    Close,
}

impl Conn {
    fn new(s: TcpStream, store: Arc<Store>) -> Self {
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(Duration::from_secs(600)));
        let _ = s.set_write_timeout(Some(IO_TIMEOUT));
        Conn {
            peer: s.peer_addr().ok(),
            s,
            store,
            buf: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn run(&mut self) {
        loop {
            let t = match read_packet(&mut self.s, &mut self.buf, CLTOCS_MAXPACKETSIZE) {
                Ok(Some(t)) => t,
                Ok(None) => return,
                Err(PacketError::Io(e))
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    debug!("idle connection timed out");
                    return;
                }
                Err(e) => {
                    warn!(peer = ?self.peer, "closing data connection: {e}");
                    return;
                }
            };
            let payload = std::mem::take(&mut self.buf);
            let next = match ToCs::decode(t, &payload) {
                Ok(msg) => self.handle(msg),
                Err(e) => {
                    warn!(peer = ?self.peer, "closing data connection: {e}");
                    Ok(Next::Close)
                }
            };
            self.buf = payload;
            match next {
                Ok(Next::Keep) => {}
                Ok(Next::Close) => return,
                Err(e) => {
                    debug!(peer = ?self.peer, "data connection ended: {e}");
                    return;
                }
            }
        }
    }

    fn handle(&mut self, msg: ToCs<'_>) -> io::Result<Next> {
        match msg {
            ToCs::Nop => Ok(Next::Keep),
            ToCs::GetVersion { msgid } => {
                send(&mut self.s, &data::version_reply(msgid))?;
                Ok(Next::Keep)
            }
            ToCs::Read(r) => self.read(r),
            ToCs::Write(w) => self.write(w),
            ToCs::WriteData(_) | ToCs::WriteFinish { .. } => {
                warn!(peer = ?self.peer, "write data without an open write chain; closing");
                Ok(Next::Close)
            }
            ToCs::GetChunkBlocks { chunkid, version } => {
                let (blocks, st) = match self.store.blocks(chunkid, version) {
                    Ok(b) => (b, status::OK),
                    Err(s) => (0, s),
                };
                send(
                    &mut self.s,
                    &CsToMaster::ChunkBlocks {
                        chunkid,
                        version,
                        blocks,
                        status: st,
                    }
                    .encode(),
                )?;
                Ok(Next::Keep)
            }
            ToCs::GetChunkChecksum { chunkid, version } => {
                let result = self
                    .store
                    .crc_table(chunkid, version)
                    .map(|t| antler_protocol::crc::crc32(&t[..]));
                send(
                    &mut self.s,
                    &CsToMaster::ChunkChecksum {
                        chunkid,
                        version,
                        result,
                    }
                    .encode(),
                )?;
                Ok(Next::Keep)
            }
            ToCs::GetChunkChecksumTab { chunkid, version } => {
                let result = self.store.crc_table(chunkid, version);
                send(
                    &mut self.s,
                    &CsToMaster::ChunkChecksumTab {
                        chunkid,
                        version,
                        result,
                    }
                    .encode(),
                )?;
                Ok(Next::Keep)
            }
        }
    }

    fn read(&mut self, r: ReadReq) -> io::Result<Next> {
        let st = |s: &mut TcpStream, code: Status| {
            send(s, &data::read_status(r.chunkid, code)).map(|_| Next::Keep)
        };
        if r.size == 0 {
            return st(&mut self.s, status::OK);
        }
        if r.size > CHUNK_SIZE {
            return st(&mut self.s, status::WRONGSIZE);
        }
        if r.offset >= CHUNK_SIZE || r.offset as u64 + r.size as u64 > CHUNK_SIZE as u64 {
            return st(&mut self.s, status::WRONGOFFSET);
        }
        let sess = match self.store.session(r.chunkid, r.version) {
            Ok(s) => s,
            Err(code) => return st(&mut self.s, code),
        };
        sess.precache(r.offset, r.size);
        const RUN: usize = 16;
        let slot = HEADER_LEN + READ_DATA_PREFIX + BLOCK_SIZE;
        let mut pkt = vec![0u8; RUN * slot + HEADER_LEN + 9];
        let (mut offset, mut left) = (r.offset, r.size);
        // size > 0 here, so the loop ends by sending the last piece with the status.
        loop {
            let blocknum = (offset / BLOCK_SIZE as u32) as u16;
            let boff = offset % BLOCK_SIZE as u32;
            let prefix = HEADER_LEN + READ_DATA_PREFIX;
            let mut end;
            if boff == 0 && left >= BLOCK_SIZE as u32 {
                // Whole blocks: one preadv for up to RUN blocks, one write for all packets.
                let n = ((left / BLOCK_SIZE as u32) as usize).min(RUN) as u16;
                match sess.read_blocks(blocknum, n, &mut pkt, prefix, slot) {
                    Ok(crcs) => {
                        for (k, crc) in crcs.iter().enumerate() {
                            let h = data::read_data_header(
                                r.chunkid,
                                blocknum + k as u16,
                                0,
                                BLOCK_SIZE as u32,
                                *crc,
                            );
                            pkt[k * slot..k * slot + prefix].copy_from_slice(&h);
                        }
                        end = n as usize * slot;
                        let bytes = n as u32 * BLOCK_SIZE as u32;
                        offset += bytes;
                        left -= bytes;
                    }
                    Err(code) => {
                        drop(sess);
                        return st(&mut self.s, code);
                    }
                }
            } else {
                let bsize = left.min(BLOCK_SIZE as u32 - boff);
                let out = &mut pkt[prefix..prefix + bsize as usize];
                match sess.read(blocknum, boff, out, &mut self.scratch) {
                    Ok(crc) => {
                        pkt[..prefix].copy_from_slice(&data::read_data_header(
                            r.chunkid,
                            blocknum,
                            boff as u16,
                            bsize,
                            crc,
                        ));
                        end = prefix + bsize as usize;
                        offset += bsize;
                        left -= bsize;
                    }
                    Err(code) => {
                        drop(sess);
                        return st(&mut self.s, code);
                    }
                }
            }
            if left == 0 {
                // Last piece: the final status goes in the same write.
                let status = data::read_status(r.chunkid, status::OK);
                pkt[end..end + status.len()].copy_from_slice(&status);
                end += status.len();
                drop(sess);
                return self.s.write_all(&pkt[..end]).map(|_| Next::Keep);
            }
            self.s.write_all(&pkt[..end])?;
        }
    }

    fn write(&mut self, w: WriteReq) -> io::Result<Next> {
        let chunkid = w.chunkid;
        let fail = |s: &mut TcpStream, code: Status| {
            send(s, &data::write_status(chunkid, 0, code)).map(|_| Next::Keep)
        };
        match w.chain.first() {
            Some(&(ip, port)) => debug!(
                "write chain chunk={chunkid:016X} version={} next={}",
                w.version,
                net::ip_port(ip, port)
            ),
            None => debug!(
                "write chain chunk={chunkid:016X} version={} next=none",
                w.version
            ),
        }
        let down = match w.chain.first() {
            None => None,
            Some(&(ip, port)) => {
                let addr = net::ip_port(ip, port);
                let mut d = None;
                for attempt in 0..3 {
                    match net::connect(addr, CONNECT_TIMEOUT) {
                        Ok(mut s) => {
                            let pkt =
                                data::encode_write(w.protocol, chunkid, w.version, &w.chain[1..]);
                            if send(&mut s, &pkt).is_ok() {
                                d = Some(s);
                                break;
                            }
                        }
                        Err(e) => warn!(%addr, attempt, "write chain: connect failed: {e}"),
                    }
                }
                match d {
                    Some(s) => Some(s),
                    None => return fail(&mut self.s, status::CANTCONNECT),
                }
            }
        };
        let sess = match self.store.session(chunkid, w.version) {
            Ok(s) => s,
            Err(code) => {
                if let Some(d) = down {
                    let _ = d.shutdown(Shutdown::Both);
                }
                return fail(&mut self.s, code);
            }
        };
        match down {
            None => self.write_last(sess, chunkid, w.version),
            Some(d) => self.write_middle(sess, d, chunkid, w.version),
        }
    }

    /// Last (or only) link of a chain: write locally and answer each piece.
    fn write_last(&mut self, sess: Session, chunkid: u64, version: u32) -> io::Result<Next> {
        send(&mut self.s, &data::write_status(chunkid, 0, status::OK))?;
        let _ = self.s.set_read_timeout(Some(IO_TIMEOUT));
        let mut last_nop = Instant::now() - Duration::from_secs(1);
        let mut buf = Vec::new();
        loop {
            let t = match read_packet(&mut self.s, &mut buf, CLTOCS_MAXPACKETSIZE) {
                Ok(Some(t)) => t,
                Ok(None) => return Ok(Next::Close),
                Err(e) => {
                    warn!(peer = ?self.peer, "write chain from upstream broken: {e}");
                    return Ok(Next::Close);
                }
            };
            match ToCs::decode(t, &buf) {
                Ok(ToCs::WriteData(d)) => {
                    if d.chunkid != chunkid {
                        send(
                            &mut self.s,
                            &data::write_status(chunkid, d.writeid, status::WRONGCHUNKID),
                        )?;
                        return Ok(Next::Close);
                    }
                    let r = sess.write(
                        d.blocknum,
                        d.offset as u32,
                        d.data,
                        d.crc,
                        &mut self.scratch,
                    );
                    let code = r.err().unwrap_or(status::OK);
                    send(&mut self.s, &data::write_status(chunkid, d.writeid, code))?;
                    if code != status::OK {
                        let _ = sess.finish();
                        return Ok(Next::Keep);
                    }
                }
                Ok(ToCs::WriteFinish {
                    chunkid: c,
                    version: v,
                }) => {
                    let r = sess.finish();
                    if c != chunkid || v != version {
                        send(
                            &mut self.s,
                            &data::write_status(chunkid, 0, status::WRONGCHUNKID),
                        )?;
                    } else if let Err(code) = r {
                        send(&mut self.s, &data::write_status(chunkid, 0, code))?;
                    }
                    let _ = self.s.set_read_timeout(Some(Duration::from_secs(600)));
                    return Ok(Next::Keep);
                }
                Ok(ToCs::Nop) => {
                    if last_nop.elapsed() > Duration::from_millis(500) {
                        send(&mut self.s, &CsToMaster::Nop.encode())?;
                        last_nop = Instant::now();
                    }
                }
                Ok(other) => {
                    warn!(peer = ?self.peer, "unexpected packet in a write chain: {other:?}");
                    return Ok(Next::Close);
                }
                Err(e) => {
                    warn!(peer = ?self.peer, "closing data connection: {e}");
                    return Ok(Next::Close);
                }
            }
        }
    }

    /// Middle link: forward every piece downstream, write it locally, and answer
    /// upstream once both the local write and the downstream status are in, in order.
    fn write_middle(
        &mut self,
        sess: Session,
        mut down: TcpStream,
        chunkid: u64,
        version: u32,
    ) -> io::Result<Next> {
        let _ = down.set_nodelay(true);
        let _ = down.set_write_timeout(Some(IO_TIMEOUT));
        let _ = self.s.set_read_timeout(Some(IO_TIMEOUT));
        let up_w = Arc::new(Mutex::new(self.s.try_clone()?));
        let acks = Arc::new(Acks::default());
        let relay = {
            let down_r = down.try_clone()?;
            let up_w = Arc::clone(&up_w);
            let acks = Arc::clone(&acks);
            std::thread::Builder::new()
                .name("chain-relay".into())
                .spawn(move || relay_statuses(down_r, up_w, acks, chunkid))?
        };
        let mut buf = Vec::new();
        let mut last_nop = Instant::now() - Duration::from_secs(1);
        let mut outcome = Next::Close;
        loop {
            let t = match read_packet(&mut self.s, &mut buf, CLTOCS_MAXPACKETSIZE) {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(e) => {
                    warn!(peer = ?self.peer, "write chain from upstream broken: {e}");
                    break;
                }
            };
            if acks.failed() {
                break;
            }
            match ToCs::decode(t, &buf) {
                Ok(ToCs::WriteData(d)) => {
                    if d.chunkid != chunkid {
                        let _ = send(
                            &mut *up_w.lock().unwrap(),
                            &data::write_status(chunkid, 0, status::WRONGCHUNKID),
                        );
                        break;
                    }
                    let mut pkt = Vec::with_capacity(HEADER_LEN + buf.len());
                    pkt.extend_from_slice(
                        &antler_protocol::frame::Header {
                            msg_type: t,
                            len: buf.len() as u32,
                        }
                        .encode(),
                    );
                    pkt.extend_from_slice(&buf);
                    if let Err(e) = down.write_all(&pkt) {
                        warn!("write chain: forwarding downstream failed: {e}");
                        let _ = send(
                            &mut *up_w.lock().unwrap(),
                            &data::write_status(chunkid, 0, status::DISCONNECTED),
                        );
                        break;
                    }
                    let code = sess
                        .write(
                            d.blocknum,
                            d.offset as u32,
                            d.data,
                            d.crc,
                            &mut self.scratch,
                        )
                        .err()
                        .unwrap_or(status::OK);
                    acks.local(d.writeid, code, &up_w, chunkid);
                }
                Ok(ToCs::WriteFinish {
                    chunkid: c,
                    version: v,
                }) => {
                    if c != chunkid || v != version {
                        let _ = send(
                            &mut *up_w.lock().unwrap(),
                            &data::write_status(chunkid, 0, status::WRONGCHUNKID),
                        );
                        break;
                    }
                    let _ = down.write_all(
                        &ToCs::WriteFinish {
                            chunkid: c,
                            version: v,
                        }
                        .encode(),
                    );
                    acks.wait_drained(IO_TIMEOUT);
                    outcome = if acks.failed() {
                        Next::Close
                    } else {
                        Next::Keep
                    };
                    break;
                }
                Ok(ToCs::Nop) => {
                    let _ = down.write_all(&ToCs::Nop.encode());
                    if last_nop.elapsed() > Duration::from_millis(500) {
                        let _ = send(&mut *up_w.lock().unwrap(), &ToCs::Nop.encode());
                        last_nop = Instant::now();
                    }
                }
                Ok(other) => {
                    warn!(peer = ?self.peer, "unexpected packet in a write chain: {other:?}");
                    break;
                }
                Err(e) => {
                    warn!(peer = ?self.peer, "closing data connection: {e}");
                    break;
                }
            }
        }
        acks.finish();
        let _ = down.shutdown(Shutdown::Both);
        let _ = relay.join();
        let _ = sess.finish();
        let _ = self.s.set_read_timeout(Some(Duration::from_secs(600)));
        Ok(outcome)
    }
}

/// Pairs local write results with downstream statuses, in write order.
#[derive(Default)]
struct Acks {
    st: Mutex<AckState>,
    cv: Condvar,
}

#[derive(Default)]
struct AckState {
    local: VecDeque<(u32, Status)>,
    remote: VecDeque<(u32, Status)>,
    failed: bool,
    finishing: bool,
}

impl Acks {
    fn local(&self, writeid: u32, code: Status, up: &Mutex<TcpStream>, chunkid: u64) {
        let mut st = self.st.lock().unwrap();
        st.local.push_back((writeid, code));
        self.emit(&mut st, up, chunkid);
    }

    fn remote(&self, writeid: u32, code: Status, up: &Mutex<TcpStream>, chunkid: u64) {
        let mut st = self.st.lock().unwrap();
        st.remote.push_back((writeid, code));
        self.emit(&mut st, up, chunkid);
    }

    fn emit(&self, st: &mut AckState, up: &Mutex<TcpStream>, chunkid: u64) {
        while !st.local.is_empty() && !st.remote.is_empty() {
            let (lw, lc) = st.local.pop_front().expect("non-empty");
            let (rw, rc) = st.remote.pop_front().expect("non-empty");
            let code = if lw != rw {
                warn!(
                    local = lw,
                    downstream = rw,
                    "write chain: statuses out of order"
                );
                status::DISCONNECTED
            } else if lc != status::OK {
                lc
            } else {
                rc
            };
            if send(
                &mut *up.lock().unwrap(),
                &data::write_status(chunkid, lw, code),
            )
            .is_err()
                || code != status::OK
            {
                st.failed = true;
            }
        }
        self.cv.notify_all();
    }

    fn fail(&self) {
        self.st.lock().unwrap().failed = true;
        self.cv.notify_all();
    }

    fn failed(&self) -> bool {
        self.st.lock().unwrap().failed
    }

    fn finishing(&self) -> bool {
        self.st.lock().unwrap().finishing
    }

    fn finish(&self) {
        self.st.lock().unwrap().finishing = true;
    }

    fn wait_drained(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut st = self.st.lock().unwrap();
        while !st.failed && !st.local.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                st.failed = true;
                return;
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

fn relay_statuses(mut down: TcpStream, up: Arc<Mutex<TcpStream>>, acks: Arc<Acks>, chunkid: u64) {
    let _ = down.set_read_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::new();
    loop {
        let t = match read_packet(&mut down, &mut buf, CSTOCS_MAXPACKETSIZE) {
            Ok(Some(t)) => t,
            Ok(None) | Err(_) => {
                if !acks.finishing() {
                    warn!("write chain: downstream connection lost");
                    let _ = send(
                        &mut *up.lock().unwrap(),
                        &data::write_status(chunkid, 0, status::DISCONNECTED),
                    );
                }
                acks.fail();
                return;
            }
        };
        match data::FromCs::decode(t, &buf) {
            Ok(data::FromCs::WriteStatus {
                writeid: 0,
                status: code,
                ..
            }) => {
                // Chain ready (OK) or a chain-wide error: pass it on as is.
                let _ = send(
                    &mut *up.lock().unwrap(),
                    &data::write_status(chunkid, 0, code),
                );
                if code != status::OK {
                    acks.fail();
                    return;
                }
            }
            Ok(data::FromCs::WriteStatus {
                writeid,
                status: code,
                ..
            }) => acks.remote(writeid, code, &up, chunkid),
            Ok(data::FromCs::Nop) => {}
            Ok(other) => {
                warn!("write chain: unexpected packet from downstream: {other:?}");
                acks.fail();
                return;
            }
            Err(e) => {
                warn!("write chain: bad packet from downstream: {e}");
                let _ = send(
                    &mut *up.lock().unwrap(),
                    &data::write_status(chunkid, 0, status::DISCONNECTED),
                );
                acks.fail();
                return;
            }
        }
    }
}
