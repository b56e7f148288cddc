//! The socket calls the sender's pacing and progress need and neither `std` nor `socket2` offers:
//! reading the kernel's view of a TCP connection (`TCP_INFO`: smoothed and minimum RTT, the
//! latest delivery rate), capping its pacing rate (`SO_MAX_PACING_RATE`, which BBR and the
//! `fq` qdisc honour), and how much of what was written is not yet acknowledged (`SIOCOUTQ`). Linux only, like the congestion controller they go with; elsewhere
//! they report `Unsupported` and the transfer runs uncapped.

use std::io;
use std::net::TcpStream;
use std::time::Duration;

/// What the sender's pacing looks at, from one `TCP_INFO` read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSample {
    /// Smoothed round-trip time (the kernel's `srtt`).
    pub rtt: Duration,
    /// Smallest round-trip time seen lately (the kernel's windowed minimum): the path without
    /// a queue.
    pub min_rtt: Duration,
    /// Bytes per second delivered, measured over the latest acknowledged flight.
    pub delivery_rate: u64,
    /// Bytes acknowledged so far: whether anything moved since the last sample.
    pub bytes_acked: u64,
    /// Time so far the connection waited on the receiver's window: a slow receiver, not a
    /// queue (counted in the kernel's clock ticks, 1–10 ms).
    pub rwnd_limited: Duration,
}

/// Reads `stream`'s `TCP_INFO`.
///
/// # Errors
/// The call fails (not a TCP socket, a closed one), or the platform has no `TCP_INFO`.
#[cfg(target_os = "linux")]
pub fn sample(stream: &TcpStream) -> io::Result<TcpSample> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>())
        .unwrap_or(libc::socklen_t::MAX);
    // SAFETY: `info` is a zeroed `tcp_info` (plain integers, so every bit pattern is valid)
    // and `len` its size; the kernel writes at most `len` bytes into it and sets `len` to
    // what it wrote. An older kernel writes fewer: the fields it leaves out stay zero.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised above, and every field is an integer.
    let info = unsafe { info.assume_init() };
    Ok(TcpSample {
        rtt: Duration::from_micros(info.tcpi_rtt.into()),
        min_rtt: Duration::from_micros(info.tcpi_min_rtt.into()),
        delivery_rate: info.tcpi_delivery_rate,
        bytes_acked: info.tcpi_bytes_acked,
        rwnd_limited: Duration::from_micros(info.tcpi_rwnd_limited),
    })
}

/// Bytes written to `stream` that the peer's TCP has not acknowledged yet (`SIOCOUTQ`: those
/// still in the send buffer, sent or not, and a FIN not yet acknowledged). What a sender's
/// progress subtracts, so that it shows what reached the receiver rather than what the send
/// buffer took, which on a slow link is megabytes ahead.
///
/// # Errors
/// The call fails (not a TCP socket, a closed one), or the platform has no such call.
#[cfg(target_os = "linux")]
pub fn unacked(stream: &TcpStream) -> io::Result<u64> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: `TIOCOUTQ` (`SIOCOUTQ` on a socket) writes one `int` through the pointer, which
    // points at `queued`, alive across the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &raw mut queued) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(queued).unwrap_or(0))
}

/// `SO_MAX_PACING_RATE` (`asm-generic/socket.h`; the same on every architecture but
/// alpha, mips, parisc and sparc, which tailchat is not built for), not in the `libc` crate.
#[cfg(target_os = "linux")]
const SO_MAX_PACING_RATE: nix::libc::c_int = 47;

/// Caps `stream`'s pacing rate at `bytes_per_sec` (`u64::MAX`: no cap).
///
/// # Errors
/// The call fails, or the platform has no such option.
#[cfg(target_os = "linux")]
pub fn set_max_pacing_rate(stream: &TcpStream, bytes_per_sec: u64) -> io::Result<()> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    // The kernel takes a 64-bit value where `optlen` says so (since Linux 4.20); an older one
    // reads the first 32 bits, which on a little-endian machine (all tailchat is built for)
    // are the low ones, so the cap is clamped to what both read the same.
    let value: u64 = if bytes_per_sec == u64::MAX {
        u64::MAX
    } else {
        bytes_per_sec.min(u64::from(u32::MAX - 1))
    };
    // SAFETY: `value` lives across the call and `optlen` is its size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MAX_PACING_RATE,
            std::ptr::from_ref(&value).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<u64>()).unwrap_or(8),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere: no `TCP_INFO` is read.
///
/// # Errors
/// Always `Unsupported`.
#[cfg(not(target_os = "linux"))]
pub fn sample(_stream: &TcpStream) -> io::Result<TcpSample> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Elsewhere: nothing is known to be unacknowledged.
///
/// # Errors
/// Always `Unsupported`.
#[cfg(not(target_os = "linux"))]
pub fn unacked(_stream: &TcpStream) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Elsewhere: no cap is set.
///
/// # Errors
/// Always `Unsupported`.
#[cfg(not(target_os = "linux"))]
pub fn set_max_pacing_rate(_stream: &TcpStream, _bytes_per_sec: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn a_loopback_connection_reports_its_rtt_and_takes_a_cap() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(&[7; 4096]).unwrap();
        let mut got = [0u8; 4096];
        client.read_exact(&mut got).unwrap();
        set_max_pacing_rate(&server, 1_000_000).unwrap();
        set_max_pacing_rate(&server, u64::MAX).unwrap();
        // The handshake gave an RTT sample, so both RTTs are set; the bytes were acked or
        // are about to be (no assertion on that: it races the peer's ack).
        let s = sample(&server).unwrap();
        assert!(s.min_rtt > Duration::ZERO && s.rtt >= s.min_rtt, "{s:?}");
    }

    #[test]
    fn bytes_still_in_the_send_buffer_are_unacknowledged_until_the_peer_takes_them() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        // The client reads nothing yet: its window closes, then the server's send buffer fills.
        server
            .set_nonblocking(true)
            .expect("a non-blocking sender fills the buffers without waiting");
        let mut written = 0u64;
        let chunk = [5u8; 65536];
        while let Ok(n) = { &server }.write(&chunk) {
            written += n as u64;
        }
        let left = unacked(&server).unwrap();
        assert!(left > 0 && left <= written, "{left} of {written}");
        let mut got = vec![0u8; usize::try_from(written).unwrap()];
        client.read_exact(&mut got).unwrap();
        // Everything read was acknowledged (the last ack may still be on its way).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut now = unacked(&server).unwrap();
        while now > 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
            now = unacked(&server).unwrap();
        }
        assert_eq!(now, 0);
    }
}
