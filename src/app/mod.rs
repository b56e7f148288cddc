//! The application room: where tailchat's rules live, between the terminal ([`crate::ui`]),
//! the network ([`crate::net`]), the disk ([`crate::store`]) and the protocol core
//! ([`crate::proto`]).
//!
//! # Layout
//! - [`run`] (this file): the event loop. It selects over the network, one timer, typed
//!   lines, finished name lookups, an interface rescan and shutdown, and after every wake-up
//!   drains the core in the order that keeps the durability promise: events first (what they
//!   mean is appended to the journal and synced), then datagrams out, then lines on screen.
//!   It reaches the network through the [`Network`] trait and the screen through [`Screen`],
//!   so it runs in tests over channels, without sockets or a terminal.
//! - [`chat`]: the chat's state and what each command and event does.
//! - [`files`]: sending files — the commands, the control messages, the data threads' reports.
//! - [`lookup`]: which peer a typed nick means.
//! - [`json`]: JSON lines for programs (`--json`, the control socket).
//! - [`control`]: the control socket in the data directory, through which programs reach the
//!   running tailchat; [`client`]: its other end (`tailchat send`, `tailchat attach`).
//! - [`persist`]: which events become journal records; group commit.
//! - [`settings`]: the command line over the config file over the defaults.
//! - [`start`]: the data directory opened and the journal restored into the core.
//! - [`tailnet`]: tailscaled's device list and WhoIs — peers found with no `/add`, who each
//!   one is, the allow-list's door; [`allow`]: the allow-list itself.

pub mod allow;
pub mod chat;
pub mod client;
pub mod control;
pub mod files;
pub mod json;
pub mod lookup;
pub mod persist;
pub mod presence;
pub mod settings;
pub mod start;
pub mod tailnet;

use crate::net::addr::HostSpec;
use crate::net::udp::UdpIo;
use crate::proto::Endpoint;
use crate::store::journal::{Journal, Unshown};
use crate::ui::render::Output;
use crate::ui::terminal::Input;
use chat::{Chat, Outcome};
use control::{ClientId, ControlServer, FromClient};
use std::net::SocketAddr;
use std::path::PathBuf;
use tailnet::{Tailnet, TailnetSetup};

use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Datagrams (or typed lines) taken in one wake-up before the core builds its answers: what
/// arrives together is answered together (shared datagrams, one ack), and the bound keeps one
/// busy source from starving the others.
const BATCH: usize = 64;
/// How often the network interfaces are scanned for changes (a new network means announcing
/// at once; a scan is one cheap system call), and the core's counters logged (at debug level,
/// when they changed).
const INTERFACE_SCAN: Duration = Duration::from_secs(5);

/// The network as the event loop uses it. [`UdpIo`] is the real one.
pub trait Network {
    /// Completes when a datagram may be waiting (spuriously at times).
    fn readable(&mut self) -> impl Future<Output = ()>;
    /// Hands every datagram already waiting, up to `max`, to `ep` — those from a source
    /// `admit` refuses are dropped instead; returns how many were taken either way.
    fn receive(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        max: usize,
        admit: &mut dyn FnMut(SocketAddr) -> bool,
    ) -> usize;
    /// Sends everything `ep` has to send: announcements, then datagrams.
    fn transmit(&mut self, ep: &mut Endpoint) -> impl Future<Output = ()>;
    /// Scans the interfaces again; true when one appeared (time to announce).
    fn rescan(&mut self) -> bool;
    /// The interfaces announced on, or `None` when LAN discovery is off.
    fn discovery_interfaces(&self) -> Option<Vec<String>>;
}

impl Network for UdpIo {
    async fn readable(&mut self) {
        UdpIo::readable(self).await;
    }

    fn receive(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        max: usize,
        admit: &mut dyn FnMut(SocketAddr) -> bool,
    ) -> usize {
        UdpIo::receive_admitted(self, ep, now, max, admit)
    }

    async fn transmit(&mut self, ep: &mut Endpoint) {
        UdpIo::transmit(self, ep).await;
    }

    fn rescan(&mut self) -> bool {
        UdpIo::rescan(self)
    }

    fn discovery_interfaces(&self) -> Option<Vec<String>> {
        UdpIo::discovery_interfaces(self)
    }
}

/// The screen as the application uses it. None of these may block, except [`Screen::flush`].
pub trait Screen: Send {
    /// Shows one line.
    fn print(&self, out: &Output);
    /// Our nick changed: the prompt shows it.
    fn nick(&self, nick: &str);
    /// The nicks of the peers present, for completion.
    fn peer_nicks(&self, nicks: Vec<String>);
    /// A mark after every line printed so far (increasing).
    fn mark(&self) -> u64;
    /// The last mark whose lines have all been written (or skipped and counted).
    fn reached(&self) -> u64;
    /// Waits until every line printed so far is written. Blocks: only at the very end.
    fn flush(&self);
    /// Shows one JSON line as it is (already escaped; `--json` mode).
    fn print_json(&self, line: String);
    /// Bytes of lines waiting to be written: a long replay goes out as this stays low.
    fn backlog(&self) -> usize {
        0
    }
}

