//! A fault-injecting TCP proxy for tests: put it in front of a registry
//! (or an sshd) and it forwards bytes, except when one of its [`Rule`]s
//! picks a request (or a connection) to break.
//!
//! Two modes:
//!
//! * [`ProxyMode::Http`] (for a **plain-HTTP** registry): the proxy reads
//!   each HTTP/1.1 request head, adds `Connection: close` (so one
//!   connection carries one request and the response needs no parsing),
//!   logs `METHOD target -> status`, and may answer 500/503/429 itself
//!   (with `Retry-After`), delay, stall, reset mid request body, reset mid
//!   response or truncate the response. Rules can be limited to a method
//!   and a path fragment.
//! * [`ProxyMode::Tcp`] (for TLS, SSH, anything): bytes only. A rule
//!   applies to a whole connection: delay, stall, reset after N bytes in
//!   either direction, truncate. The proxy cannot see inside TLS, so HTTP
//!   status faults do not exist in this mode (a `Status` rule is ignored).
//!   A TLS client still validates the server's certificate: the harness's
//!   certificate names `127.0.0.1`, which is where the proxy listens.
//!
//! Which request a rule hits is decided by a hash of the seed, the rule and
//! the request's identity (method, path without upload session ids, the
//! `digest=` parameter, and how many times that identity was seen), not by
//! arrival order, so the same seed hits the same requests even when the
//! client sends them concurrently in another order. The proxy counts every
//! fault it injected per kind ([`FaultProxy::injected`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{io_err, Result};

/// What the proxy understands of the traffic (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// One HTTP/1.1 request per connection; per-request faults.
    Http,
    /// Bytes only; per-connection faults.
    Tcp,
}

/// One way of breaking a request (HTTP mode) or a connection (TCP mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long before forwarding anything, then forward normally.
    Delay(Duration),
    /// Forward the request, send nothing back for this long, then close
    /// the connection without an answer (a hung server). `Duration::MAX`
    /// stalls until the proxy is dropped.
    Stall(Duration),
    /// Forward this many bytes from the client (in HTTP mode: of the
    /// request body), then reset both connections (TCP RST).
    ResetRequest {
        /// Bytes forwarded before the reset.
        after: u64,
    },
    /// Forward this many bytes of the answer, then reset (TCP RST).
    ResetResponse {
        /// Bytes forwarded before the reset.
        after: u64,
    },
    /// Forward this many bytes of the answer, then close cleanly (FIN):
    /// a response shorter than its `Content-Length`.
    Truncate {
        /// Bytes forwarded before the close.
        after: u64,
    },
    /// Answer with this status without asking the upstream (HTTP mode
    /// only), with `Retry-After: SECONDS` when given.
    Status {
        /// 500, 503, 429, ...
        code: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
}

impl Fault {
    /// The name [`FaultProxy::injected`] counts this fault under:
    /// `delay`, `stall`, `reset_request`, `reset_response`, `truncate`,
    /// `status_500`, ...
    pub fn kind(&self) -> String {
        match self {
            Fault::Delay(_) => "delay".into(),
            Fault::Stall(_) => "stall".into(),
            Fault::ResetRequest { .. } => "reset_request".into(),
            Fault::ResetResponse { .. } => "reset_response".into(),
            Fault::Truncate { .. } => "truncate".into(),
            Fault::Status { code, .. } => format!("status_{code}"),
        }
    }
}

/// When to inject a [`Fault`]: the first rule whose filters match and
/// whose dice roll succeeds applies.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The fault.
    pub fault: Fault,
    /// The fraction of matching requests (or connections) to hit, 0..=1.
    pub probability: f64,
    /// Only requests with this method (HTTP mode).
    pub method: Option<String>,
    /// Only requests whose target contains this (HTTP mode).
    pub path_contains: Option<String>,
    /// Only requests whose target does not contain this (HTTP mode).
    pub path_excludes: Option<String>,
    /// Hit at most this many requests, then stop matching.
    pub times: Option<u32>,
}

impl Rule {
    /// Every matching request.
    pub fn always(fault: Fault) -> Self {
        Self::with_probability(fault, 1.0)
    }

