//! Real sockets on loopback, one run: raw UDP round trip (the baseline), tailchat send→deliver
//! latency between two instances of the real driver, sustained reliable messages per second to
//! one peer, and the idle RSS of the program. Figures go to docs/BENCHMARKS.md by hand.
//!
//! Run: `cargo bench --bench loopback`.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};
use tailchat::app::{self, Setup};
use tailchat::net::addr;
use tailchat::net::socket;
use tailchat::net::udp::UdpIo;
use tailchat::proto::{Config, Endpoint, Identity, Limits};
use tailchat::ui::render::Output;
use tailchat::ui::terminal::Input;
use tokio::sync::mpsc::UnboundedSender;

const ROUND_TRIPS: usize = 20_000;
const LATENCY_MESSAGES: usize = 10_000;
const BURST: usize = 200_000;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Plain blocking sockets: A sends 64 bytes, B echoes, A waits.
fn raw_round_trips() -> Vec<Duration> {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_addr = b.local_addr().unwrap();
    let echo = thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..ROUND_TRIPS {
            let (n, from) = b.recv_from(&mut buf).unwrap();
            b.send_to(&buf[..n], from).unwrap();
        }
    });
    let mut buf = [0u8; 64];
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        a.send_to(&[7u8; 64], b_addr).unwrap();
        a.recv_from(&mut buf).unwrap();
        rtts.push(t.elapsed());
    }
    echo.join().unwrap();
    rtts.sort();
    rtts
}

/// Plain `send()` of 64-byte datagrams for one second; how many per second the receiver gets.
fn raw_rate() -> f64 {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let to = rx.local_addr().unwrap();
    let counter = thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut n = 0u64;
        while rx.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..64 {
            let _ = tx.send_to(&[1u8; 64], to);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    counter.join().unwrap() as f64 / secs
}

/// The protocol core alone over the same blocking sockets as the raw baseline (same wake-up
/// model: one thread blocked in `recv` per side): alice's `send_message` to bob's `Message`
/// event, one at a time. The difference to raw UDP is what the protocol itself costs.
fn core_one_way() -> Vec<Duration> {
    let a_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr) = (a_sock.local_addr().unwrap(), b_sock.local_addr().unwrap());
    let mut a = endpoint("alice", a_addr.port());
    let mut b = endpoint("bob", b_addr.port());
    // Both sides run their endpoint on their own thread, like the drivers; a channel tells
    // alice's thread when to send, and bob's reports each arrival time.
    let (go_tx, go_rx) = mpsc::channel::<Instant>();
    let (done_tx, done_rx) = mpsc::channel::<Duration>();
    let pump = |ep: &mut Endpoint, sock: &UdpSocket| {
        while let Some(t) = ep.poll_transmit() {
            let _ = sock.send_to(&t.bytes, t.to);
        }
    };
    let bob = thread::spawn(move || {
        let mut buf = [0u8; 2048];
        b_sock
            .set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let mut seen = 0;
        while seen < ROUND_TRIPS {
            match b_sock.recv_from(&mut buf) {
                Ok((n, from)) => b.handle_datagram(Instant::now(), from, &buf[..n]),
                Err(_) => b.handle_timeout(Instant::now()),
            }
            pump(&mut b, &b_sock);
            while let Some(e) = b.poll_event() {
                if let tailchat::proto::Event::Message { text, .. } = e {
                    let sent: u128 = text.parse().unwrap();
                    let now = bench_clock();
                    done_tx
                        .send(Duration::from_nanos((now - sent) as u64))
                        .unwrap();
                    seen += 1;
                }
            }
        }
    });
    a.add_address(Instant::now(), b_addr);
    pump(&mut a, &a_sock);
    a_sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut joined = false;
    while !joined {
        if let Ok((n, from)) = a_sock.recv_from(&mut buf) {
            a.handle_datagram(Instant::now(), from, &buf[..n]);
        } else {
            thread::yield_now();
            a.handle_timeout(Instant::now());
        }
        pump(&mut a, &a_sock);
        while let Some(e) = a.poll_event() {
            joined |= matches!(e, tailchat::proto::Event::PeerJoined { .. });
        }
    }
    drop(go_tx);
    drop(go_rx);
    let mut lat = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let stamp = bench_clock().to_string();
        a.send_message(
            Instant::now(),
            tailchat::proto::Recipients::Everyone,
            &stamp,
        )
        .unwrap();
        pump(&mut a, &a_sock);
        // Wait for bob, while taking his acks and running alice's timers (a datagram the
        // kernel drops is retransmitted, as in the program).
        let d = loop {
            if let Ok(d) = done_rx.try_recv() {
                break d;
            }
            match a_sock.recv_from(&mut buf) {
                Ok((n, from)) => a.handle_datagram(Instant::now(), from, &buf[..n]),
                Err(_) => a.handle_timeout(Instant::now()),
            }
            pump(&mut a, &a_sock);
            while a.poll_event().is_some() {}
        };
        lat.push(d);
    }
    bob.join().unwrap();
    lat.sort();
    lat
}

/// A fresh protocol core for one side of a benchmark (no discovery, random identity).
fn endpoint(nick: &str, port: u16) -> Endpoint {
    Endpoint::new(
        Config {
            identity: Identity::from_secret(rand::random()),
            nick: nick.to_owned(),
            port,
            seed: rand::random(),
            discovery: false,
            session: rand::random::<u64>() | 1,
            limits: Limits::default(),
        },
        Instant::now(),
    )
}