impl Screen for crate::ui::terminal::OutputSender {
    fn print(&self, out: &Output) {
        crate::ui::terminal::OutputSender::print(self, out);
    }

    fn nick(&self, nick: &str) {
        self.set_nick(nick);
    }

    fn peer_nicks(&self, nicks: Vec<String>) {
        self.set_peer_nicks(nicks);
    }

    fn mark(&self) -> u64 {
        crate::ui::terminal::OutputSender::mark(self)
    }

    fn reached(&self) -> u64 {
        crate::ui::terminal::OutputSender::reached(self)
    }

    fn flush(&self) {
        crate::ui::terminal::OutputSender::flush(self);
    }

    fn print_json(&self, line: String) {
        self.print_raw(line);
    }

    fn backlog(&self) -> usize {
        crate::ui::terminal::OutputSender::backlog(self)
    }
}

/// A channel of lines, for tests and benchmarks: the prompt is not kept, and a line sent is a
/// line written.
impl Screen for std::sync::mpsc::Sender<Output> {
    fn print(&self, out: &Output) {
        let _ = self.send(out.clone());
    }

    fn nick(&self, _nick: &str) {}

    fn peer_nicks(&self, _nicks: Vec<String>) {}

    fn mark(&self) -> u64 {
        0
    }

    fn reached(&self) -> u64 {
        u64::MAX
    }

    fn flush(&self) {}

    fn print_json(&self, line: String) {
        let _ = self.send(Output::Info(line));
    }
}

/// Everything the loop needs to start, besides the network and the screen.
pub struct Setup {
    /// The protocol core, configured and restored (see [`start::endpoint`]).
    pub endpoint: Endpoint,
    /// Its session number, recorded in the journal so that the next run's is larger.
    pub session: u64,
    /// Peers to contact at start (`--peer`, config file).
    pub peers: Vec<HostSpec>,
    /// The port assumed for `/add HOST` without a port.
    pub default_port: u16,
    /// Which address families the socket reaches, (v4, v6).
    pub reaches: (bool, bool),
    /// The journal (history, outbox, delivered state), if storage is available.
    pub journal: Option<Journal>,
    /// Input is a script, not a person (see [`chat::Chat`]).
    pub scripted: bool,
    /// A script whose lines go only to these nicks (`tailchat send --to`): at start it waits
    /// for them alone of the peers it knows; `None`: for all of them.
    pub awaited: Option<Vec<String>>,
    /// How long a script waits for a contact it asked for, and at the end for its messages
    /// to be acknowledged.
    pub wait: Duration,
    /// Output is JSON lines and input JSON commands (`--json`), for programs.
    pub json: bool,
    /// Where to listen for programs (the data directory; see [`control`]), if anywhere.
    pub control_dir: Option<PathBuf>,
    /// Messages heard in an earlier run that may never have reached the screen, shown first.
    pub unshown: Vec<Unshown>,
    /// Where files go and come from (see [`files`]).
    pub files: files::FilesSetup,
    /// Away, auto-away, forgetting, notifications (see [`presence`]).
    pub presence: presence::PresenceSetup,
}

/// Runs the chat until the user quits, input ends, or `shutdown` completes; then records where
/// peers were, says what is still waiting, and returns how it went. No tailnet: see
/// [`run_with`].
pub async fn run(
    setup: Setup,
    net: impl Network,
    screen: Box<dyn Screen>,
    input: mpsc::UnboundedReceiver<Input>,
    shutdown: impl Future<Output = ()>,
) -> Outcome {
    run_with(setup, TailnetSetup::off(), net, screen, input, shutdown).await
}