    /// A fraction of the matching requests.
    pub fn with_probability(fault: Fault, probability: f64) -> Self {
        Rule {
            fault,
            probability,
            method: None,
            path_contains: None,
            path_excludes: None,
            times: None,
        }
    }

    /// Only requests with `method`.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_owned());
        self
    }

    /// Only requests whose target contains `fragment`.
    pub fn path(mut self, fragment: &str) -> Self {
        self.path_contains = Some(fragment.to_owned());
        self
    }

    /// Not requests whose target contains `fragment`.
    pub fn not_path(mut self, fragment: &str) -> Self {
        self.path_excludes = Some(fragment.to_owned());
        self
    }

    /// At most `n` hits.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.times != Some(0)
            && self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| target.contains(p))
            && self
                .path_excludes
                .as_deref()
                .is_none_or(|p| !target.contains(p))
    }
}

/// One request (HTTP mode) or connection (TCP mode) that went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// The HTTP method (`TCP` in TCP mode).
    pub method: String,
    /// The request target, e.g. `/v2/a/blobs/uploads/?mount=...` (empty
    /// in TCP mode).
    pub target: String,
    /// The status the upstream answered (or the injected one); `None`
    /// when no answer was seen.
    pub status: Option<u16>,
    /// The fault injected, by [`Fault::kind`].
    pub fault: Option<String>,
    /// Bytes from the client / from the upstream.
    pub bytes: (u64, u64),
    /// When the proxy had read the request's head (HTTP) or accepted the
    /// connection (TCP), since the proxy started.
    pub received_at: Duration,
    /// When the answer's status was known (from the upstream, or the
    /// injected one), since the proxy started, taken before any of the
    /// answer is sent on to the client; `None` when no answer came.
    pub answered_at: Option<Duration>,
}

impl ProxiedRequest {
    /// A blob upload session was opened (`POST …/blobs/uploads/` that is
    /// not a cross-repository mount).
    pub fn is_upload_start(&self) -> bool {
        self.method == "POST"
            && self.target.contains("/blobs/uploads/")
            && !self.target.contains("mount=")
    }

    /// The `digest=` of a finishing blob upload (`PUT …/blobs/uploads/…`).
    pub fn uploaded_digest(&self) -> Option<String> {
        if self.method != "PUT" || !self.target.contains("/blobs/uploads/") {
            return None;
        }
        let (_, rest) = self.target.split_once("digest=")?;
        let end = rest.find('&').unwrap_or(rest.len());
        Some(rest[..end].replace("%3A", ":").replace("%3a", ":"))
    }
}

#[derive(Debug)]
struct Shared {
    /// When the proxy started ([`ProxiedRequest::received_at`] counts from it).
    started: Instant,
    upstream: SocketAddr,
    mode: ProxyMode,
    seed: Mutex<u64>,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<ProxiedRequest>>,
    seen: Mutex<BTreeMap<String, u64>>,
    injected: Mutex<BTreeMap<String, u64>>,
    open: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
    /// Connections accepted whose handling (and byte count) is not over.
    active: std::sync::atomic::AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running fault-injecting proxy (see the module docs). Stops, and
/// closes every connection, on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `upstream`.
    pub fn start(upstream: SocketAddr, mode: ProxyMode, seed: u64) -> Result<Self> {
        Self::start_on(Ipv4Addr::LOCALHOST, upstream, mode, seed)
    }

