//! Server configuration: deepstream 1.x and 2.x YAML (or JSON) config files read unchanged.
//!
//! Owns the `Config` every other module reads (immutable after start, shared by every core).
//! Keys deepstream has but corestream does not implement yet are accepted with one warning
//! each; a malformed file or a value of the wrong type is a `ConfigError` naming the key (the
//! binary exits with status 2). Relative paths resolve against the config file's folder.
//! Called by `main` (once, before any core starts).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;
use yaml_serde::Value;

/// A config problem, with the key it concerns.
#[derive(Debug)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(formatter, "{}", self.message)
        } else {
            write!(formatter, "config key '{}': {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

/// How log lines are written (`logFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `<UTC time> <LEVEL> core=<n> <text>`
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The password hash of a users file (Node's `crypto.pbkdf2` digest names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordHash {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAuthConfig {
    pub path: PathBuf,
    /// `None`: passwords are stored in clear text.
    pub hash: Option<PasswordHash>,
    pub iterations: u32,
    pub key_length: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// `auth: {type: none}`: anyone may log in; the username comes from authData.
    Open,
    /// `auth: {type: file}`: deepstream's users file.
    File(FileAuthConfig),
    /// `auth: {type: proxy-header}` (corestream): the username (and optional JSON client
    /// data) from request headers set by a trusted proxy (`trustedProxies`).
    ProxyHeader(ProxyHeaderAuthConfig),
    /// `auth: {type: http}`: deepstream's webhook (POST of the login to `endpointUrl`).
    Http(HttpAuthConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeaderAuthConfig {
    /// Lower-case header name of the username (default `x-forwarded-user`).
    pub header: String,
    /// Lower-case header name of the optional JSON client data (`x-forwarded-user-data`).
    pub data_header: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAuthConfig {
    /// `http://host:port/path` (plain HTTP; put TLS in a local proxy).
    pub endpoint_url: String,
    pub permitted_status_codes: Vec<u16>,
    pub request_timeout: Duration,
}

/// The cluster settings (deepstream's plugin and cluster keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub redis: RedisTarget,
    /// This node's id in the cluster: serverName plus a random suffix (unique per start).
    pub node: String,
    pub keep_alive_interval: Duration,
    pub active_check_interval: Duration,
    pub node_inactive_timeout: Duration,
}

/// Where Redis is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    pub db: i64,
}

impl RedisTarget {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Every resource one client can grow, with its limit (README "Security" lists each key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `maxParseErrors`: unparseable messages a connection may send before it is closed.
    pub max_parse_errors: u32,
    /// `maxSubscriptionsPerConnection`: event and record subscriptions of one session.
    pub max_subscriptions: usize,
    /// `maxListenPatternsPerConnection`: listen patterns of one session (events and records).
    pub max_listen_patterns: usize,
    /// `maxRpcNamesPerConnection`: RPC names one session provides or has requested.
    pub max_rpc_names: usize,
    /// `maxRpcCallsInFlightPerConnection`: one session's unanswered RPC requests per core that
    /// owns their names.
    pub max_rpc_calls_in_flight: usize,
    /// `maxRecordSize`: the most bytes a record's JSON may take (default: `maxMessageSize`).
    pub max_record_size: Option<usize>,
    /// `maxRecords`: records a single node holds in memory (the embedded store); spread evenly
    /// over the cores that own them.
    pub max_records: usize,
    /// `maxEngineioSessions`: engine.io sessions open on this node.
    pub max_engineio_sessions: usize,
    /// `maxEngineioSessionsPerAddress`: engine.io sessions opened from one client address.
    pub max_engineio_sessions_per_address: usize,
    /// `maxEngineioQueuedPackets`: packets one engine.io session may have waiting, each way.
    pub max_engineio_queued_packets: usize,
    /// `maxAuthAttemptsPerAddress`: failed logins one client address may make per
    /// `authAttemptsWindow` before its logins are refused until the window ends.
    pub max_auth_attempts_per_address: u32,
    pub auth_attempts_window: Duration,
    /// `httpHeaderTimeout`: time a client has to send a whole request head.
    pub http_header_timeout: Duration,
    /// `httpBodyTimeout`: time a client has to send a request body.
    pub http_body_timeout: Duration,
    /// `httpKeepAliveTimeout`: how long an idle keep-alive connection stays open.
    pub http_keep_alive_timeout: Duration,
    /// `tcpKeepAliveIdle`, `tcpKeepAliveInterval`, `tcpKeepAliveCount`: TCP keepalive probes on
    /// every accepted socket (a dead peer is noticed after idle + interval x count).
    pub tcp_keep_alive_idle: Duration,
    pub tcp_keep_alive_interval: Duration,
    pub tcp_keep_alive_count: u32,
    /// `tcpUserTimeout`: sent data may stay unacknowledged (or unsent behind a zero window) this
    /// long before the kernel drops the connection.
    pub tcp_user_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_parse_errors: 10,
            max_subscriptions: 100_000,
            max_listen_patterns: 100,
            max_rpc_names: 10_000,
            max_rpc_calls_in_flight: 1_000,
            max_record_size: None,
            max_records: 10_000_000,
            max_engineio_sessions: 100_000,
            max_engineio_sessions_per_address: 1_000,
            max_engineio_queued_packets: 1_000,
            max_auth_attempts_per_address: 100,
            auth_attempts_window: Duration::from_secs(60),
            http_header_timeout: Duration::from_secs(10),
            http_body_timeout: Duration::from_secs(30),
            http_keep_alive_timeout: Duration::from_secs(75),
            tcp_keep_alive_idle: Duration::from_secs(5),
            tcp_keep_alive_interval: Duration::from_secs(5),
            tcp_keep_alive_count: 3,
            tcp_user_timeout: Duration::from_secs(30),
        }
    }
}

/// Which browser origins may use the HTTP port (CORS answers, polling, WebSocket upgrades).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// deepstream's default: any origin (reflected, with credentials allowed).
    All,
    /// `allowAllOrigins: false` with `origins`: only these (scheme://host[:port]); others get 403.
    Only(Vec<String>),
}

impl Origins {
    /// May a request with this `Origin` header (if any) use the port? A request without one
    /// (not from a browser page) always may.
    pub fn allows(&self, origin: Option<&[u8]>) -> bool {
        match (self, origin) {
            (_, None) | (Origins::All, _) => true,
            (Origins::Only(list), Some(origin)) => {
                list.iter().any(|allowed| allowed.as_bytes() == origin)
            }
        }
    }
}

/// Which format a config file is written in: it decides the endpoints opened by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// No file, or one that names no endpoint: corestream's default (TCP and HTTP).
    Default,
    /// deepstream 1.x (`tcpPort`, `webServerEnabled`, ...): TCP and engine.io on the HTTP port.
    V1,
    /// deepstream 2.x (`connectionEndpoints`): the WebSocket endpoint only.
    V2,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The folder relative paths are resolved against.
    pub config_dir: PathBuf,
    pub server_name: String,
    pub log_level: LogLevel,
    /// `logFilter`: per-module `tracing` directives on top of `logLevel`.
    pub log_filter: Option<String>,
    /// `logFormat`: `text` (default) or `json`.
    pub log_format: LogFormat,
    pub tcp_enabled: bool,
    pub tcp_address: SocketAddr,
    pub http_enabled: bool,
    pub http_address: SocketAddr,
    pub url_path: String,
    pub auth: AuthConfig,
    pub rpc_ack_timeout: Duration,
    pub rpc_timeout: Duration,
    pub listen_response_timeout: Duration,
    pub unauthenticated_client_timeout: Option<Duration>,
    pub max_auth_attempts: u32,
    pub max_message_size: usize,
    pub log_invalid_auth_data: bool,
    /// corestream: a session whose unsent output exceeds this is a slow consumer and is closed.
    pub max_outbound_buffer_size: usize,
    /// corestream: io_uring registered-buffer memory per core (glommio `io_memory`).
    pub io_memory: usize,
    /// corestream: how long an idle core spins before it sleeps (0: sleep at once).
    pub spin_before_park: Duration,
    /// Number of cores; `None` means every online core.
    pub cores: Option<usize>,
    /// `GET` here answers 200 while the node serves, 503 while it cannot.
    pub health_check_path: String,
    /// 2.x WebSocket sessions: `C|PI` every interval; a socket silent for a whole interval is
    /// dropped at the next tick.
    pub heartbeat_interval: Duration,
    /// Conformance testing only: a plain WebSocket echo endpoint (off unless set).
    pub websocket_echo_path: Option<String>,
    /// Conformance testing only: an engine.io echo endpoint (off unless set).
    pub engineio_echo_path: Option<String>,
    pub engineio_ping_interval: Duration,
    pub engineio_ping_timeout: Duration,
    /// corestream: the TCP port expects a PROXY protocol (v1 or v2) header on every connection.
    pub tcp_proxy_protocol: bool,
    /// corestream: the proxies whose PROXY headers and auth headers are believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The cluster through Redis (`plugins.message` / `plugins.cache` with `name: redis`);
    /// `None`: the embedded single node.
    pub cluster: Option<ClusterConfig>,
    /// `permission: {type: config}`: the permissions file, parsed (compiled by the server);
    /// `None`: `type: none`, everything is allowed.
    pub permission: Option<PermissionFile>,
    pub limits: Limits,
    /// `allowAllOrigins` / `origins` (deepstream 4.x `httpServer` options; read in every format).
    pub origins: Origins,
    pub format: ConfigFormat,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            config_dir: PathBuf::from("."),
            server_name: String::from("corestream"),
            log_level: LogLevel::Info,
            log_filter: None,
            log_format: LogFormat::Text,
            tcp_enabled: true,
            tcp_address: SocketAddr::from(([0, 0, 0, 0], 6021)),
            http_enabled: true,
            http_address: SocketAddr::from(([0, 0, 0, 0], 6020)),
            url_path: String::from("/deepstream"),
            auth: AuthConfig::Open,
            rpc_ack_timeout: Duration::from_millis(1000),
            rpc_timeout: Duration::from_millis(10000),
            listen_response_timeout: Duration::from_millis(500),
            unauthenticated_client_timeout: Some(Duration::from_millis(180_000)),
            max_auth_attempts: 3,
            max_message_size: 1_048_576,
            log_invalid_auth_data: true,
            max_outbound_buffer_size: 8 * 1024 * 1024,
            io_memory: 512 * 1024,
            spin_before_park: Duration::ZERO,
            cores: None,
            health_check_path: String::from("/health-check"),
            heartbeat_interval: Duration::from_millis(30_000),
            websocket_echo_path: None,
            engineio_echo_path: None,
            engineio_ping_interval: Duration::from_millis(25_000),
            engineio_ping_timeout: Duration::from_millis(60_000),
            cluster: None,
            permission: None,
            tcp_proxy_protocol: false,
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            origins: Origins::All,
            format: ConfigFormat::Default,
        }
    }
}