/// [`run`], with the tailnet side set up as `tailnet` says: tailscaled's device list read and
/// its devices contacted, who each peer is shown, and the allow-list at the door.
pub async fn run_with(
    setup: Setup,
    tailnet: TailnetSetup,
    mut net: impl Network,
    screen: Box<dyn Screen>,
    mut input: mpsc::UnboundedReceiver<Input>,
    shutdown: impl Future<Output = ()>,
) -> Outcome {
    let (resolved_tx, mut resolved_rx) = mpsc::unbounded_channel();
    let (tailnet_tx, mut tailnet_rx) = mpsc::unbounded_channel();
    let reaches = setup.reaches;
    let mut setup = setup;
    let setup_session = setup.session;
    let peers = std::mem::take(&mut setup.peers);
    let unshown = std::mem::take(&mut setup.unshown);
    let control_dir = setup.control_dir.take();
    let port = setup.files.port; // the UDP port we listen on, told to programs that connect
    let mut chat = Chat::new(setup, screen, resolved_tx);
    chat.set_tailnet(Tailnet::new(tailnet, reaches, Some(tailnet_tx)));
    let mut control = control_dir.and_then(|dir| match ControlServer::bind(&dir) {
        Ok(server) => Some(server),
        Err(e) => {
            chat.print(Output::Notice(format!(
                "control socket off ({e}): tailchat send will start its own peer"
            )));
            None
        }
    });
    let (client_tx, mut client_rx) = mpsc::unbounded_channel();
    let mut file_events = chat.files.take_events();
    chat.replay(unshown);
    for spec in peers {
        chat.resolve(spec);
    }
    if let Some(names) = net.discovery_interfaces() {
        chat.print(Output::Notice(if names.is_empty() {
            "LAN discovery: no network interface to announce on yet (still watching); /add HOST works".to_owned()
        } else {
            format!("LAN discovery: announcing on {}", names.join(", "))
        }));
    }
    chat.flush_screen();
    let discovering = net.discovery_interfaces().is_some();
    // Only when it announces somewhere: with no interface yet, nobody would answer.
    if net
        .discovery_interfaces()
        .is_some_and(|names| !names.is_empty())
    {
        chat.hold_for_discovery(Instant::now());
    }
    chat.hold_for_known(Instant::now());
    tracing::debug!(
        "running as {} (session {}), discovery {}",
        chat.ep.peer_id(),
        setup_session,
        if discovering { "on" } else { "off" }
    );
    let mut scan = tokio::time::interval(INTERFACE_SCAN);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    scan.tick().await; // the first tick is immediate; the network scanned at start
    let mut input_open = true;
    tokio::pin!(shutdown);
    loop {
        let timer = chat.next_wakeup();
        tokio::select! {
            () = &mut shutdown, if !chat.quitting() => chat.quit(),
            () = net.readable() => {
                let now = Instant::now();
                let (ep, door) = chat.receive_parts();
                net.receive(ep, now, BATCH, &mut |from| door.admit(from, now));
                door.pump();
            }
            () = sleep_until(timer) => chat.on_timer(Instant::now()),
            line = input.recv(), if input_open && chat.accepts_input() => {
                let mut next = Some(line);
                let mut taken = 0;
                while let Some(line) = next.take() {
                    match line {
                        Some(Input::Line(line)) => chat.on_line(&line),
                        Some(Input::Eof) | None => {
                            input_open = false;
                            chat.end_of_input();
                            break;
                        }
                    }
                    taken += 1;
                    // A script's line waits while a contact it asked for is being made.
                    if taken < BATCH && chat.accepts_input() {
                        next = input.try_recv().ok().map(Some);
                    }
                }
            },
            Some(r) = resolved_rx.recv() => chat.on_resolved(r),
            Some(news) = tailnet_rx.recv() => chat.on_tailnet(news),
            Some((id, to)) = accept(control.as_mut(), &client_tx) => {
                chat.client_connected(id, to, port);
            }
            Some(msg) = client_rx.recv() => chat.on_client(msg),
            Some(ev) = file_events.recv() => chat.on_file_event(ev),
            answer = chat.history_answer() => chat.on_history(answer),
            _ = scan.tick() => {
                if discovering && net.rescan() {
                    chat.ep.announce_soon(Instant::now());
                }
                chat.log_stats();
            }
        }
        // The durability order: events recorded and synced, then datagrams, then the screen.
        let events = chat.take_events();
        net.transmit(&mut chat.ep).await;
        chat.show(events);
        if chat.finished(Instant::now()) {
            break;
        }
    }
    // Transfers stop before the quit lines say where they are (they would go on moving bytes
    // until the process exits); their ends are waited for a moment.
    chat.files.stop_data_for_quit();
    let until = tokio::time::Instant::now() + DATA_STOP_WAIT;
    while chat.files.data_running() {
        match tokio::time::timeout_at(until, file_events.recv()).await {
            Ok(Some(ev)) => chat.on_file_event(ev),
            _ => break,
        }
    }
    chat.files.settle_for_quit();
    chat.goodbye();
    chat.outcome()
}

/// How long quitting waits for the transfers' data connections to stop.
const DATA_STOP_WAIT: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests;

/// The next program on the control socket, or never when there is none.
async fn accept(
    control: Option<&mut ControlServer>,
    to_loop: &mpsc::UnboundedSender<FromClient>,
) -> Option<(ClientId, mpsc::Sender<String>)> {
    match control {
        Some(server) => server.accept(to_loop).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