    /// Starts a proxy on `ip:<free port>` (a loopback address).
    pub fn start_on(
        ip: Ipv4Addr,
        upstream: SocketAddr,
        mode: ProxyMode,
        seed: u64,
    ) -> Result<Self> {
        let listener =
            TcpListener::bind((ip, 0)).map_err(io_err(format!("binding a proxy port on {ip}")))?;
        let addr = listener
            .local_addr()
            .map_err(io_err("reading the proxy's address"))?;
        let shared = Arc::new(Shared {
            started: Instant::now(),
            upstream,
            mode,
            seed: Mutex::new(seed),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            seen: Mutex::new(BTreeMap::new()),
            injected: Mutex::new(BTreeMap::new()),
            open: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            active: std::sync::atomic::AtomicUsize::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(&listener, &s))
            .map_err(io_err("starting the proxy thread"))?;
        Ok(Self {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:<port>"`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Replaces the rules (an empty list: forward everything).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *lock(&self.shared.rules) = rules;
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        self.set_rules(Vec::new());
    }

    /// Changes the seed of the dice (and forgets how often each request
    /// was seen), e.g. once per soak cycle.
    pub fn reseed(&self, seed: u64) {
        *lock(&self.shared.seed) = seed;
        lock(&self.shared.seen).clear();
    }

    /// Every request (or connection) so far, in the order they finished
    /// their head (HTTP) or were accepted (TCP).
    ///
    /// Waits (up to 10 s) for the connections in flight to end first, so
    /// that a session the client has just closed has its byte counts.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while self.shared.active.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        lock(&self.shared.log).clone()
    }

    /// Forgets the request log (not the injected counts).
    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// The most HTTP requests that were waiting for their answer at once:
    /// the largest overlap of the spans from [`ProxiedRequest::received_at`]
    /// to [`ProxiedRequest::answered_at`] (a request without an answer
    /// counts until the end). A client that sends a request only after the
    /// answer to the previous one came gives 1: the proxy takes the time of
    /// an answer before the client can see it.
    pub fn max_in_flight(&self) -> usize {
        let mut events: Vec<(Duration, i32)> = Vec::new();
        for r in self.requests() {
            events.push((r.received_at, 1));
            events.push((r.answered_at.unwrap_or(Duration::MAX), -1));
        }
        // at the same instant an answer ends before a request starts
        events.sort();
        let (mut now, mut most) = (0i32, 0i32);
        for (_, step) in events {
            now += step;
            most = most.max(now);
        }
        usize::try_from(most).unwrap_or(0)
    }

    /// How many faults were injected, per [`Fault::kind`].
    pub fn injected(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.injected).clone()
    }

    /// Closes every connection in flight (reset), e.g. to end stalls.
    pub fn cut_all(&self) {
        for s in lock(&self.shared.open).drain(..) {
            reset(&s);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // unblock accept()
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        self.cut_all();
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = conn else { continue };
        let s = shared.clone();
        shared.active.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("fault-proxy-conn".into())
            .spawn(move || {
                match s.mode {
                    ProxyMode::Http => handle_http(client, &s),
                    ProxyMode::Tcp => handle_tcp(client, &s),
                }
                s.active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Resets a connection: SO_LINGER 0, then close (the peer gets RST).
fn reset(s: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(s, Some(Duration::ZERO));
    let _ = s.shutdown(Shutdown::Both);
}

/// FNV-1a over `parts`, then splitmix64: a uniform value in [0, 1).
fn dice(parts: &[&[u8]]) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The request's identity for the dice: upload session ids (random per
/// run) and query strings other than `digest=`/`mount=` left out.
fn identity(method: &str, target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = match path.find("/blobs/uploads/") {
        Some(i) => &path[..i + "/blobs/uploads/".len()],
        None => path,
    };
    let keep: Vec<&str> = query
        .split('&')
        .filter(|kv| kv.starts_with("digest=") || kv.starts_with("mount="))
        .collect();
    format!("{method} {path}?{}", keep.join("&"))
}

impl Shared {
    /// Picks the fault for a request and counts it.
    fn choose(&self, method: &str, target: &str) -> Option<Fault> {
        let id = identity(method, target);
        let nth = {
            let mut seen = lock(&self.seen);
            let n = seen.entry(id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let seed = *lock(&self.seed);
        let mut rules = lock(&self.rules);
        for (i, rule) in rules.iter_mut().enumerate() {
            if !rule.matches(method, target) {
                continue;
            }
            if self.mode == ProxyMode::Tcp && matches!(rule.fault, Fault::Status { .. }) {
                continue;
            }
            let roll = dice(&[
                &seed.to_le_bytes(),
                &(i as u64).to_le_bytes(),
                id.as_bytes(),
                &nth.to_le_bytes(),
            ]);
            if roll < rule.probability {
                if let Some(t) = &mut rule.times {
                    *t -= 1;
                }
                *lock(&self.injected).entry(rule.fault.kind()).or_insert(0) += 1;
                return Some(rule.fault.clone());
            }
        }
        None
    }

    fn record(&self, entry: ProxiedRequest) -> usize {
        let mut log = lock(&self.log);
        log.push(entry);
        log.len() - 1
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut ProxiedRequest)) {
        if let Some(e) = lock(&self.log).get_mut(i) {
            f(e);
        }
    }

    fn track(&self, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            let mut open = lock(&self.open);
            open.retain(|o| o.peer_addr().is_ok());
            open.push(c);
        }
    }

    /// Sleeps `d` (at most until the proxy stops).
    fn sleep(&self, d: Duration) {
        let start = Instant::now();
        while start.elapsed() < d && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
    }
}

/// Reads up to the end of an HTTP head; returns (head, bytes read past it).
fn read_head(s: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some((buf, rest));
        }
        if buf.len() > 256 * 1024 {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// How the request body is framed.
enum BodyLen {
    Fixed(u64),
    Chunked,
}

fn reason(code: u16) -> &'static str {
    match code {
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

/// Reads and discards a request body (so that the client reads the answer
/// instead of a reset).
fn drain_body(client: &mut TcpStream, already: &[u8], len: &BodyLen) {
    match len {
        BodyLen::Fixed(n) => {
            let mut left = n.saturating_sub(already.len() as u64);
            let mut chunk = [0u8; 65536];
            while left > 0 {
                let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match client.read(&mut chunk[..want]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => left -= n as u64,
                }
            }
        }
        BodyLen::Chunked => {
            // until the last chunk ("0\r\n\r\n")
            let mut tail = already.to_vec();
            let mut chunk = [0u8; 65536];
            while !tail.windows(5).any(|w| w == b"0\r\n\r\n") {
                match client.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        tail.extend_from_slice(&chunk[..n]);
                        let keep = tail.len().saturating_sub(8);
                        tail.drain(..keep);
                    }
                }
            }
        }
    }
}

fn handle_http(mut client: TcpStream, shared: &Shared) {
    shared.track(&client);
    let Some((head, rest)) = read_head(&mut client) else {
        return;
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut words = request_line.split(' ');
    let method = words.next().unwrap_or_default().to_owned();
    let target = words.next().unwrap_or_default().to_owned();
    let mut body = BodyLen::Fixed(0);
    let mut new_head = format!("{request_line}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let name_l = name.trim().to_ascii_lowercase();
        match name_l.as_str() {
            "connection" | "keep-alive" => continue,
            "content-length" => body = BodyLen::Fixed(value.trim().parse().unwrap_or(0)),
            "transfer-encoding" if value.to_ascii_lowercase().contains("chunked") => {
                body = BodyLen::Chunked;
            }
            _ => {}
        }
        new_head.push_str(line);
        new_head.push_str("\r\n");
    }
    new_head.push_str("Connection: close\r\n\r\n");
    let received_at = shared.started.elapsed();
    let fault = shared.choose(&method, &target);
    let index = shared.record(ProxiedRequest {
        method: method.clone(),
        target: target.clone(),
        status: None,
        fault: fault.as_ref().map(Fault::kind),
        bytes: (0, 0),
        received_at,
        answered_at: None,
    });
    match &fault {
        Some(Fault::Status { code, retry_after }) => {
            drain_body(&mut client, &rest, &body);
            let msg = format!(
                "{{\"errors\":[{{\"code\":\"UNAVAILABLE\",\"message\":\"{code} injected by the \
                 fault proxy\"}}]}}"
            );
            let mut resp = format!(
                "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n",
                reason(*code),
                msg.len()
            );
            if let Some(s) = retry_after {
                resp.push_str(&format!("Retry-After: {s}\r\n"));
            }
            resp.push_str("\r\n");
            if method != "HEAD" {
                resp.push_str(&msg);
            }
            let answered_at = shared.started.elapsed();
            shared.update(index, |e| {
                e.status = Some(*code);
                e.answered_at = Some(answered_at);
            });
            let _ = client.write_all(resp.as_bytes());
            let _ = client.shutdown(Shutdown::Write);
            // let the client read the answer before the socket closes
            let mut sink = [0u8; 1024];
            let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
            while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        Some(Fault::Delay(d)) => shared.sleep(*d),
        _ => {}
    }
    let Ok(mut upstream) = TcpStream::connect(shared.upstream) else {
        reset(&client);
        return;
    };
    shared.track(&upstream);
    if upstream.write_all(new_head.as_bytes()).is_err() {
        reset(&client);
        return;
    }
    let request_limit = match &fault {
        Some(Fault::ResetRequest { after }) => Some(*after),
        _ => None,
    };
    pipe(client, upstream, shared, index, fault, request_limit, rest);
}

fn handle_tcp(client: TcpStream, shared: &Shared) {
    shared.track(&client);
    let received_at = shared.started.elapsed();
    let fault = shared.choose("TCP", "");
    let index = shared.record(ProxiedRequest {
        method: "TCP".into(),
        target: String::new(),
        status: None,
        fault: fault.as_ref().map(Fault::kind),
        bytes: (0, 0),
        received_at,
        answered_at: None,
    });
    if let Some(Fault::Delay(d)) = &fault {
        shared.sleep(*d);
    }
    let Ok(upstream) = TcpStream::connect(shared.upstream) else {
        reset(&client);
        return;
    };
    shared.track(&upstream);
    let request_limit = match &fault {
        Some(Fault::ResetRequest { after }) => Some(*after),
        _ => None,
    };
    pipe(
        client,
        upstream,
        shared,
        index,
        fault,
        request_limit,
        Vec::new(),
    );
}

/// Forwards `data` from the client, or only the part up to `limit`
/// bytes in total and then resets both sides (false: stop forwarding).
fn send_up(
    client: &TcpStream,
    upstream: &mut TcpStream,
    data: &[u8],
    sent: &mut u64,
    limit: Option<u64>,
) -> bool {
    if let Some(limit) = limit {
        let room = limit.saturating_sub(*sent);
        if (data.len() as u64) >= room {
            let n = usize::try_from(room).unwrap_or(data.len());
            let _ = upstream.write_all(&data[..n]);
            *sent += n as u64;
            reset(client);
            reset(upstream);
            return false;
        }
    }
    if upstream.write_all(data).is_err() {
        return false;
    }
    *sent += data.len() as u64;
    true
}

/// Copies both ways until both sides are done, applying `fault`.
fn pipe(
    mut client: TcpStream,
    mut upstream: TcpStream,
    shared: &Shared,
    index: usize,
    fault: Option<Fault>,
    request_limit: Option<u64>,
    already: Vec<u8>,
) {
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        reset(&client);
        reset(&upstream);
        return;
    };
    // client -> upstream, in its own thread
    let up = std::thread::scope(|scope| {
        let forward = scope.spawn(move || {
            let mut sent: u64 = 0;
            if !already.is_empty() && !send_up(&c2, &mut u2, &already, &mut sent, request_limit) {
                return sent;
            }
            let mut chunk = vec![0u8; 65536];
            loop {
                match c2.read(&mut chunk) {
                    Ok(0) | Err(_) => {
                        let _ = u2.shutdown(Shutdown::Write);
                        return sent;
                    }
                    Ok(n) => {
                        if !send_up(&c2, &mut u2, &chunk[..n], &mut sent, request_limit) {
                            return sent;
                        }
                    }
                }
            }
        });
        // upstream -> client, here
        let mut got: u64 = 0;
        let mut status_seen = false;
        let mut first = Vec::new();
        let (limit, is_reset) = match &fault {
            Some(Fault::ResetResponse { after }) => (Some(*after), true),
            Some(Fault::Truncate { after }) => (Some(*after), false),
            _ => (None, false),
        };
        if let Some(Fault::Stall(d)) = &fault {
            shared.sleep(*d);
            reset(&client);
            reset(&upstream);
        } else {
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = match upstream.read(&mut chunk) {
                    Ok(0) | Err(_) => {
                        let _ = client.shutdown(Shutdown::Write);
                        break;
                    }
                    Ok(n) => n,
                };
                if !status_seen && shared.mode == ProxyMode::Http {
                    first.extend_from_slice(&chunk[..n.min(16)]);
                    if first.len() >= 12 {
                        status_seen = true;
                        let code = std::str::from_utf8(&first[9..12])
                            .ok()
                            .and_then(|c| c.parse().ok());
                        let at = shared.started.elapsed();
                        shared.update(index, |e| {
                            e.status = code;
                            e.answered_at = Some(at);
                        });
                    }
                }
                let mut take = n;
                let mut cut = false;
                if let Some(l) = limit {
                    let room = l.saturating_sub(got);
                    if (n as u64) >= room {
                        take = usize::try_from(room).unwrap_or(n);
                        cut = true;
                    }
                }
                if client.write_all(&chunk[..take]).is_err() {
                    break;
                }
                got += take as u64;
                if cut {
                    if is_reset {
                        reset(&client);
                    } else {
                        let _ = client.shutdown(Shutdown::Both);
                    }
                    reset(&upstream);
                    break;
                }
            }
        }
        let sent = forward.join().unwrap_or(0);
        (sent, got)
    });
    shared.update(index, |e| e.bytes = up);
}

/// A plain `GET`/`HEAD` over HTTP/1.1 with `Connection: close` (no TLS, no
/// auth): `(status, headers as lowercase name → value, body)`. For checks
/// against a plain-HTTP registry, independent of mirrorplan's client.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    accept: &[&str],
) -> Result<(u16, BTreeMap<String, String>, Vec<u8>)> {
    let what = format!("{method} http://{addr}{target}");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(io_err(format!("connecting for {what}")))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io_err("setting a read timeout"))?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for a in accept {
        req.push_str(&format!("Accept: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .map_err(io_err(format!("sending {what}")))?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .map_err(io_err(format!("reading the answer to {what}")))?;
    let Some(i) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(crate::HarnessError::UnexpectedOutput {
            what,
            output: String::from_utf8_lossy(&all).into_owned(),
        });
    };
    let head = String::from_utf8_lossy(&all[..i]).into_owned();
    let mut body = all[i + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok((status, headers, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..i]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[i + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_drops_session_ids_and_keeps_the_digest() {
        assert_eq!(
            identity(
                "PUT",
                "/v2/a/b/blobs/uploads/5f1e-uuid?_state=xyz&digest=sha256%3Aab"
            ),
            "PUT /v2/a/b/blobs/uploads/?digest=sha256%3Aab"
        );
        assert_eq!(
            identity("HEAD", "/v2/a/manifests/1.0"),
            "HEAD /v2/a/manifests/1.0?"
        );
    }

    #[test]
    fn dice_is_uniform_enough_and_deterministic() {
        let rolls: Vec<f64> = (0u64..2000)
            .map(|i| dice(&[&7u64.to_le_bytes(), &i.to_le_bytes()]))
            .collect();
        let low = rolls.iter().filter(|r| **r < 0.25).count();
        assert!((350..650).contains(&low), "{low} of 2000 below 0.25");
        assert_eq!(rolls[3], dice(&[&7u64.to_le_bytes(), &3u64.to_le_bytes()]));
    }

    #[test]
    fn upload_requests_are_recognised() {
        let r = |m: &str, t: &str| ProxiedRequest {
            method: m.into(),
            target: t.into(),
            status: None,
            fault: None,
            bytes: (0, 0),
            received_at: Duration::ZERO,
            answered_at: None,
        };
        assert!(r("POST", "/v2/a/blobs/uploads/").is_upload_start());
        assert!(!r("POST", "/v2/a/blobs/uploads/?mount=sha256:1&from=b").is_upload_start());
        assert_eq!(
            r("PUT", "/v2/a/blobs/uploads/u?_state=s&digest=sha256%3Aff").uploaded_digest(),
            Some("sha256:ff".into())
        );
    }
}