impl Config {
    /// The most bytes a record's JSON may take.
    pub fn max_record_size(&self) -> usize {
        self.limits.max_record_size.unwrap_or(self.max_message_size)
    }
}

/// deepstream keys corestream reads but does not act on yet: accepted with a warning.
const NOT_YET_SUPPORTED: &[&str] = &[
    "storageExclusion",
    "cacheRetrievalTimeout",
    "storageRetrievalTimeout",
    "dependencyInitialisationTimeout",
    "lockTimeout",
    "lockRequestTimeout",
    "stateReconciliationTimeout",
    "timeBetweenSendingQueuedPackages",
    "maxMessagesPerPacket",
    "rpcProviderCacheTime",
    "rpcProviderQueryTimeout",
    "broadcastTimeout",
    "shuffleListenProviders",
    "storageHotPathPatterns",
    "sslKey",
    "sslCert",
    "sslCa",
    "libDir",
    "dataTransforms",
    "outgoingBufferTimeout",
    "noDelay",
];

/// Keys with no effect on a server that is not the Node one, accepted silently.
const IGNORED: &[&str] = &["showLogo", "logger"];

impl Config {
    /// Reads a config file. Returns the config and the warnings to log once logging is set up.
    pub fn load(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|io| error("", format!("cannot read {}: {io}", path.display())))?;
        let config_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, &config_dir)
    }

    /// Parses config text; `config_dir` anchors relative paths.
    pub fn parse(text: &str, config_dir: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let root: Value = if text.trim().is_empty() {
            Value::Mapping(Default::default())
        } else {
            yaml_serde::from_str(text)
                .map_err(|yaml| error("", format!("the config file is not valid YAML: {yaml}")))?
        };
        let root = match root {
            Value::Mapping(map) => map,
            Value::Null => Default::default(),
            _ => {
                return Err(error(
                    "",
                    "the config file must be a mapping of keys to values",
                ))
            }
        };
        let mut config = Config {
            config_dir: config_dir.to_path_buf(),
            ..Config::default()
        };
        let mut warnings = Vec::new();

        // 2.x keeps its endpoint options under connectionEndpoints.websocket.options; top-level
        // keys override them when set. Read the endpoint first, then the top level.
        let mut endpoint_origins: OriginKeys = (None, None);
        if let Some(endpoints) = get(&root, "connectionEndpoints") {
            read_endpoints(endpoints, &mut config, &mut endpoint_origins, &mut warnings)?;
        }

        config.format = detect_format(&root);
        let mut pending = PendingKeys::new(endpoint_origins);
        for (key, value) in root.iter() {
            let Some(key) = key.as_str() else {
                return Err(error("", format!("a key is not a string: {key:?}")));
            };
            if value.is_null() {
                continue;
            }
            if read_limit(key, value, &mut config.limits)? {
                continue;
            }
            read_key(key, value, &mut config, &mut pending, &mut warnings)?;
        }
        pending.apply(&mut config)?;
        check(&config)?;
        Ok((config, warnings))
    }
}

