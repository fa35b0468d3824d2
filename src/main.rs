//! The `corestream` command: parses the command line (clap), loads the config, starts the
//! server and waits for SIGINT/SIGTERM. Exit status: 0 after a clean stop, 1 when the server
//! cannot start, 2 for a bad command line or config.

use clap::{Args, CommandFactory, Parser, Subcommand};
use corestream::base::config::Config;
use corestream::server;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `corestream start --help` adds after the options: the config keys.
const CONFIG_KEYS: &str = "\
CONFIG KEYS (deepstream's): serverName, logLevel, port, host, tcpPort, tcpHost, urlPath,
    webServerEnabled, tcpServerEnabled, auth (type none | file with path, hash, iterations,
    keyLength | http with endpointUrl, permittedStatusCodes, requestTimeout), permission (type
    none | config with an allow-everything rules file), rpcAckTimeout, rpcTimeout,
    listenResponseTimeout, unauthenticatedClientTimeout, maxAuthAttempts, maxMessageSize,
    logInvalidAuthData, connectionEndpoints.websocket.options.*, heartbeatInterval,
    plugins.message / plugins.cache (name redis, options host, port, password, db: join the
    cluster through that Redis), clusterKeepAliveInterval, clusterActiveCheckInterval,
    clusterNodeInactiveTimeout.
corestream's own keys: maxOutboundBufferSize (bytes a session may have unsent before it is
    disconnected as a slow consumer, default 8388608), ioMemory (io_uring memory per core in
    bytes, default 524288), spinBeforePark (ms an idle core spins before sleeping, default 0),
    cores, healthCheckPath, tcpProxyProtocol (expect a PROXY protocol v1/v2 header on the TCP
    port), trustedProxies (IP addresses whose PROXY headers and user headers are believed),
    auth type proxy-header (options header, dataHeader: the user a trusted proxy
    authenticated), websocketEchoPath, engineioEchoPath, engineioPingInterval,
    engineioPingTimeout, allowAllOrigins and origins (browser origins allowed on the HTTP port;
    others get 403).
Limits (README, Security): maxParseErrors (10), maxSubscriptionsPerConnection (100000),
    maxListenPatternsPerConnection (100), maxRpcNamesPerConnection (10000),
    maxRpcCallsInFlightPerConnection (1000), maxRecordSize (maxMessageSize), maxRecords
    (10000000), maxEngineioSessions (100000), maxEngineioSessionsPerAddress (1000),
    maxEngineioQueuedPackets (1000), maxAuthAttemptsPerAddress (100) per authAttemptsWindow
    (60000 ms), httpHeaderTimeout (10000 ms), httpBodyTimeout (30000 ms), httpKeepAliveTimeout
    (75000 ms), tcpKeepAliveIdle (5000 ms), tcpKeepAliveInterval (5000 ms), tcpKeepAliveCount
    (3), tcpUserTimeout (30000 ms).
Logging: logLevel, logFilter (per-module tracing directives, e.g.
    corestream::cluster=debug), logFormat (text or json).
Other deepstream keys are accepted with a warning saying they have no effect yet.

EXIT STATUS: 0 after a clean stop, 1 if the server cannot start (port in use, users file
    missing...), 2 for a bad command line or config file.";

/// corestream - a thread-per-core realtime server for the deepstream protocol.
#[derive(Parser)]
#[command(name = "corestream", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until SIGINT or SIGTERM.
    #[command(after_long_help = CONFIG_KEYS)]
    Start(StartArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
struct StartArgs {
    /// A deepstream 1.x or 2.x config file (YAML or JSON), read unchanged. Relative paths in it
    /// (users file, permissions file) are resolved against the file's folder. Without it every
    /// setting has deepstream's default: TCP on 0.0.0.0:6021, HTTP on 0.0.0.0:6020, open auth.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Number of cores (one pinned executor each). Default: every online core. Overrides the
    /// config key 'cores'.
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    cores: Option<u16>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Start(arguments) => start(arguments),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "corestream", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

fn start(options: StartArgs) -> ExitCode {
    let (mut config, warnings) = match &options.config {
        Some(path) => match Config::load(path) {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("corestream: {}: {error}", path.display());
                return ExitCode::from(2);
            }
        },
        None => (Config::default(), Vec::new()),
    };
    if let Some(cores) = options.cores {
        config.cores = Some(usize::from(cores));
    }
    if let Err(error) = corestream::logging::init(
        config.log_level,
        config.log_filter.as_deref(),
        config.log_format,
    ) {
        eprintln!("corestream: {error}");
        return ExitCode::from(2);
    }
    for warning in &warnings {
        corestream::warn!("{warning}");
    }
    let tcp = config.tcp_enabled.then_some(config.tcp_address);
    let http = config
        .http_enabled
        .then(|| (config.http_address, config.url_path.clone()));
    let server_name = config.server_name.clone();
    let handle = match server::start(config) {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("corestream: {error}");
            return ExitCode::from(1);
        }
    };
    let mut endpoints = Vec::new();
    if let Some(address) = tcp {
        endpoints.push(format!("TCP (1.x) on {address}"));
    }
    if let Some((address, path)) = http {
        endpoints.push(format!(
            "WebSocket (2.x) on ws://{address}{path}, health check and /metrics on http://{address}"
        ));
    }
    println!(
        "corestream {server_name}: listening for deepstream connections: {} ({} cores)",
        endpoints.join("; "),
        handle.cores
    );
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("corestream: cannot watch for signals: {error}");
            handle.shutdown();
            return ExitCode::from(1);
        }
    };
    if let Some(signal) = signals.forever().next() {
        corestream::info!("signal {signal}: shutting down");
    }
    handle.shutdown();
    ExitCode::SUCCESS
}
