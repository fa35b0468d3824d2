//! The `corestream` command (clap): `start` loads the config, starts the server and waits for
//! SIGINT/SIGTERM; `hash` prints a users-file password hash; `nginx` the shipped nginx config
//! filled in for a deployment; `completions` a shell script.
//! Exit status: 0 after a clean stop, 1 when the server cannot start, 2 for a bad command line
//! or config.

use clap::{Args, CommandFactory, Parser, Subcommand};
use corestream::auth::file::hash_password;
use corestream::base::config::{AuthConfig, Config, FileAuthConfig};
use corestream::server;
use corestream::tools::nginx::{
    http_config, stream_config, Auth, HttpSite, StreamSite, Tls, SPNEGO_VALIDATOR_URL,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc, except in the profiling build (`--features system-allocator`), whose allocations
/// valgrind's massif can attribute (corestream-bench --profile).
#[cfg(not(feature = "system-allocator"))]
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
    /// Print a users-file password hash (as `deepstream hash` does).
    ///
    /// The hash, iterations and keyLength come from the config's file auth; the output goes in
    /// the `password` of a user in the users file.
    #[command(after_long_help = HASH_HELP)]
    Hash(HashArgs),
    /// Print the shipped nginx config filled in for your nodes.
    ///
    /// The http-context file (WebSocket, engine.io with sticky sessions, auth in nginx), or with
    /// --stream the stream-context file (the 1.x TCP protocol). The tests run nginx from exactly
    /// this output.
    #[command(after_long_help = NGINX_HELP)]
    Nginx(NginxArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

const HASH_HELP: &str = "\
EXAMPLE:
    corestream hash --config /etc/corestream/config.yml 's3cret'
    read -rs PASSWORD; printf '%s' \"$PASSWORD\" | corestream hash -c config.yml -

A password given as an argument is visible to other users of the machine (ps, shell history)
while the command runs: pass - to read it from standard input instead.

EXIT STATUS: 0 with the hash on standard output; 2 for a bad command line, a config file that
    cannot be read, or a config whose auth is not `type: file` with a `hash`.";

#[derive(Args)]
struct HashArgs {
    /// The password, or - to read it from standard input (one line; the line end is dropped).
    password: String,
    /// The config file whose `auth: {type: file, options: {hash, iterations, keyLength}}`
    /// says how to hash.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

const NGINX_HELP: &str = "\
EXAMPLES:
    corestream nginx --nodes 10.0.0.11:6020,10.0.0.12:6020 \\
        --tls /etc/ssl/certs/corestream.pem /etc/ssl/private/corestream.key \\
        > /etc/nginx/conf.d/corestream.conf
    corestream nginx --nodes 10.0.0.11:6020,10.0.0.12:6020 --auth kerberos \\
        --tls /etc/ssl/certs/corestream.pem /etc/ssl/private/corestream.key \\
        > /etc/nginx/conf.d/corestream.conf    # plus nginx/corestream-spnego.py on :8089
    corestream nginx --nodes 10.0.0.11:6020,10.0.0.12:6020 --auth basic --no-tls --listen 80 \\
        --htpasswd /etc/nginx/corestream.htpasswd > /etc/nginx/conf.d/corestream.conf
    corestream nginx --stream --nodes 10.0.0.11:6021,10.0.0.12:6021 --listen 6021 \\
        > /etc/nginx/corestream-stream.conf    # then: stream { include ...; } in nginx.conf

TLS is on unless --no-tls (listen 443 ssl; without --tls, the certificate paths the shipped file
names). With --auth basic, request or kerberos, nginx passes the user it authenticated in
X-Forwarded-User:
configure the nodes with `auth: {type: proxy-header}` and `trustedProxies` (nginx's address,
or --proxy-bind). With --stream and the PROXY protocol on (the default), the nodes need
`tcpProxyProtocol: true`. nginx/README.md explains every choice in the files.

--auth kerberos is auth_request to nginx/corestream-spnego.py (Debian 12 ships no SPNEGO module
for nginx): run it beside nginx with the service keytab, as nginx/README.md shows; --auth-url
if it does not listen on the default http://127.0.0.1:8089/.

EXIT STATUS: 0 with the config on standard output; 2 for a bad command line or value.";

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum NginxAuth {
    /// No authentication in nginx (the user headers are cleared).
    None,
    /// Basic auth against --htpasswd.
    Basic,
    /// auth_request to the service at --auth-url.
    Request,
    /// Every auth variant commented out (the user headers are still cleared).
    Off,
    /// Kerberos (SPNEGO) through nginx/corestream-spnego.py (auth_request; see below).
    Kerberos,
}

#[derive(Args)]
struct NginxArgs {
    /// The nodes, comma-separated host:port: their HTTP `port` (default 6020), or with
    /// --stream their `tcpPort` (default 6021).
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        required = true
    )]
    nodes: Vec<String>,
    /// Print the stream-context file (the 1.x TCP protocol) instead of the http one.
    #[arg(long)]
    stream: bool,
    /// nginx's listen address: a port or host:port (default 443, with --no-tls 80, with --stream
    /// 6021).
    #[arg(long, value_name = "ADDRESS")]
    listen: Option<String>,
    /// Who authenticates clients in nginx (http file only).
    #[arg(long, value_enum, default_value = "none")]
    auth: NginxAuth,
    /// The htpasswd file, for --auth basic.
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<String>,
    /// The auth service, for --auth request: http://host:port/path answering 2xx with the
    /// user in X-Auth-User (and X-Auth-User-Data), 401/403 to refuse. For --auth kerberos, the
    /// SPNEGO validator (default http://127.0.0.1:8089/).
    #[arg(long, value_name = "URL")]
    auth_url: Option<String>,
    /// The TLS certificate (chain) and key files (http file only; default: the paths the
    /// shipped file names, /etc/ssl/certs/corestream.pem and /etc/ssl/private/corestream.key).
    #[arg(long, num_args = 2, value_names = ["CERT", "KEY"], conflicts_with = "no_tls")]
    tls: Option<Vec<String>>,
    /// Plain HTTP: no TLS in this nginx (behind a TLS-terminating balancer, or on loopback).
    #[arg(long)]
    no_tls: bool,
    /// Connect to the nodes from this address (what the nodes' trustedProxies lists).
    #[arg(long, value_name = "ADDRESS")]
    proxy_bind: Option<String>,
    /// Send the PROXY protocol header to the nodes (--stream only).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    proxy_protocol: String,
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
        Command::Hash(arguments) => hash(arguments),
        Command::Nginx(arguments) => nginx(arguments),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "corestream", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

fn hash(options: HashArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("corestream hash: {message}");
        ExitCode::from(2)
    };
    let config = match Config::load(&options.config) {
        Ok((config, _)) => config,
        Err(error) => return fail(format!("{}: {error}", options.config.display())),
    };
    let AuthConfig::File(FileAuthConfig {
        hash: Some(algorithm),
        iterations,
        key_length,
        ..
    }) = config.auth
    else {
        return fail(format!(
            "{}: auth is not type file with a hash (options hash, iterations, keyLength): \
             its users file holds passwords in clear text",
            options.config.display()
        ));
    };
    let password = if options.password == "-" {
        let mut line = String::new();
        if let Err(error) = std::io::stdin().read_line(&mut line) {
            return fail(format!(
                "cannot read the password from standard input: {error}"
            ));
        }
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        options.password
    };
    if password.is_empty() {
        return fail("the password is empty".to_string());
    }
    let stored = hash_password(algorithm, &password, iterations, key_length);
    println!("{stored}");
    ExitCode::SUCCESS
}

/// Raises the soft limit on open files to the hard limit (every connection is a file
/// descriptor): (the soft limit before, the soft limit now).
fn raise_file_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`, a live local of the right type.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads `raised`, a live local of the right type.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok((before, limit.rlim_cur))
}

fn nginx(options: NginxArgs) -> ExitCode {
    let config = if options.stream {
        stream_config(&StreamSite {
            nodes: options.nodes,
            listen: options.listen.unwrap_or_else(|| "6021".into()),
            proxy_protocol: options.proxy_protocol == "on",
            proxy_bind: options.proxy_bind,
        })
    } else {
        let auth = match (options.auth, options.htpasswd, options.auth_url) {
            (NginxAuth::None, None, None) => Auth::None,
            (NginxAuth::Off, None, None) => Auth::Off,
            (NginxAuth::Basic, Some(htpasswd), None) => Auth::Basic { htpasswd },
            (NginxAuth::Request, None, Some(url)) => Auth::Request { url },
            (NginxAuth::Kerberos, None, url) => Auth::Kerberos {
                url: url.unwrap_or_else(|| SPNEGO_VALIDATOR_URL.into()),
            },
            _ => {
                eprintln!(
                    "corestream nginx: --htpasswd goes with --auth basic (and is needed there), \
                     --auth-url with --auth request (needed) or kerberos"
                );
                return ExitCode::from(2);
            }
        };
        let tls = match (options.tls, options.no_tls) {
            (_, true) => Tls::Off,
            (Some(files), false) if files.len() == 2 => Tls::Files {
                certificate: files[0].clone(),
                key: files[1].clone(),
            },
            _ => Tls::Shipped,
        };
        let default_listen = if tls == Tls::Off { "80" } else { "443" };
        http_config(&HttpSite {
            nodes: options.nodes,
            listen: options.listen.unwrap_or_else(|| default_listen.into()),
            auth,
            tls,
            proxy_bind: options.proxy_bind,
        })
    };
    match config {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("corestream nginx: {error}");
            ExitCode::from(2)
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
    match raise_file_limit() {
        Ok((before, after)) if before < after => corestream::info!(
            "open files: soft limit raised from {before} to the hard limit {after}: room for \
             about {after} connections"
        ),
        Ok((_, limit)) => {
            corestream::info!("open files: limit {limit}: room for about {limit} connections")
        }
        Err(error) => corestream::warn!("open files: cannot read or raise the limit: {error}"),
    }
    let tcp = config.tcp_enabled.then_some(config.tcp_address);
    let http = config
        .http_enabled
        .then(|| (config.http_address, config.url_path.clone()));
    let server_name = config.server_name.clone();
    let handle = match server::start(config) {
        Ok(handle) => handle,
        Err(error @ server::StartError::Permission(_)) => {
            eprintln!("corestream: {error}");
            return ExitCode::from(2);
        }
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
