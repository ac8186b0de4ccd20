//! A userspace WAN link for `bench/latency.sh`: a TCP proxy that holds every chunk it forwards
//! for half a round-trip time in each direction, and optionally limits each direction of a
//! route to a bandwidth, shared by all of the route's connections.
//!
//! This kernel has no netem, so the bench cannot ask the kernel for delay. The proxy stamps each
//! chunk with the time it may leave (`read time + RTT/2`, later when the link is busy) and a
//! writer sends it at that time, so the link pipelines like a real one (many chunks in flight)
//! rather than waiting a round trip per chunk. Two things a real path adds are modelled too:
//!
//! - a new connection costs a round trip before any byte goes (the TCP handshake the proxy's
//!   own accept hides), so client bytes leave no earlier than `accept + RTT + RTT/2`;
//! - with `rate_mbit`, chunks are serialised one after another at that rate (a FIFO link whose
//!   queue is shared by every connection of the route), then delayed.
//!
//! Not modelled: loss, jitter, TCP slow start and window limits across the WAN (each side's
//! TCP runs over a local veth; the proxy's bounded queue is the only buffer).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let route = sovereign_bench::delay_proxy::Route::parse(
//!     "listen=127.0.0.1:9441 target=127.0.0.1:8441 rtt_ms=180 rate_mbit=20",
//! )?;
//! let (_addr, _task) = sovereign_bench::delay_proxy::bind(route).await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Largest chunk read and stamped at once.
pub const CHUNK_BYTES_MAX: usize = 16 * 1024;
/// Chunks in flight per direction of one connection: with [`CHUNK_BYTES_MAX`] a 256 KiB
/// buffer, beyond which the proxy stops reading and TCP pushes back on the sender.
pub const QUEUE_CHUNKS_MAX: usize = 16;
/// Longest round-trip time a route may have.
pub const RTT_MS_MAX: u64 = 10_000;
/// Slowest link a route may have (10 kbit/s: one full chunk takes 13 s on the wire).
pub const RATE_MBIT_MIN: f64 = 0.01;
/// Fastest link a route may have (100 Gbit/s).
pub const RATE_MBIT_MAX: f64 = 100_000.0;
/// Most routes one proxy serves.
pub const ROUTES_MAX: usize = 256;
/// Longest line of a routes file.
pub const ROUTE_LINE_BYTES_MAX: usize = 512;

/// What is wrong with a route.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum RouteError {
    #[error("the route has no {0}= field")]
    Missing(&'static str),
    #[error("unknown field {0:?}; expected listen=, target=, rtt_ms= and optionally rate_mbit=")]
    UnknownField(String),
    #[error("{field}={value:?}: {reason}")]
    BadValue {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("field {0}= is given twice")]
    Repeated(&'static str),
    #[error("rtt_ms={0}: at most {RTT_MS_MAX} ms")]
    RttTooLong(u64),
    #[error("line {line}: {error}")]
    AtLine { line: usize, error: Box<RouteError> },
    #[error("the line has {0} bytes; at most {ROUTE_LINE_BYTES_MAX}")]
    LineTooLong(usize),
    #[error("{0} routes; at most {ROUTES_MAX}")]
    TooManyRoutes(usize),
    #[error("two routes listen on {0}")]
    DuplicateListen(SocketAddr),
    #[error("no route given")]
    Empty,
}

/// One direction-pair of a WAN path: connections accepted on `listen` are forwarded to `target`
/// with half of `rtt` each way, each direction limited to `rate_bytes_per_s` if given.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    pub rtt: Duration,
    pub rate_bytes_per_s: Option<f64>,
}

