//! The send side of a peer connection.
//!
//! Frames are appended under the caller's locks, so they leave in the order they were
//! made, and written by whichever thread comes next: a thread that only writes (a FUSE
//! worker, the resync sender) flushes inline and may block on the socket; a thread that
//! also reads (the receiver) only tries without blocking, so two peers can never both
//! sit in `write` with nobody reading; the sender thread takes over what is left and
//! sends a ping when the link has been idle. No thread is woken per frame on the hot path.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most buffers one inline flush writes before handing the rest to the sender thread.
const INLINE_ROUNDS: usize = 4;

struct Inner {
    buf: Vec<u8>,
    flushing: bool,
    closed: bool,
    last_write: Instant,
}

/// Queued bytes for one connection, and the socket they go to.
pub struct Outbox {
    inner: Mutex<Inner>,
    cv: Condvar,
    stream: TcpStream,
    queued: AtomicU64,
}

/// How a flush may wait for the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until everything is written (threads that never read).
    Block,
    /// Write what fits now; the sender thread writes the rest.
    NoBlock,
}

impl Outbox {
    /// An outbox writing to `stream` (its write timeout bounds a blocked write).
    pub fn new(stream: TcpStream) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner {
                buf: Vec::with_capacity(1 << 20),
                flushing: false,
                closed: false,
                last_write: Instant::now(),
            }),
            cv: Condvar::new(),
            stream,
            queued: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes appended and not yet written.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Appends what `encode` adds to the buffer; returns the number of bytes, or `None`
    /// when the connection is closed. The caller flushes (or calls [`Outbox::wake`]).
    pub fn push_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Option<usize> {
        let mut g = self.lock();
        if g.closed {
            return None;
        }
        let before = g.buf.len();
        encode(&mut g.buf);
        let n = g.buf.len() - before;
        self.queued.fetch_add(n as u64, Ordering::Relaxed);
        Some(n)
    }

    /// Appends an encoded frame it may keep (no copy when nothing else is queued).
    pub fn push_owned(&self, frame: Vec<u8>) -> Option<usize> {
        let mut g = self.lock();
        if g.closed {
            return None;
        }
        let n = frame.len();
        if g.buf.is_empty() && !g.flushing && frame.capacity() >= g.buf.capacity() / 2 {
            g.buf = frame;
        } else {
            g.buf.extend_from_slice(&frame);
        }
        self.queued.fetch_add(n as u64, Ordering::Relaxed);
        Some(n)
    }

    /// Asks the sender thread to write what is queued.
    pub fn wake(&self) {
        self.cv.notify_one();
    }

    /// Writes what is queued unless another thread already is; with [`Wait::NoBlock`]
    /// whatever does not fit is left to the sender thread.
    pub fn flush(&self, wait: Wait) {
        let mut g = self.lock();
        if g.flushing || g.closed || g.buf.is_empty() {
            return;
        }
        g.flushing = true;
        let mut spare = Vec::new();
        for round in 0.. {
            let mut out = std::mem::replace(&mut g.buf, spare);
            drop(g);
            let res = write_out(&self.stream, &out, wait);
            g = self.lock();
            match res {
                Ok(n) if n == out.len() => {
                    self.queued.fetch_sub(n as u64, Ordering::Relaxed);
                    g.last_write = Instant::now();
                    out.clear();
                    spare = out;
                    if g.buf.is_empty() {
                        if g.buf.capacity() < spare.capacity() {
                            g.buf = spare;
                        }
                        g.flushing = false;
                        return;
                    }
                    if round + 1 >= INLINE_ROUNDS {
                        g.flushing = false;
                        drop(g);
                        self.cv.notify_one();
                        return;
                    }
                }
                Ok(n) => {
                    // Partial: the rest goes back in front of what was added meanwhile.
                    self.queued.fetch_sub(n as u64, Ordering::Relaxed);
                    if n > 0 {
                        g.last_write = Instant::now();
                    }
                    out.drain(..n);
                    out.extend_from_slice(&g.buf);
                    g.buf = out;
                    g.flushing = false;
                    drop(g);
                    self.cv.notify_one();
                    return;
                }
                Err(e) => {
                    tracing::debug!("send to peer failed: {e}");
                    self.shut(&mut g);
                    return;
                }
            }
        }
    }

    fn shut(&self, g: &mut Inner) {
        g.closed = true;
        g.flushing = false;
        g.buf = Vec::new();
        self.queued.store(0, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
        self.cv.notify_all();
    }

    /// Drops everything queued and stops the sender thread (the connection is gone).
    pub fn close(&self) {
        let mut g = self.lock();
        self.shut(&mut g);
    }

    /// The sender thread: writes what readers left behind and sends `ping` after `idle`
    /// without traffic; `written` runs after each flush. Returns once closed.
    pub fn run_sender(&self, idle: Duration, ping: &[u8], written: impl Fn()) {
        loop {
            let mut g = self.lock();
            loop {
                if g.closed {
                    return;
                }
                if !g.flushing && !g.buf.is_empty() {
                    break;
                }
                let quiet = g.last_write.elapsed();
                if !g.flushing && quiet >= idle {
                    g.buf.extend_from_slice(ping);
                    self.queued.fetch_add(ping.len() as u64, Ordering::Relaxed);
                    break;
                }
                let left = idle.saturating_sub(quiet).max(Duration::from_millis(1));
                g = self
                    .cv
                    .wait_timeout(g, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(g);
            self.flush(Wait::Block);
            written();
        }
    }
}

/// Writes `buf`; returns how much was written (all of it unless `NoBlock` met a full
/// socket buffer).
fn write_out(stream: &TcpStream, buf: &[u8], wait: Wait) -> io::Result<usize> {
    match wait {
        Wait::Block => {
            let mut w = stream;
            w.write_all(buf)?;
            Ok(buf.len())
        }
        Wait::NoBlock => {
            let mut done = 0;
            while done < buf.len() {
                // SAFETY: the pointer and length describe the live slice `buf[done..]`.
                let r = unsafe {
                    libc::send(
                        stream.as_raw_fd(),
                        buf[done..].as_ptr().cast(),
                        buf.len() - done,
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        _ => return Err(e),
                    }
                }
                if r == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                done += r as usize;
            }
            Ok(done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::Arc;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn frames_from_many_threads_arrive_whole_and_in_push_order() {
        let (a, mut b) = pair();
        let ob = Arc::new(Outbox::new(a));
        let order = Arc::new(Mutex::new(0u32));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let ob = Arc::clone(&ob);
                let order = Arc::clone(&order);
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        {
                            // Sequence numbers are taken and pushed under one lock.
                            let mut o = order.lock().unwrap();
                            *o += 1;
                            let v = *o;
                            let mut f = v.to_be_bytes().to_vec();
                            f.extend(std::iter::repeat_n(t as u8, 1000));
                            ob.push_owned(f).unwrap();
                        }
                        ob.flush(if t % 2 == 0 {
                            Wait::Block
                        } else {
                            Wait::NoBlock
                        });
                    }
                })
            })
            .collect();
        let s = {
            let ob = Arc::clone(&ob);
            std::thread::spawn(move || ob.run_sender(Duration::from_secs(60), b"", || {}))
        };
        let mut got = vec![0u8; 2000 * 1004];
        b.read_exact(&mut got).unwrap();
        for t in threads {
            t.join().unwrap();
        }
        for (i, f) in got.chunks(1004).enumerate() {
            assert_eq!(u32::from_be_bytes(f[..4].try_into().unwrap()), i as u32 + 1);
            assert!(f[4..].iter().all(|x| *x == f[4]), "frame {i} torn");
        }
        assert_eq!(ob.queued(), 0);
        ob.close();
        s.join().unwrap();
    }

    #[test]
    fn a_reader_never_blocks_and_the_sender_finishes_its_work() {
        let (a, mut b) = pair();
        let ob = Arc::new(Outbox::new(a));
        // Far more than the socket buffers hold: NoBlock must return anyway.
        let big = vec![7u8; 32 << 20];
        ob.push_owned(big.clone()).unwrap();
        ob.flush(Wait::NoBlock);
        assert!(ob.queued() > 0, "everything fit in the socket buffer?");
        let s = {
            let ob = Arc::clone(&ob);
            std::thread::spawn(move || ob.run_sender(Duration::from_secs(60), b"", || {}))
        };
        let mut got = vec![0u8; big.len()];
        b.read_exact(&mut got).unwrap();
        assert!(got == big);
        ob.close();
        s.join().unwrap();
    }

    #[test]
    fn idle_link_gets_pings_and_close_stops_the_sender() {
        let (a, mut b) = pair();
        let ob = Arc::new(Outbox::new(a));
        let s = {
            let ob = Arc::clone(&ob);
            std::thread::spawn(move || ob.run_sender(Duration::from_millis(50), b"PING", || {}))
        };
        let mut got = [0u8; 8];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"PINGPING");
        ob.close();
        s.join().unwrap();
        assert_eq!(ob.push_owned(b"x".to_vec()), None);
    }

    #[test]
    fn a_dead_peer_closes_the_outbox() {
        let (a, b) = pair();
        drop(b);
        let ob = Outbox::new(a);
        for _ in 0..100 {
            if ob.push_owned(vec![0u8; 65536]).is_none() {
                return;
            }
            ob.flush(Wait::Block);
        }
        panic!("writes to a closed peer kept succeeding");
    }
}
