//! The crate's only `unsafe`: two socket options that neither socket2 nor nix
//! wraps. `TCP_INFO` is read into a byte buffer and parsed by offset in safe
//! code, so a kernel that returns a shorter or longer struct is handled by
//! trusting the length it reports.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::model::TcpInfo;

/// Reads `TCP_INFO`; works in every state but `LISTEN`, including `SYN_SENT`.
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `fd` is borrowed, so the descriptor stays open for this call;
    // `buf` is valid for writes of `len` bytes and `len` is a valid, initialised
    // socklen_t that the kernel updates to the number of bytes it wrote.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpInfo::parse(&buf[..(len as usize).min(buf.len())]))
}

/// Sets `TCP_SYNCNT`: how many SYN retransmissions before the kernel gives up.
pub fn set_syn_count(fd: BorrowedFd<'_>, count: u8) -> io::Result<()> {
    let value: libc::c_int = count.into();
    // SAFETY: `fd` is borrowed and open; `value` lives across the call and the
    // length passed is exactly its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_SYNCNT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reads_an_established_loopback_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let info = tcp_info(c.as_fd()).unwrap();
        assert_eq!(info.state, 1, "ESTABLISHED");
        assert_eq!(info.total_retrans, 0);
        assert!(
            info.rto_us >= 200_000,
            "Linux's minimum RTO is 200 ms, got {}",
            info.rto_us
        );
        set_syn_count(c.as_fd(), 3).unwrap();
    }

    #[test]
    fn rejects_a_syn_count_out_of_range() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(
            set_syn_count(c.as_fd(), 0).is_err(),
            "the kernel accepts 1..=127 only"
        );
    }
}