impl Route {
    /// Parses `listen=ADDR target=ADDR rtt_ms=N [rate_mbit=X]` (fields in any order, separated
    /// by spaces).
    ///
    /// # Errors
    /// A missing, repeated, unknown or unparsable field, a round trip over [`RTT_MS_MAX`], or a
    /// rate outside [`RATE_MBIT_MIN`]..=[`RATE_MBIT_MAX`].
    pub fn parse(text: &str) -> Result<Route, RouteError> {
        if text.len() > ROUTE_LINE_BYTES_MAX {
            return Err(RouteError::LineTooLong(text.len()));
        }
        let (mut listen, mut target, mut rtt_ms, mut rate) = (None, None, None, None);
        for field in text.split_whitespace() {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| RouteError::UnknownField(field.to_owned()))?;
            let bad = |field: &'static str, reason: String| RouteError::BadValue {
                field,
                value: value.to_owned(),
                reason,
            };
            match key {
                "listen" | "target" => {
                    let name = if key == "listen" { "listen" } else { "target" };
                    let addr: SocketAddr = value
                        .parse()
                        .map_err(|_| bad(name, "not an IP address and port".to_owned()))?;
                    let slot = if key == "listen" {
                        &mut listen
                    } else {
                        &mut target
                    };
                    if slot.replace(addr).is_some() {
                        return Err(RouteError::Repeated(name));
                    }
                }
                "rtt_ms" => {
                    let ms: u64 = value
                        .parse()
                        .map_err(|e: std::num::ParseIntError| bad("rtt_ms", e.to_string()))?;
                    if ms > RTT_MS_MAX {
                        return Err(RouteError::RttTooLong(ms));
                    }
                    if rtt_ms.replace(ms).is_some() {
                        return Err(RouteError::Repeated("rtt_ms"));
                    }
                }
                "rate_mbit" => {
                    let mbit: f64 = value
                        .parse()
                        .map_err(|e: std::num::ParseFloatError| bad("rate_mbit", e.to_string()))?;
                    if !(mbit.is_finite() && mbit > 0.0) {
                        return Err(bad("rate_mbit", "must be a positive number".to_owned()));
                    }
                    // Past these the link's schedule is no longer a finite, representable time.
                    if !(RATE_MBIT_MIN..=RATE_MBIT_MAX).contains(&mbit) {
                        return Err(bad(
                            "rate_mbit",
                            format!("must be from {RATE_MBIT_MIN} to {RATE_MBIT_MAX}"),
                        ));
                    }
                    if rate.replace(mbit * 1e6 / 8.0).is_some() {
                        return Err(RouteError::Repeated("rate_mbit"));
                    }
                }
                other => return Err(RouteError::UnknownField(other.to_owned())),
            }
        }
        Ok(Route {
            listen: listen.ok_or(RouteError::Missing("listen"))?,
            target: target.ok_or(RouteError::Missing("target"))?,
            rtt: Duration::from_millis(rtt_ms.ok_or(RouteError::Missing("rtt_ms"))?),
            rate_bytes_per_s: rate,
        })
    }

    /// Parses a routes file: one route a line, `#` comments and blank lines ignored.
    ///
    /// # Errors
    /// A bad line (with its number), more than [`ROUTES_MAX`] routes, two routes on one
    /// address, or no route at all.
    pub fn parse_file(text: &str) -> Result<Vec<Route>, RouteError> {
        let mut routes: Vec<Route> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let route = Route::parse(line).map_err(|error| RouteError::AtLine {
                line: index + 1,
                error: Box::new(error),
            })?;
            if routes.len() == ROUTES_MAX {
                return Err(RouteError::TooManyRoutes(routes.len() + 1));
            }
            if routes.iter().any(|r| r.listen == route.listen) {
                return Err(RouteError::DuplicateListen(route.listen));
            }
            routes.push(route);
        }
        if routes.is_empty() {
            return Err(RouteError::Empty);
        }
        Ok(routes)
    }
}

/// The serialisation schedule of one direction of a route: when the link is next free.
#[derive(Debug)]
struct Link {
    rate_bytes_per_s: Option<f64>,
    free_at: Mutex<Instant>,
}

impl Link {
    fn new(rate_bytes_per_s: Option<f64>) -> Arc<Link> {
        Arc::new(Link {
            rate_bytes_per_s,
            free_at: Mutex::new(Instant::now()),
        })
    }

    /// When `bytes` read now have finished going onto the wire: now without a rate limit, else
    /// after every chunk queued before them.
    fn sent_at(&self, bytes: usize) -> Instant {
        let now = Instant::now();
        let Some(rate) = self.rate_bytes_per_s else {
            return now;
        };
        let wire = Duration::from_secs_f64(bytes as f64 / rate);
        // A poisoned lock only means another connection's task panicked mid-update; the
        // schedule it left is still a valid instant.
        let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*free_at).max(now);
        *free_at = start + wire;
        *free_at
    }
}

/// Binds `route.listen` and forwards every connection until the task is dropped or aborted.
/// Returns the bound address (useful with port 0) and the accept loop's task.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(
    route: Route,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(route.listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(serve(listener, route));
    Ok((addr, task))
}

async fn serve(listener: TcpListener, route: Route) -> std::io::Result<()> {
    let up = Link::new(route.rate_bytes_per_s);
    let down = Link::new(route.rate_bytes_per_s);
    loop {
        let (client, _) = listener.accept().await?;
        let (route, up, down) = (route.clone(), up.clone(), down.clone());
        tokio::spawn(async move {
            if let Err(error) = forward(client, &route, up, down).await {
                eprintln!("delay-proxy: {} -> {}: {error}", route.listen, route.target);
            }
        });
    }
}