/// What a few keys say that is applied once every key is read (they depend on each other).
struct PendingKeys {
    /// A 2.x file has no TCP endpoint: the 1.x TCP port opens only when the file asks for it.
    tcp_asked: bool,
    allow_all_origins: Option<bool>,
    origins: Option<Vec<String>>,
    host: Option<String>,
    tcp_host: Option<String>,
    redis: Option<RedisTarget>,
    keep_alive_interval: Duration,
    active_check_interval: Duration,
    node_inactive_timeout: Duration,
}

impl PendingKeys {
    fn new((allow_all_origins, origins): OriginKeys) -> PendingKeys {
        PendingKeys {
            tcp_asked: false,
            allow_all_origins,
            origins,
            host: None,
            tcp_host: None,
            redis: None,
            // deepstream 1.x's defaults
            keep_alive_interval: Duration::from_millis(5000),
            active_check_interval: Duration::from_millis(1000),
            node_inactive_timeout: Duration::from_millis(6000),
        }
    }

    fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        if config.format == ConfigFormat::V2 && !self.tcp_asked {
            config.tcp_enabled = false;
        }
        config.origins =
            match (self.allow_all_origins, self.origins) {
                (Some(false), Some(list)) if !list.is_empty() => Origins::Only(list),
                (Some(false), _) => return Err(error(
                    "origins",
                    "allowAllOrigins is false: list the origins to allow (scheme://host[:port])",
                )),
                // A list without allowAllOrigins: false still means the list (deepstream 4.x only
                // reads the list when allowAllOrigins is false; a list alone is clearly meant).
                (None, Some(list)) if !list.is_empty() => Origins::Only(list),
                _ => Origins::All,
            };
        if let Some(host) = self.host {
            config.http_address = resolve("host", &host, config.http_address.port())?;
        }
        if let Some(tcp_host) = self.tcp_host {
            config.tcp_address = resolve("tcpHost", &tcp_host, config.tcp_address.port())?;
        }
        if let Some(redis) = self.redis {
            config.cluster = Some(ClusterConfig {
                redis,
                node: format!("{}-{:08x}", config.server_name, fastrand::u32(..)),
                keep_alive_interval: self.keep_alive_interval,
                active_check_interval: self.active_check_interval,
                node_inactive_timeout: self.node_inactive_timeout,
            });
        }
        Ok(())
    }
}

/// The combinations of keys that cannot work.
fn check(config: &Config) -> Result<(), ConfigError> {
    if matches!(config.auth, AuthConfig::ProxyHeader(_)) && config.trusted_proxies.is_empty() {
        return Err(error(
            "trustedProxies",
            "auth type 'proxy-header' needs the addresses of the proxies to trust",
        ));
    }
    if config.tcp_proxy_protocol && config.trusted_proxies.is_empty() {
        return Err(error(
            "trustedProxies",
            "tcpProxyProtocol needs the addresses of the proxies to trust",
        ));
    }
    if !config.http_enabled && !config.tcp_enabled {
        return Err(error(
            "tcpServerEnabled",
            "webServerEnabled and tcpServerEnabled are both false: nothing to serve",
        ));
    }
    Ok(())
}

