//! Free TCP ports and unique loopback addresses for services started in
//! parallel.
//!
//! A port is found by binding port 0 and releasing it; the harness also
//! remembers every port it handed out in this process so that two tests
//! never get the same one. Another process can still grab the port between
//! the probe and the service's own bind, so starters retry on
//! "address already in use".

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{HarnessError, Result};

static HANDED_OUT: Mutex<Option<HashSet<SocketAddr>>> = Mutex::new(None);
static NEXT_IP: AtomicU32 = AtomicU32::new(0);

/// Returns a TCP port on `ip` that is free now and was not handed out
/// before by this process.
pub fn free_port(ip: Ipv4Addr) -> Result<u16> {
    const ATTEMPTS: u32 = 50;
    for _ in 0..ATTEMPTS {
        let Ok(listener) = TcpListener::bind((ip, 0)) else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        let mut guard = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.get_or_insert_with(HashSet::new).insert(addr) {
            return Ok(addr.port());
        }
    }
    Err(HarnessError::NoFreePort {
        ip: IpAddr::V4(ip),
        attempts: ATTEMPTS,
    })
}

/// A loopback address `127.A.B.C` that no other call in this process
/// returned and that other test processes are unlikely to use: `A` is
/// derived from the process id, `B.C` from a counter (`C` never 0, 1 or 255).
///
/// All of 127.0.0.0/8 is routed to `lo` on Linux, so every such address can
/// be bound in the root network namespace without any setup.
pub fn unique_loopback_ip() -> Ipv4Addr {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
    let a = 10 + (std::process::id() % 240) as u8;
    let b = ((n / 250) % 256) as u8;
    let c = 2 + (n % 250) as u8;
    Ipv4Addr::new(127, a, b, c)
}

/// True when `addr` accepts a connection and sends an SSH banner.
pub(crate) fn ssh_banner(addr: SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    if s.set_read_timeout(Some(Duration::from_secs(2))).is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}