async fn forward(
    client: TcpStream,
    route: &Route,
    up: Arc<Link>,
    down: Arc<Link>,
) -> std::io::Result<()> {
    let accepted = Instant::now();
    client.set_nodelay(true)?;
    let server = TcpStream::connect(route.target).await?;
    server.set_nodelay(true)?;
    let one_way = route.rtt / 2;
    // The handshake a real path would have cost before the client could send.
    let opens_at = accepted + route.rtt;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let upstream = pipe(client_read, server_write, up, one_way, opens_at);
    let downstream = pipe(server_read, client_write, down, one_way, accepted);
    let (a, b) = tokio::join!(upstream, downstream);
    a.and(b)
}

/// A chunk and when it may leave; empty data is the end of the stream.
struct Stamped {
    due: Instant,
    data: Vec<u8>,
}

/// Copies `from` to `to`, each chunk leaving `one_way` after it was serialised onto `link`
/// (and never before `not_before + one_way`), then passes the end of the stream on the same way.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
    one_way: Duration,
    not_before: Instant,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Stamped>(QUEUE_CHUNKS_MAX);
    let reader = async move {
        loop {
            let mut data = vec![0; CHUNK_BYTES_MAX];
            // A read error ends the stream like an end of file: the writer closes its side.
            let n = from.read(&mut data).await.unwrap_or(0);
            data.truncate(n);
            let due = link.sent_at(n).max(not_before) + one_way;
            if tx.send(Stamped { due, data }).await.is_err() || n == 0 {
                return;
            }
        }
    };
    let writer = async move {
        while let Some(chunk) = rx.recv().await {
            tokio::time::sleep_until(chunk.due).await;
            if chunk.data.is_empty() {
                return to.shutdown().await;
            }
            to.write_all(&chunk.data).await?;
        }
        Ok(())
    };
    let ((), written) = tokio::join!(reader, writer);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn bytes_pass_unchanged_and_in_order_both_ways_with_delay_and_rate() {
        let echo = echo_server().await;
        let route = Route::parse(&format!(
            "listen=127.0.0.1:0 target={echo} rtt_ms=2 rate_mbit=800"
        ))
        .expect("route");
        let (addr, _task) = bind(route).await.expect("bind proxy");
        // More than the queue holds, in uneven writes, so chunks are split and re-stamped and
        // back-pressure is exercised; every byte's position is encoded in its value.
        let sent: Vec<u8> = (0..(QUEUE_CHUNKS_MAX * CHUNK_BYTES_MAX * 3) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut r, mut w) = stream.into_split();
        let to_send = sent.clone();
        let writer = tokio::spawn(async move {
            for piece in to_send.chunks(7_777) {
                w.write_all(piece).await.expect("write");
            }
            w.shutdown().await.expect("shutdown");
        });
        let mut received = Vec::new();
        r.read_to_end(&mut received).await.expect("read back");
        writer.await.expect("writer");
        assert_eq!(received.len(), sent.len());
        assert!(received == sent, "bytes changed or reordered");
    }

    #[tokio::test]
    async fn several_connections_share_a_route() {
        let echo = echo_server().await;
        let route =
            Route::parse(&format!("listen=127.0.0.1:0 target={echo} rtt_ms=0")).expect("route");
        let (addr, _task) = bind(route).await.expect("bind proxy");
        let mut tasks = Vec::new();
        for n in 0..4u8 {
            tasks.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                let sent = vec![n; 100_000];
                stream.write_all(&sent).await.expect("write");
                stream.shutdown().await.expect("shutdown");
                let mut received = Vec::new();
                stream.read_to_end(&mut received).await.expect("read");
                received == sent
            }));
        }
        for task in tasks {
            assert!(task.await.expect("task"));
        }
    }

    #[test]
    fn a_good_route_parses() {
        let route =
            Route::parse("target=10.0.0.2:8441 rtt_ms=180 listen=10.0.0.1:8441 rate_mbit=20")
                .expect("route");
        assert_eq!(route.listen, "10.0.0.1:8441".parse().expect("addr"));
        assert_eq!(route.target, "10.0.0.2:8441".parse().expect("addr"));
        assert_eq!(route.rtt, Duration::from_millis(180));
        assert_eq!(route.rate_bytes_per_s, Some(2_500_000.0));
        let plain = Route::parse("listen=127.0.0.1:1 target=127.0.0.1:2 rtt_ms=0").expect("route");
        assert_eq!(plain.rate_bytes_per_s, None);
    }

    #[test]
    fn a_bad_route_is_a_clear_error() {
        let ok = "listen=127.0.0.1:1 target=127.0.0.1:2";
        let cases: Vec<(String, RouteError)> = vec![
            (
                "target=127.0.0.1:2 rtt_ms=1".into(),
                RouteError::Missing("listen"),
            ),
            (
                "listen=127.0.0.1:1 rtt_ms=1".into(),
                RouteError::Missing("target"),
            ),
            (ok.into(), RouteError::Missing("rtt_ms")),
            (
                format!("{ok} rtt_ms=1 delay=3"),
                RouteError::UnknownField("delay".into()),
            ),
            (
                format!("{ok} rtt_ms"),
                RouteError::UnknownField("rtt_ms".into()),
            ),
            (
                "listen=localhost:1 target=127.0.0.1:2 rtt_ms=1".into(),
                RouteError::BadValue {
                    field: "listen",
                    value: "localhost:1".into(),
                    reason: "not an IP address and port".into(),
                },
            ),
            (
                format!("{ok} rtt_ms=1 rtt_ms=2"),
                RouteError::Repeated("rtt_ms"),
            ),
            (
                format!("{ok} rtt_ms={}", RTT_MS_MAX + 1),
                RouteError::RttTooLong(RTT_MS_MAX + 1),
            ),
            (
                format!("{ok} rtt_ms=1 rate_mbit=0"),
                RouteError::BadValue {
                    field: "rate_mbit",
                    value: "0".into(),
                    reason: "must be a positive number".into(),
                },
            ),
        ];
        let long = format!("{ok} rtt_ms=1 {}", " ".repeat(ROUTE_LINE_BYTES_MAX));
        let cases = cases
            .into_iter()
            .chain([(long.clone(), RouteError::LineTooLong(long.len()))]);
        for (text, expected) in cases {
            assert_eq!(Route::parse(&text), Err(expected), "{text:?}");
        }
        let error = Route::parse(&format!("{ok} rtt_ms=-5")).expect_err("negative");
        assert!(error.to_string().starts_with("rtt_ms=\"-5\": "), "{error}");
        // The longest round trip allowed is accepted.
        assert_eq!(
            Route::parse(&format!("{ok} rtt_ms={RTT_MS_MAX}")).map(|r| r.rtt.as_millis()),
            Ok(u128::from(RTT_MS_MAX))
        );
    }

    #[test]
    fn a_rate_the_link_cannot_schedule_is_refused() {
        // What the fuzz target checks of every route that parses: a tiny rate made one chunk's
        // time on the wire overflow a Duration (a panic in the proxy's writer), and a huge one
        // gave an infinite rate.
        let ok = "listen=127.0.0.1:1 target=127.0.0.1:2 rtt_ms=1";
        for rate in ["1e-300", "0.009", "100001", "1e308", "inf", "NaN", "-1"] {
            let parsed = Route::parse(&format!("{ok} rate_mbit={rate}"));
            assert!(
                matches!(
                    parsed,
                    Err(RouteError::BadValue {
                        field: "rate_mbit",
                        ..
                    })
                ),
                "{rate}: {parsed:?}"
            );
        }
        for rate in [RATE_MBIT_MIN, RATE_MBIT_MAX] {
            let route = Route::parse(&format!("{ok} rate_mbit={rate}")).expect("in range");
            let link = Link::new(route.rate_bytes_per_s);
            let now = Instant::now();
            assert!(link.sent_at(CHUNK_BYTES_MAX) >= now);
        }
    }

    #[test]
    fn a_bad_routes_file_is_a_clear_error() {
        let line = |port: u32| format!("listen=127.0.0.1:{port} target=127.0.0.1:2 rtt_ms=5\n");
        let good: String = format!("# phone -> beijing\n\n{}{}", line(1), line(3));
        assert_eq!(Route::parse_file(&good).map(|r| r.len()), Ok(2));
        let error = Route::parse_file(&format!("{}\nlisten=1 target=2 rtt_ms=3\n", line(1)))
            .expect_err("bad line");
        assert!(
            error.to_string().starts_with("line 3: listen=\"1\""),
            "{error}"
        );
        assert_eq!(
            Route::parse_file(&format!("{}{}", line(1), line(1))),
            Err(RouteError::DuplicateListen(
                "127.0.0.1:1".parse().expect("addr")
            ))
        );
        assert_eq!(Route::parse_file("# nothing\n"), Err(RouteError::Empty));
        let full: String = (1..=ROUTES_MAX as u32).map(line).collect();
        assert_eq!(Route::parse_file(&full).map(|r| r.len()), Ok(ROUTES_MAX));
        let over = format!("{full}{}", line(ROUTES_MAX as u32 + 1));
        assert_eq!(
            Route::parse_file(&over),
            Err(RouteError::TooManyRoutes(ROUTES_MAX + 1))
        );
    }
}