/// One top-level key (the limits are read by `read_limit`).
fn read_key(
    key: &str,
    value: &Value,
    config: &mut Config,
    pending: &mut PendingKeys,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let config_dir = config.config_dir.clone();
    let config_dir = config_dir.as_path();
    match key {
        "allowAllOrigins" => pending.allow_all_origins = Some(boolean(key, value)?),
        "origins" => pending.origins = Some(read_strings(key, value)?),
        "httpServer" => read_http_server(
            value,
            &mut pending.allow_all_origins,
            &mut pending.origins,
            warnings,
        )?,
        "serverName" => {
            let name = string(key, value)?;
            config.server_name = if name == "UUID" {
                format!("corestream-{:016x}", fastrand::u64(..))
            } else {
                name
            };
        }
        "logLevel" => config.log_level = log_level(key, value)?,
        "logFilter" => config.log_filter = Some(string(key, value)?),
        "logFormat" => {
            config.log_format = match string(key, value)?.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => return Err(error(key, format!("expected text or json, got {other}"))),
            }
        }
        "port" => config.http_address.set_port(port(key, value)?),
        "host" => pending.host = Some(string(key, value)?),
        "tcpPort" => {
            config.tcp_address.set_port(port(key, value)?);
            pending.tcp_asked = true;
        }
        "tcpHost" => {
            pending.tcp_host = Some(string(key, value)?);
            pending.tcp_asked = true;
        }
        "urlPath" => config.url_path = string(key, value)?,
        "webServerEnabled" => config.http_enabled = boolean(key, value)?,
        "tcpServerEnabled" => {
            config.tcp_enabled = boolean(key, value)?;
            pending.tcp_asked = config.tcp_enabled;
        }
        "auth" => config.auth = read_auth(value, config_dir)?,
        "permission" => config.permission = read_permission(value, config_dir)?,
        "rpcAckTimeout" => config.rpc_ack_timeout = millis(key, value)?,
        "rpcTimeout" => config.rpc_timeout = millis(key, value)?,
        "listenResponseTimeout" => config.listen_response_timeout = millis(key, value)?,
        "unauthenticatedClientTimeout" => {
            config.unauthenticated_client_timeout = optional_millis(key, value)?
        }
        "maxAuthAttempts" => config.max_auth_attempts = positive(key, value)? as u32,
        "maxMessageSize" => config.max_message_size = positive(key, value)? as usize,
        "logInvalidAuthData" => config.log_invalid_auth_data = boolean(key, value)?,
        "maxOutboundBufferSize" => config.max_outbound_buffer_size = positive(key, value)? as usize,
        "ioMemory" => config.io_memory = positive(key, value)? as usize,
        "spinBeforePark" => config.spin_before_park = millis(key, value)?,
        "cores" => config.cores = Some(positive(key, value)? as usize),
        "healthCheckPath" => config.health_check_path = string(key, value)?,
        "heartbeatInterval" => config.heartbeat_interval = positive_millis(key, value)?,
        "websocketEchoPath" => config.websocket_echo_path = Some(string(key, value)?),
        "engineioEchoPath" => config.engineio_echo_path = Some(string(key, value)?),
        "engineioPingInterval" => config.engineio_ping_interval = positive_millis(key, value)?,
        "engineioPingTimeout" => config.engineio_ping_timeout = positive_millis(key, value)?,
        "connectionEndpoints" => {}
        "plugins" => pending.redis = read_plugins(value, warnings)?,
        "tcpProxyProtocol" => config.tcp_proxy_protocol = boolean(key, value)?,
        "trustedProxies" => config.trusted_proxies = read_addresses(key, value)?,
        "clusterKeepAliveInterval" => pending.keep_alive_interval = positive_millis(key, value)?,
        "clusterActiveCheckInterval" => {
            pending.active_check_interval = positive_millis(key, value)?
        }
        "clusterNodeInactiveTimeout" => {
            pending.node_inactive_timeout = positive_millis(key, value)?
        }
        known if IGNORED.contains(&known) => {}
        known if NOT_YET_SUPPORTED.contains(&known) => warnings.push(format!(
            "config key '{known}' is accepted but not supported yet: it has no effect"
        )),
        unknown => warnings.push(format!(
            "config key '{unknown}' is not a deepstream or corestream key: ignored"
        )),
    }
    Ok(())
}

/// `plugins`: the Redis of the `message` (and `cache`) plugin, as deepstream's
/// `deepstream.io-msg-redis` / `deepstream.io-cache-redis` take it (`name: redis` or a `path`
/// naming one of those packages; `options: {host, port, password, db}`). corestream uses one
/// Redis for both roles; other plugins are accepted with a warning.
fn read_plugins(
    value: &Value,
    warnings: &mut Vec<String>,
) -> Result<Option<RedisTarget>, ConfigError> {
    let Value::Mapping(plugins) = value else {
        return Err(error(
            "plugins",
            format!("must be a mapping, not {}", describe(value)),
        ));
    };
    let mut targets: Vec<(String, RedisTarget)> = Vec::new();
    for (kind, plugin) in plugins {
        let kind = kind.as_str().unwrap_or_default().to_string();
        let at = format!("plugins.{kind}");
        if plugin.is_null() {
            continue;
        }
        let Value::Mapping(plugin) = plugin else {
            return Err(error(
                &at,
                format!("must be a mapping, not {}", describe(plugin)),
            ));
        };
        let name = match (get(plugin, "name"), get(plugin, "path")) {
            (Some(name), _) => string(&format!("{at}.name"), name)?,
            (None, Some(path)) => string(&format!("{at}.path"), path)?,
            (None, None) => String::new(),
        };
        let is_redis = name == "redis" || name.contains("-redis");
        if !(is_redis && (kind == "message" || kind == "cache")) {
            warnings.push(format!(
                "config key '{at}' ({name}) is not supported: corestream clusters through Redis \
                 only (plugins.message / plugins.cache with name: redis); it has no effect"
            ));
            continue;
        }
        let mut target = RedisTarget {
            host: String::from("localhost"),
            port: 6379,
            password: None,
            db: 0,
        };
        if let Some(Value::Mapping(options)) = get(plugin, "options") {
            for (option, value) in options {
                let option = option.as_str().unwrap_or_default();
                let key = format!("{at}.options.{option}");
                if value.is_null() {
                    continue;
                }
                match option {
                    "host" => target.host = string(&key, value)?,
                    "port" => target.port = port(&key, value)?,
                    "password" => target.password = Some(string(&key, value)?),
                    "db" => target.db = integer(&key, value)?,
                    other => warnings.push(format!(
                        "config key '{at}.options.{other}' is not a Redis option corestream \
                         reads: ignored"
                    )),
                }
            }
        }
        targets.push((at, target));
    }
    if let [(first_at, first), rest @ ..] = &targets[..] {
        for (at, other) in rest {
            if other != first {
                warnings.push(format!(
                    "'{at}' names a different Redis than '{first_at}': corestream uses the \
                     first one ({}) for both",
                    first.address()
                ));
            }
        }
    }
    Ok(targets.into_iter().next().map(|(_, target)| target))
}

