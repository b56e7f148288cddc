//! The `tailchat` program: command line, logging, start-up, and exit codes.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;
use tailchat::app::settings::{Args, Settings};
use tailchat::app::start::{self, Storage};
use tailchat::app::{self, Setup};
use tailchat::net::socket;
use tailchat::net::udp::UdpIo;
use tailchat::store;
use tailchat::ui::render::Output;
use tailchat::ui::terminal;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tailchat: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let settings = Settings::merge(args)?;
    let bound = socket::bind(settings.bind, settings.port)?;
    let port = bound
        .socket
        .local_addr()
        .map_err(|e| format!("cannot read the socket's address: {e}"))?
        .port();
    let discovery = settings.discovery_possible();
    let (mut storage, storage_error) =
        match Storage::open(settings.data_dir.as_deref(), &settings.history_limit) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
    init_logging(interactive, storage.as_ref().map(|s| s.dir.as_path()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Before the first prompt; puts the terminal back however this function ends, or panics.
    let _terminal_state = tailchat::ui::tty::TerminalState::save_interactive();
    let term = terminal::start(
        &settings.nick,
        storage.as_ref().map(Storage::prompt_history),
    );
    term.output.print(&Output::Notice(format!(
        "tailchat {}: you are {}, listening on UDP port {port} ({}). /help lists commands.",
        env!("CARGO_PKG_VERSION"),
        settings.nick,
        settings.discovery_note(),
    )));
    let started = start::endpoint(
        &settings.nick,
        port,
        discovery,
        storage.as_ref(),
        Instant::now(),
    );
    for n in &started.notices {
        term.output.print(n);
    }
    if let Some(problem) = storage.as_ref().and_then(|s| s.problem.clone()) {
        term.output
            .print(&Output::Error(format!("storage: {problem}")));
    }
    if let Some(e) = storage_error {
        term.output.print(&Output::Error(format!(
            "storage off: {e} — the chat works, but nothing is kept after you quit"
        )));
    }
    let reaches = (bound.reaches_v4, bound.reaches_v6);
    let setup = Setup {
        endpoint: started.endpoint,
        session: started.session,
        peers: settings.peers,
        default_port: settings.default_port,
        reaches,
        unshown: storage
            .as_mut()
            .map(|s| std::mem::take(&mut s.restored.unshown))
            .unwrap_or_default(),
        journal: storage.and_then(|s| s.journal),
        scripted: !interactive,
    };
    let output = term.output.clone();
    let result = runtime.block_on(async {
        let net =
            UdpIo::new(bound, discovery).map_err(|e| format!("cannot use the socket: {e}"))?;
        app::run(
            setup,
            net,
            Box::new(term.output),
            term.input,
            shutdown_signal(),
        )
        .await;
        Ok(())
    });
    // The printer thread owns the screen: let it write the last lines before we exit.
    output.flush();
    result
}

/// Completes on Ctrl-C (when not reading a terminal), SIGTERM or SIGHUP (the terminal window
/// was closed): all mean "/quit", so peers hear that we left.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let wait_for = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = wait_for(SignalKind::terminate()) => {}
        () = wait_for(SignalKind::hangup()) => {}
    }
}

/// Logs never reach the prompt line: without a terminal they go to stderr; on a terminal, only
/// when RUST_LOG asks for them, to `tailchat.log` in the data directory.
fn init_logging(interactive: bool, data_dir: Option<&std::path::Path>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    if !interactive {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    let Some(dir) = data_dir else {
        return;
    };
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(store::LOG_FILE))
    else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
}
