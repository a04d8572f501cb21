//! Thin, checked wrappers over the libc socket calls used by [`crate::net`].

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Converts a `-1`-on-error libc return value into an `io::Result`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Converts a `-1`-on-error `ssize_t` return value into an `io::Result<usize>`.
pub(crate) fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `socket(2)` with `SOCK_CLOEXEC`, returning an owned descriptor.
pub(crate) fn socket(
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; any return value is checked below.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: `fd` was just returned by socket(2), is valid and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(2)` with a plain-old-data option value.
pub(crate) fn setsockopt<T: Copy>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of exactly `size_of::<T>()` bytes for the
    // duration of the call; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `setsockopt(2)` with a byte-string option value (for example `SO_BINDTODEVICE`).
pub(crate) fn setsockopt_bytes(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    // SAFETY: `value` is a live slice of `value.len()` bytes; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `bind(2)` to a socket address structure `T` (`sockaddr_nl`, `sockaddr_ll`, ...).
pub(crate) fn bind<T: Copy>(fd: &OwnedFd, addr: &T) -> io::Result<()> {
    // SAFETY: `addr` points to a live, fully initialised `T` of `size_of::<T>()` bytes,
    // which is the matching sockaddr type for the socket's family.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `sendto(2)` of `buf` to the socket address `addr`, retried on `EINTR`; a short send
/// is an error (datagram sockets send all or nothing).
pub(crate) fn sendto<T: Copy>(fd: &OwnedFd, buf: &[u8], addr: Option<&T>) -> io::Result<()> {
    let (ptr, len) = match addr {
        Some(a) => (
            (a as *const T).cast::<libc::sockaddr>(),
            mem::size_of::<T>(),
        ),
        None => (std::ptr::null(), 0),
    };
    loop {
        // SAFETY: `buf` is a live slice; `ptr`/`len` are either null/0 or a live `T`
        // of `len` bytes. The kernel only reads both.
        let r = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                ptr,
                len as libc::socklen_t,
            )
        };
        match cvt_size(r) {
            Ok(n) if n == buf.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short send: {n} of {} bytes", buf.len()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `recvfrom(2)` into `buf`, returning the byte count and the sender's address.
/// `flags` is passed through (e.g. `MSG_DONTWAIT`, `MSG_PEEK | MSG_TRUNC`).
pub(crate) fn recvfrom<T: Copy>(
    fd: RawFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, T)> {
    // SAFETY: every sockaddr type used here (sockaddr_nl, sockaddr_in, sockaddr_ll) is
    // plain old data for which all-zero bytes are a valid value.
    let mut addr: T = unsafe { mem::zeroed() };
    let mut alen = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes; `addr`/`alen` are a
    // live `T` and its size, which the kernel truncates to.
    let r = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&mut addr as *mut T).cast(),
            &mut alen,
        )
    };
    Ok((cvt_size(r)?, addr))
}

/// Waits until `fd` is readable or `timeout` passes; `Ok(false)` on timeout.
/// `EINTR` restarts the wait with the remaining time.
pub(crate) fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        };
        // Round up so a 0.5 ms timeout does not become a busy 0 ms poll.
        let ms = left
            .as_micros()
            .div_ceil(1000)
            .min(libc::c_int::MAX as u128) as libc::c_int;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one live pollfd and we pass a count of 1.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        match cvt(r) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Interface name to index in the calling thread's network namespace.
pub(crate) fn name_to_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name empty or longer than 15 bytes",
        ));
    }
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// Interface index to name in the calling thread's network namespace, if it exists.
pub(crate) fn index_to_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` is IF_NAMESIZE bytes, the size if_indextoname(3) requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into `buf`.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}