/// The format a file is written in, from the keys it uses.
fn detect_format(root: &yaml_serde::Mapping) -> ConfigFormat {
    if get(root, "connectionEndpoints").is_some() {
        ConfigFormat::V2
    } else if ["tcpPort", "tcpHost", "tcpServerEnabled", "webServerEnabled"]
        .iter()
        .any(|key| get(root, key).is_some())
    {
        ConfigFormat::V1
    } else {
        ConfigFormat::Default
    }
}

/// Reads one of the keys of `Limits`; `false` when `key` is not one of them.
fn read_limit(key: &str, value: &Value, limits: &mut Limits) -> Result<bool, ConfigError> {
    let count = || positive(key, value);
    match key {
        "maxParseErrors" => limits.max_parse_errors = count()? as u32,
        "maxSubscriptionsPerConnection" => limits.max_subscriptions = count()? as usize,
        "maxListenPatternsPerConnection" => limits.max_listen_patterns = count()? as usize,
        "maxRpcNamesPerConnection" => limits.max_rpc_names = count()? as usize,
        "maxRpcCallsInFlightPerConnection" => limits.max_rpc_calls_in_flight = count()? as usize,
        "maxRecordSize" => limits.max_record_size = Some(count()? as usize),
        "maxRecords" => limits.max_records = count()? as usize,
        "maxEngineioSessions" => limits.max_engineio_sessions = count()? as usize,
        "maxEngineioSessionsPerAddress" => {
            limits.max_engineio_sessions_per_address = count()? as usize
        }
        "maxEngineioQueuedPackets" => limits.max_engineio_queued_packets = count()? as usize,
        "maxAuthAttemptsPerAddress" => limits.max_auth_attempts_per_address = count()? as u32,
        "authAttemptsWindow" => limits.auth_attempts_window = positive_millis(key, value)?,
        "httpHeaderTimeout" => limits.http_header_timeout = positive_millis(key, value)?,
        "httpBodyTimeout" => limits.http_body_timeout = positive_millis(key, value)?,
        "httpKeepAliveTimeout" => limits.http_keep_alive_timeout = positive_millis(key, value)?,
        "tcpKeepAliveIdle" => limits.tcp_keep_alive_idle = positive_millis(key, value)?,
        "tcpKeepAliveInterval" => limits.tcp_keep_alive_interval = positive_millis(key, value)?,
        "tcpKeepAliveCount" => limits.tcp_keep_alive_count = count()? as u32,
        "tcpUserTimeout" => limits.tcp_user_timeout = positive_millis(key, value)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// `allowAllOrigins` or `origins`, wherever they appear (`full` names the place for errors).
fn read_origin_key(
    key: &str,
    full: &str,
    value: &Value,
    allow_all: &mut Option<bool>,
    list: &mut Option<Vec<String>>,
) -> Result<(), ConfigError> {
    if key == "allowAllOrigins" {
        *allow_all = Some(boolean(full, value)?);
    } else {
        *list = Some(read_strings(full, value)?);
    }
    Ok(())
}

/// deepstream 4.x's `httpServer: {type, options}`: the origin keys are read, the rest has no
/// effect on this server (one warning each).
fn read_http_server(
    value: &Value,
    allow_all: &mut Option<bool>,
    list: &mut Option<Vec<String>>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Some(options) = value
        .as_mapping()
        .and_then(|server| get(server, "options"))
        .and_then(Value::as_mapping)
    else {
        return Ok(());
    };
    for (key, value) in options {
        let key = key.as_str().unwrap_or_default();
        let full = format!("httpServer.options.{key}");
        match key {
            "allowAllOrigins" | "origins" => read_origin_key(key, &full, value, allow_all, list)?,
            _ => warnings.push(format!("config key '{full}' has no effect on corestream")),
        }
    }
    Ok(())
}

/// A list of strings (`origins`).
fn read_strings(key: &str, value: &Value) -> Result<Vec<String>, ConfigError> {
    let Value::Sequence(items) = value else {
        return Err(error(
            key,
            format!("expected a list of strings, not {}", describe(value)),
        ));
    };
    items.iter().map(|item| string(key, item)).collect()
}

/// A list of IP addresses (`trustedProxies`).
fn read_addresses(key: &str, value: &Value) -> Result<Vec<std::net::IpAddr>, ConfigError> {
    let Value::Sequence(items) = value else {
        return Err(error(
            key,
            format!("expected a list of IP addresses, not {}", describe(value)),
        ));
    };
    items
        .iter()
        .map(|item| {
            let text = string(key, item)?;
            text.parse()
                .map_err(|_| error(key, format!("'{text}' is not an IP address")))
        })
        .collect()
}

fn get<'a>(map: &'a yaml_serde::Mapping, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|value| !value.is_null())
}

/// `allowAllOrigins` and `origins` as read so far.
type OriginKeys = (Option<bool>, Option<Vec<String>>);

fn read_endpoints(
    endpoints: &Value,
    config: &mut Config,
    origins: &mut OriginKeys,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Value::Mapping(endpoints) = endpoints else {
        return Err(error("connectionEndpoints", "expected a mapping"));
    };
    for (name, endpoint) in endpoints {
        let name = name.as_str().unwrap_or_default();
        if name != "websocket" {
            warnings.push(format!(
                "config key 'connectionEndpoints.{name}' is not supported: ignored"
            ));
            continue;
        }
        let Some(Value::Mapping(options)) = endpoint
            .as_mapping()
            .and_then(|endpoint| get(endpoint, "options"))
        else {
            continue;
        };
        for (key, value) in options {
            let key = key.as_str().unwrap_or_default();
            let full = format!("connectionEndpoints.websocket.options.{key}");
            if value.is_null() {
                continue;
            }
            match key {
                "port" => config.http_address.set_port(port(&full, value)?),
                "host" => {
                    let host = string(&full, value)?;
                    config.http_address = resolve(&full, &host, config.http_address.port())?;
                }
                "urlPath" => config.url_path = string(&full, value)?,
                "unauthenticatedClientTimeout" => {
                    config.unauthenticated_client_timeout = optional_millis(&full, value)?
                }
                "maxAuthAttempts" => config.max_auth_attempts = positive(&full, value)? as u32,
                "maxMessageSize" => config.max_message_size = positive(&full, value)? as usize,
                "logInvalidAuthData" => config.log_invalid_auth_data = boolean(&full, value)?,
                "healthCheckPath" => config.health_check_path = string(&full, value)?,
                "heartbeatInterval" => config.heartbeat_interval = positive_millis(&full, value)?,
                "allowAllOrigins" | "origins" => {
                    read_origin_key(key, &full, value, &mut origins.0, &mut origins.1)?
                }
                other if NOT_YET_SUPPORTED.contains(&other) => warnings.push(format!(
                    "config key '{full}' is accepted but not supported yet: it has no effect"
                )),
                _ => warnings.push(format!("config key '{full}' is unknown: ignored")),
            }
        }
    }
    Ok(())
}