/// Nanoseconds on one clock both threads read.
fn bench_clock() -> u128 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos()
}

/// One instance of the real driver on its own thread, like the program runs it.
struct Instance {
    input: UnboundedSender<Input>,
    output: Receiver<Output>,
    port: u16,
}

fn start(nick: &str, peer: Option<u16>) -> Instance {
    let bound = socket::bind(Some("127.0.0.1".parse().unwrap()), 0).unwrap();
    let port = bound.socket.local_addr().unwrap().port();
    let endpoint = endpoint(nick, port);
    let peers = peer
        .map(|p| vec![addr::parse(&format!("127.0.0.1:{p}"), 7654).unwrap()])
        .unwrap_or_default();
    let (in_tx, in_rx) = tokio::sync::mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::channel();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let setup = Setup {
            presence: Default::default(),
            endpoint,
            session: 1,
            peers,
            default_port: 7654,
            reaches: (bound.reaches_v4, bound.reaches_v6),
            journal: None,
            scripted: false,
            awaited: None,
            wait: std::time::Duration::from_secs(5),
            json: false,
            control_dir: None,
            unshown: Vec::new(),
            files: Default::default(),
        };
        rt.block_on(async {
            let net = UdpIo::new(bound, false, 0).unwrap();
            app::run(setup, net, Box::new(out_tx), in_rx, std::future::pending()).await;
        });
    });
    Instance {
        input: in_tx,
        output: out_rx,
        port,
    }
}

impl Instance {
    fn wait_for(&self, f: impl Fn(&Output) -> bool) {
        loop {
            let o = self
                .output
                .recv_timeout(Duration::from_secs(10))
                .expect("expected output");
            if f(&o) {
                return;
            }
        }
    }
}

fn is_group(o: &Output, want: &str) -> bool {
    matches!(o, Output::Group { text, .. } if text == want)
}

fn idle_rss_kib() -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailchat"))
        .args([
            "--nick",
            "idle",
            "--no-discovery",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    // Measuring an idle program means letting it idle; this is a measurement, not a test.
    thread::sleep(Duration::from_secs(2));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn main() {
    let rtts = raw_round_trips();
    let raw_one_way = pct(&rtts, 0.5) / 2;
    println!(
        "raw UDP round trip, 64 B, {ROUND_TRIPS} times: p50 {} p99 {} (one way ≈ {})",
        us(pct(&rtts, 0.5)),
        us(pct(&rtts, 0.99)),
        us(raw_one_way)
    );
    let core = core_one_way();
    println!(
        "protocol core over blocking sockets, send_message→Message, {ROUND_TRIPS} times: p50 {} p99 {} — p50 is {:.1}× raw one way",
        us(pct(&core, 0.5)),
        us(pct(&core, 0.99)),
        pct(&core, 0.5).as_secs_f64() / raw_one_way.as_secs_f64()
    );
    let rate = raw_rate();
    println!("raw UDP send() rate, 64 B: {rate:.0} datagrams/s received");

    let a = start("alice", None);
    let b = start("bob", Some(a.port));
    b.wait_for(|o| matches!(o, Output::Notice(n) if n.contains("alice joined")));
    a.wait_for(|o| matches!(o, Output::Notice(n) if n.contains("bob joined")));

    // Latency: one message at a time, from alice's input to bob's output.
    let mut lat = Vec::with_capacity(LATENCY_MESSAGES);
    for i in 0..LATENCY_MESSAGES {
        let text = format!("latency {i}");
        let t = Instant::now();
        a.input.send(Input::Line(text.clone())).unwrap();
        b.wait_for(|o| is_group(o, &text));
        lat.push(t.elapsed());
        while a.output.try_recv().is_ok() {}
    }
    lat.sort();
    let p50 = pct(&lat, 0.5);
    println!(
        "tailchat send→deliver, {LATENCY_MESSAGES} messages: p50 {} p99 {} max {} — p50 is {:.1}× raw one way",
        us(p50),
        us(pct(&lat, 0.99)),
        us(*lat.last().unwrap()),
        p50.as_secs_f64() / raw_one_way.as_secs_f64()
    );

    // Throughput: short messages as fast as they are taken, in rounds of CHUNK so the sender's
    // bounded queue (8192 items per peer) is never the limit; time until bob has them all.
    const CHUNK: usize = 4000;
    let t = Instant::now();
    for round in 0..BURST / CHUNK {
        for i in round * CHUNK..(round + 1) * CHUNK {
            a.input.send(Input::Line(format!("burst {i}"))).unwrap();
        }
        let last = format!("burst {}", (round + 1) * CHUNK - 1);
        b.wait_for(|o| is_group(o, &last));
        while let Ok(o) = a.output.try_recv() {
            assert!(!matches!(o, Output::Error(_)), "{o:?}");
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let msgs = BURST as f64 / secs;
    println!(
        "tailchat sustained: {BURST} messages in {secs:.2} s = {msgs:.0} messages/s — {:.2}× the raw datagram rate",
        msgs / rate
    );

    println!("idle RSS of the program: {} KiB", idle_rss_kib());
}