fn read_auth(value: &Value, config_dir: &Path) -> Result<AuthConfig, ConfigError> {
    let Value::Mapping(auth) = value else {
        return Err(error("auth", "expected a mapping with a 'type'"));
    };
    let kind = match get(auth, "type") {
        Some(kind) => string("auth.type", kind)?,
        None => return Err(error("auth.type", "missing")),
    };
    let empty = yaml_serde::Mapping::new();
    let options = match get(auth, "options") {
        Some(Value::Mapping(options)) => Some(options),
        Some(_) if kind != "none" => return Err(error("auth.options", "expected a mapping")),
        _ => None,
    };
    match kind.as_str() {
        "none" => Ok(AuthConfig::Open),
        "file" => read_file_auth(options.unwrap_or(&empty), config_dir),
        "proxy-header" => read_proxy_header_auth(options.unwrap_or(&empty)),
        "http" => match options {
            Some(options) => read_http_auth(options),
            None => Err(error("auth.options", "expected a mapping with endpointUrl")),
        },
        other => Err(error(
            "auth.type",
            format!("unknown auth type '{other}' (none, file, http or proxy-header)"),
        )),
    }
}

/// `auth: {type: file}`: the users file and how its passwords are hashed.
fn read_file_auth(
    options: &yaml_serde::Mapping,
    config_dir: &Path,
) -> Result<AuthConfig, ConfigError> {
    let path = match get(options, "path") {
        Some(path) => config_dir.join(string("auth.options.path", path)?),
        None => return Err(error("auth.options.path", "missing: the users file")),
    };
    let hash = match get(options, "hash") {
        None => None,
        Some(hash) => Some(match string("auth.options.hash", hash)?.as_str() {
            "md5" => PasswordHash::Md5,
            "sha1" => PasswordHash::Sha1,
            "sha256" => PasswordHash::Sha256,
            "sha512" => PasswordHash::Sha512,
            other => {
                return Err(error(
                    "auth.options.hash",
                    format!("unknown hash '{other}' (md5, sha1, sha256 or sha512)"),
                ))
            }
        }),
    };
    let iterations = match get(options, "iterations") {
        Some(value) => positive("auth.options.iterations", value)? as u32,
        None if hash.is_some() => {
            return Err(error(
                "auth.options.iterations",
                "missing (needed with hash)",
            ))
        }
        None => 0,
    };
    let key_length = match get(options, "keyLength") {
        Some(value) => positive("auth.options.keyLength", value)? as usize,
        None if hash.is_some() => {
            return Err(error(
                "auth.options.keyLength",
                "missing (needed with hash)",
            ))
        }
        None => 0,
    };
    Ok(AuthConfig::File(FileAuthConfig {
        path,
        hash,
        iterations,
        key_length,
    }))
}

/// `auth: {type: proxy-header}`: the headers a trusted proxy puts the user in.
fn read_proxy_header_auth(options: &yaml_serde::Mapping) -> Result<AuthConfig, ConfigError> {
    let header = |key: &str, default: &str| -> Result<String, ConfigError> {
        Ok(match get(options, key) {
            Some(value) => string(&format!("auth.options.{key}"), value)?,
            None => default.to_string(),
        }
        .to_ascii_lowercase())
    };
    Ok(AuthConfig::ProxyHeader(ProxyHeaderAuthConfig {
        header: header("header", "X-Forwarded-User")?,
        data_header: header("dataHeader", "X-Forwarded-User-Data")?,
    }))
}

/// `auth: {type: http}`: the webhook.
fn read_http_auth(options: &yaml_serde::Mapping) -> Result<AuthConfig, ConfigError> {
    let endpoint_url = match get(options, "endpointUrl") {
        Some(value) => string("auth.options.endpointUrl", value)?,
        None => return Err(error("auth.options.endpointUrl", "missing")),
    };
    if !endpoint_url.starts_with("http://") {
        return Err(error(
            "auth.options.endpointUrl",
            "only http:// URLs are supported (terminate TLS in a local proxy)",
        ));
    }
    let permitted_status_codes = match get(options, "permittedStatusCodes") {
        Some(Value::Sequence(codes)) => codes
            .iter()
            .map(|code| port("auth.options.permittedStatusCodes", code))
            .collect::<Result<Vec<u16>, ConfigError>>()?,
        Some(other) => {
            return Err(error(
                "auth.options.permittedStatusCodes",
                format!("expected a list of status codes, not {}", describe(other)),
            ))
        }
        None => vec![200],
    };
    let request_timeout = match get(options, "requestTimeout") {
        Some(value) => positive_millis("auth.options.requestTimeout", value)?,
        None => Duration::from_millis(2000),
    };
    Ok(AuthConfig::Http(HttpAuthConfig {
        endpoint_url,
        permitted_status_codes,
        request_timeout,
    }))
}

/// `permission: {type: config, options: {path, maxRuleIterations, cacheEvacuationInterval}}`.
#[derive(Debug, Clone)]
pub struct PermissionFile {
    pub path: PathBuf,
    /// The file as parsed; `permission::Permissions::compile` validates it.
    pub rules: Value,
    /// `maxRuleIterations` (deepstream: at least 1; cross-references only).
    pub max_rule_iterations: u64,
    /// `cacheEvacuationInterval`: how long a core keeps the results of rules that read only
    /// the name and the user (default 60 s).
    pub cache_evacuation_interval: Duration,
}

fn read_permission(
    value: &Value,
    config_dir: &Path,
) -> Result<Option<PermissionFile>, ConfigError> {
    let Value::Mapping(permission) = value else {
        return Err(error("permission", "expected a mapping with a 'type'"));
    };
    let kind = match get(permission, "type") {
        Some(kind) => string("permission.type", kind)?,
        None => return Err(error("permission.type", "missing")),
    };
    match kind.as_str() {
        "none" => Ok(None),
        "config" => {
            let options = permission.get("options").and_then(Value::as_mapping);
            let path = match options.and_then(|options| get(options, "path")) {
                Some(path) => config_dir.join(string("permission.options.path", path)?),
                None => return Err(error("permission.options.path", "missing")),
            };
            let max_rule_iterations = match options.and_then(|o| get(o, "maxRuleIterations")) {
                Some(value) => match value.as_u64() {
                    Some(count) if count >= 1 => count,
                    _ => {
                        return Err(error(
                            "permission.options.maxRuleIterations",
                            "Maximum rule iteration has to be at least one",
                        ))
                    }
                },
                None => 3,
            };
            let cache_evacuation_interval =
                match options.and_then(|o| get(o, "cacheEvacuationInterval")) {
                    Some(value) => {
                        positive_millis("permission.options.cacheEvacuationInterval", value)?
                    }
                    None => Duration::from_millis(60_000),
                };
            let text = std::fs::read_to_string(&path).map_err(|io| {
                error(
                    "permission.options.path",
                    format!("cannot read {}: {io}", path.display()),
                )
            })?;
            let rules: Value = yaml_serde::from_str(&text).map_err(|yaml| {
                error(
                    "permission.options.path",
                    format!("{} is not valid YAML: {yaml}", path.display()),
                )
            })?;
            Ok(Some(PermissionFile {
                path,
                rules,
                max_rule_iterations,
                cache_evacuation_interval,
            }))
        }
        other => Err(error(
            "permission.type",
            format!("unknown permission type '{other}' (config or none)"),
        )),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => format!("the string \"{text}\""),
        Value::Number(number) => format!("the number {number}"),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Null => "null".to_string(),
        Value::Tagged(_) => "a tagged value".to_string(),
    }
}

fn string(key: &str, value: &Value) -> Result<String, ConfigError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        other => Err(error(
            key,
            format!("expected a string, got {}", describe(other)),
        )),
    }
}

fn boolean(key: &str, value: &Value) -> Result<bool, ConfigError> {
    value.as_bool().ok_or_else(|| {
        error(
            key,
            format!("expected true or false, got {}", describe(value)),
        )
    })
}

fn integer(key: &str, value: &Value) -> Result<i64, ConfigError> {
    match value {
        Value::Number(number) => number
            .as_i64()
            .ok_or_else(|| error(key, format!("expected a whole number, got {number}"))),
        other => Err(error(
            key,
            format!("expected a number, got {}", describe(other)),
        )),
    }
}

fn positive(key: &str, value: &Value) -> Result<u64, ConfigError> {
    let number = integer(key, value)?;
    if number <= 0 {
        return Err(error(
            key,
            format!("expected a number above 0, got {number}"),
        ));
    }
    Ok(number as u64)
}

fn port(key: &str, value: &Value) -> Result<u16, ConfigError> {
    let number = integer(key, value)?;
    u16::try_from(number)
        .map_err(|_| error(key, format!("expected a port number 0-65535, got {number}")))
}

fn millis(key: &str, value: &Value) -> Result<Duration, ConfigError> {
    let number = integer(key, value)?;
    if number < 0 {
        return Err(error(
            key,
            format!("expected milliseconds >= 0, got {number}"),
        ));
    }
    Ok(Duration::from_millis(number as u64))
}

fn positive_millis(key: &str, value: &Value) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(positive(key, value)?))
}

/// A timeout where deepstream treats 0 or a negative value as "never".
fn optional_millis(key: &str, value: &Value) -> Result<Option<Duration>, ConfigError> {
    let number = integer(key, value)?;
    Ok((number > 0).then(|| Duration::from_millis(number as u64)))
}

fn log_level(key: &str, value: &Value) -> Result<LogLevel, ConfigError> {
    let text = match value {
        Value::Number(number) => match number.as_i64() {
            // deepstream's numeric levels: 0 DEBUG, 1 INFO, 2 WARN, 3 ERROR, 100 OFF.
            Some(0) => "DEBUG".to_string(),
            Some(1) => "INFO".to_string(),
            Some(2) => "WARN".to_string(),
            Some(3) => "ERROR".to_string(),
            Some(100) => "OFF".to_string(),
            _ => number.to_string(),
        },
        other => string(key, other)?,
    };
    match text.to_ascii_uppercase().as_str() {
        "DEBUG" => Ok(LogLevel::Debug),
        "INFO" => Ok(LogLevel::Info),
        "WARN" => Ok(LogLevel::Warn),
        "ERROR" => Ok(LogLevel::Error),
        "OFF" => Ok(LogLevel::Off),
        _ => Err(error(
            key,
            format!("expected DEBUG, INFO, WARN, ERROR or OFF, got {text}"),
        )),
    }
}

fn resolve(key: &str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    (host, port)
        .to_socket_addrs()
        .map_err(|io| error(key, format!("cannot resolve '{host}': {io}")))?
        .next()
        .ok_or_else(|| error(key, format!("'{host}' resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_deepstream_defaults() {
        let (config, warnings) = Config::parse("", Path::new("/etc/ds")).expect("parses");
        assert_eq!(config.http_address.port(), 6020);
        assert_eq!(config.tcp_address.port(), 6021);
        assert_eq!(config.url_path, "/deepstream");
        assert_eq!(config.max_auth_attempts, 3);
        assert!(warnings.is_empty());
    }

    #[test]
    fn reads_v1_keys_and_warns_once_per_unsupported_key() {
        let text = "serverName: UUID\nshowLogo: false\nlogLevel: WARN\nport: 7000\nhost: 127.0.0.1\n\
                    tcpPort: 7001\ntcpHost: 127.0.0.1\nrpcAckTimeout: 20\nlistenResponseTimeout: 30\n\
                    plugins: {}\ncacheRetrievalTimeout: 1000\nstorageExclusion: null\ntypoKey: 1\n";
        let (config, warnings) = Config::parse(text, Path::new(".")).expect("parses");
        assert_eq!(config.tcp_address, "127.0.0.1:7001".parse().expect("addr"));
        assert_eq!(config.http_address, "127.0.0.1:7000".parse().expect("addr"));
        assert_eq!(config.listen_response_timeout, Duration::from_millis(30));
        assert_eq!(config.log_level, LogLevel::Warn);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("'typoKey'")));
        assert_eq!(
            config.cluster, None,
            "an empty plugins map is the embedded single node"
        );
    }

    #[test]
    fn deepstreams_redis_plugins_configure_the_cluster() {
        let text = [
            "serverName: east",
            "plugins:",
            "  message:",
            "    name: redis",
            "    options:",
            "      host: 10.0.0.5",
            "      port: 6390",
            "      password: s3cret",
            "      db: 2",
            "  cache:",
            "    path: deepstream.io-cache-redis",
            "    options: {host: 10.0.0.5, port: 6390}",
            "  storage:",
            "    name: rethinkdb",
            "clusterNodeInactiveTimeout: 3000",
        ]
        .join("\n");
        let (config, warnings) = Config::parse(&text, Path::new(".")).expect("parses");
        let cluster = config.cluster.expect("a cluster");
        assert_eq!(
            cluster.redis,
            RedisTarget {
                host: "10.0.0.5".into(),
                port: 6390,
                password: Some("s3cret".into()),
                db: 2
            }
        );
        assert!(cluster.node.starts_with("east-"));
        assert_eq!(cluster.node_inactive_timeout, Duration::from_millis(3000));
        assert_eq!(cluster.keep_alive_interval, Duration::from_millis(5000));
        // the cache names the same host and port, the password aside: one warning for that,
        // one for the storage plugin
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("plugins.storage")));
    }

    #[test]
    fn proxy_auth_and_the_proxy_protocol_need_trusted_proxies() {
        let auth = "auth:\n  type: proxy-header\n  options: {header: X-Remote-User}\n";
        let error = Config::parse(auth, Path::new(".")).expect_err("refused");
        assert_eq!(error.key, "trustedProxies");
        let (config, _) = Config::parse(
            &format!("{auth}trustedProxies: [127.0.0.2, '::1']\ntcpProxyProtocol: true\n"),
            Path::new("."),
        )
        .expect("parses");
        assert_eq!(
            config.auth,
            AuthConfig::ProxyHeader(ProxyHeaderAuthConfig {
                header: "x-remote-user".into(),
                data_header: "x-forwarded-user-data".into()
            })
        );
        assert_eq!(config.trusted_proxies.len(), 2);
        assert!(config.tcp_proxy_protocol);
        let error =
            Config::parse("trustedProxies: [not-an-ip]\n", Path::new(".")).expect_err("bad");
        assert_eq!(error.key, "trustedProxies");
    }

    #[test]
    fn http_auth_reads_deepstreams_options() {
        let text =
            "auth:\n  type: http\n  options:\n    endpointUrl: http://127.0.0.1:9999/auth\n    \
                    permittedStatusCodes: [200, 201]\n    requestTimeout: 500\n";
        let (config, _) = Config::parse(text, Path::new(".")).expect("parses");
        assert_eq!(
            config.auth,
            AuthConfig::Http(HttpAuthConfig {
                endpoint_url: "http://127.0.0.1:9999/auth".into(),
                permitted_status_codes: vec![200, 201],
                request_timeout: Duration::from_millis(500)
            })
        );
    }

    #[test]
    fn reads_v2_endpoint_options_and_top_level_overrides() {
        let text = "connectionEndpoints:\n  websocket:\n    name: uws\n    options:\n      port: 7100\n      \
                    urlPath: /ds\n      maxAuthAttempts: 5\n      heartbeatInterval: 30000\nport: null\n";
        let (config, warnings) = Config::parse(text, Path::new(".")).expect("parses");
        assert_eq!(config.http_address.port(), 7100);
        assert_eq!(config.url_path, "/ds");
        assert_eq!(config.max_auth_attempts, 5);
        assert_eq!(config.heartbeat_interval, Duration::from_millis(30000));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = Config::parse("port: abc\n", Path::new(".")).expect_err("fails");
        assert_eq!(err.key, "port");
        let err = Config::parse("tcpPort: 70000\n", Path::new(".")).expect_err("fails");
        assert_eq!(err.key, "tcpPort");
        let err = Config::parse("auth: {type: file}\n", Path::new(".")).expect_err("fails");
        assert_eq!(err.key, "auth.options.path");
        let err = Config::parse("port: [1\n", Path::new(".")).expect_err("fails");
        assert!(err.to_string().contains("not valid YAML"));
        let err = Config::parse(
            "webServerEnabled: false\ntcpServerEnabled: false\n",
            Path::new("."),
        )
        .expect_err("fails");
        assert_eq!(err.key, "tcpServerEnabled");
    }

    #[test]
    fn file_auth_paths_resolve_against_the_config_folder() {
        let text = "auth:\n  type: file\n  options:\n    path: ./users.yml\n    hash: md5\n    iterations: 100\n    keyLength: 32\n";
        let (config, _) = Config::parse(text, Path::new("/srv/ds")).expect("parses");
        let AuthConfig::File(file) = config.auth else {
            panic!("file auth expected")
        };
        assert_eq!(file.path, Path::new("/srv/ds/./users.yml"));
        assert_eq!(file.hash, Some(PasswordHash::Md5));
    }
}
