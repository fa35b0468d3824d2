//! `corestream nginx`: the shipped nginx configs (`nginx/corestream-http.conf` for the `http`
//! context, `nginx/corestream-stream.conf` for the `stream` context, compiled into the binary)
//! filled in for a deployment. `scripts/nginx.sh` starts every test nginx from this output, so
//! what the command prints is what the tests run.
//!
//! The shipped files mark the lines a deployment changes with a trailing tag `#@name`:
//! - `#@nodes`: the first such `server` line is repeated once per node (its parameters kept),
//!   the others are dropped;
//! - `#@listen`: the first such `listen` line gets the listen address, the others are dropped;
//! - `#@auth-none`, `#@auth-basic`, `#@auth-request`, `#@proxy-bind`, `#@proxy-protocol`,
//!   `#@tls`: a tag that is enabled is uncommented, one that is disabled is commented out; the
//!   enabled lines get the deployment's values (`auth_basic_user_file`, the auth service's
//!   `proxy_pass`, `proxy_bind`, `ssl_certificate`, `ssl_certificate_key`). Without TLS the
//!   `listen` line also loses its `ssl` parameter.
//!
//! Every tag the choice names must occur in the file, or the command fails (a shipped file whose
//! tags were edited away). Values are checked before they reach the config: an address or a path
//! with white space, `;`, `{`, `}`, `#` or quotes would let one argument add directives.

const HTTP_CONF: &str = include_str!("../../nginx/corestream-http.conf");
const STREAM_CONF: &str = include_str!("../../nginx/corestream-stream.conf");

/// Who authenticates clients in nginx (the `location /deepstream` variants of the http file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No authentication in nginx; the user headers are cleared.
    None,
    /// Basic auth against an htpasswd file.
    Basic { htpasswd: String },
    /// `auth_request` to an auth service at this URL.
    Request { url: String },
    /// Kerberos (SPNEGO): `auth_request` to `nginx/corestream-spnego.py` at this URL.
    Kerberos { url: String },
    /// Every variant commented out (what a careless edit leaves); the headers are still cleared.
    Off,
}

/// The default address of `nginx/corestream-spnego.py` (its `--listen` default).
pub const SPNEGO_VALIDATOR_URL: &str = "http://127.0.0.1:8089/";

/// TLS of the http server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// On, with the certificate paths the shipped file names.
    Shipped,
    /// On, with these files.
    Files { certificate: String, key: String },
    /// Off: plain HTTP (behind a TLS-terminating balancer, or a test on loopback).
    Off,
}

/// What the http-context file needs.
#[derive(Debug, Clone)]
pub struct HttpSite {
    /// Every node's HTTP port, `host:port`.
    pub nodes: Vec<String>,
    /// nginx's `listen` address (`port` or `host:port`).
    pub listen: String,
    pub auth: Auth,
    pub tls: Tls,
    /// The address nginx connects to the nodes from.
    pub proxy_bind: Option<String>,
}

/// What the stream-context file needs.
#[derive(Debug, Clone)]
pub struct StreamSite {
    /// Every node's TCP port, `host:port`.
    pub nodes: Vec<String>,
    pub listen: String,
    /// Send the PROXY protocol header (the nodes need `tcpProxyProtocol: true`).
    pub proxy_protocol: bool,
    pub proxy_bind: Option<String>,
}

/// Why no config could be printed.
#[derive(Debug, PartialEq, Eq)]
pub struct NginxError(pub String);

impl std::fmt::Display for NginxError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The http-context config for `site`.
pub fn http_config(site: &HttpSite) -> Result<String, NginxError> {
    check_nodes(&site.nodes)?;
    check_value("the listen address", &site.listen)?;
    let (mut enable, mut disable, mut values) = auth_tags(&site.auth)?;
    match &site.tls {
        Tls::Shipped => enable.push("tls"),
        Tls::Files { certificate, key } => {
            check_value("the certificate path", certificate)?;
            check_value("the key path", key)?;
            enable.push("tls");
            values.push(("ssl_certificate", certificate));
            values.push(("ssl_certificate_key", key));
        }
        Tls::Off => disable.push("tls"),
    }
    if let Some(address) = &site.proxy_bind {
        check_value("the proxy_bind address", address)?;
        enable.push("proxy-bind");
        values.push(("proxy_bind", address));
    }
    let plain: &[&str] = &["ssl"];
    let choice = Choice {
        enable: &enable,
        disable: &disable,
        nodes: &site.nodes,
        listen: &site.listen,
        listen_drops: if site.tls == Tls::Off { plain } else { &[] },
        values: &values,
    };
    rewrite(HTTP_CONF, &choice)
}

type Tags<'a> = (
    Vec<&'static str>,
    Vec<&'static str>,
    Vec<(&'static str, &'a str)>,
);

/// The auth variant's tags: (enabled, disabled, values for the enabled lines).
fn auth_tags(auth: &Auth) -> Result<Tags<'_>, NginxError> {
    const ALL: [&str; 3] = ["auth-none", "auth-basic", "auth-request"];
    let only = |tag: &'static str| -> (Vec<&'static str>, Vec<&'static str>) {
        (
            vec![tag],
            ALL.into_iter().filter(|other| *other != tag).collect(),
        )
    };
    Ok(match auth {
        Auth::None => {
            let (enable, disable) = only("auth-none");
            (enable, disable, vec![])
        }
        Auth::Basic { htpasswd } => {
            check_value("the htpasswd path", htpasswd)?;
            let (enable, disable) = only("auth-basic");
            (
                enable,
                disable,
                vec![("auth_basic_user_file", htpasswd.as_str())],
            )
        }
        Auth::Request { url } | Auth::Kerberos { url } => {
            check_value("the auth service URL", url)?;
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(NginxError(format!(
                    "the auth service URL {url:?} is not http(s)://"
                )));
            }
            let (enable, disable) = only("auth-request");
            (enable, disable, vec![("proxy_pass", url.as_str())])
        }
        Auth::Off => (vec![], ALL.to_vec(), vec![]),
    })
}

/// The stream-context config for `site`.
pub fn stream_config(site: &StreamSite) -> Result<String, NginxError> {
    check_nodes(&site.nodes)?;
    check_value("the listen address", &site.listen)?;
    let (mut enable, disable) = match site.proxy_protocol {
        true => (vec!["proxy-protocol"], vec![]),
        false => (vec![], vec!["proxy-protocol"]),
    };
    let mut values = Vec::new();
    if let Some(address) = &site.proxy_bind {
        check_value("the proxy_bind address", address)?;
        enable.push("proxy-bind");
        values.push(("proxy_bind", address.as_str()));
    }
    let choice = Choice {
        enable: &enable,
        disable: &disable,
        nodes: &site.nodes,
        listen: &site.listen,
        listen_drops: &[],
        values: &values,
    };
    rewrite(STREAM_CONF, &choice)
}

fn check_nodes(nodes: &[String]) -> Result<(), NginxError> {
    if nodes.is_empty() {
        return Err(NginxError("no nodes: give at least one host:port".into()));
    }
    for node in nodes {
        check_value("a node", node)?;
        let port = node
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        if !matches!(port, Some((host, Ok(port))) if !host.is_empty() && port > 0) {
            return Err(NginxError(format!("the node {node:?} is not host:port")));
        }
    }
    Ok(())
}

/// A value for a directive: one nginx token, nothing that could end or add a directive.
fn check_value(what: &str, value: &str) -> Result<(), NginxError> {
    let forbidden = |c: char| c.is_whitespace() || ";{}#'\"\\$".contains(c);
    if value.is_empty() || value.chars().any(forbidden) {
        return Err(NginxError(format!(
            "{what} {value:?} must be one word without white space, quotes, ; {{ }} # $ or \\"
        )));
    }
    Ok(())
}

/// Which tags to switch on and off, and the values to put in.
struct Choice<'a> {
    enable: &'a [&'a str],
    disable: &'a [&'a str],
    nodes: &'a [String],
    listen: &'a str,
    /// Parameters removed from the `listen` line (`ssl` without TLS).
    listen_drops: &'a [&'a str],
    /// (directive, value): in an enabled line, the directive's argument becomes the value.
    values: &'a [(&'a str, &'a str)],
}

/// The tag at the end of a line (`#@name`), if any.
fn tag_of(line: &str) -> Option<&str> {
    let at = line.rfind("#@")?;
    let tag = line[at + 2..].trim_end();
    let valid = !tag.is_empty() && tag.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    valid.then_some(tag)
}

/// (indent, the directive without a leading `#`, the tag or the final `;`).
fn directive_of(line: &str) -> (&str, &str) {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let body = body.strip_prefix('#').unwrap_or(body);
    let body = body.strip_prefix(' ').unwrap_or(body);
    let body = body[..body.rfind("#@").unwrap_or(body.len())].trim_end();
    (indent, body.strip_suffix(';').unwrap_or(body))
}

/// `directive` with its first argument replaced by `argument`, the others kept.
fn with_argument(directive: &str, argument: &str) -> String {
    let mut words = directive.split_whitespace();
    let name = words.next().unwrap_or_default();
    let rest: Vec<&str> = words.skip(1).collect();
    let mut out = format!("{name} {argument}");
    for word in rest {
        out.push(' ');
        out.push_str(word);
    }
    out.push(';');
    out
}

fn uncomment(line: &str) -> String {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let body = body.strip_prefix('#').unwrap_or(body);
    format!("{indent}{}", body.strip_prefix(' ').unwrap_or(body))
}

fn comment_out(line: &str) -> String {
    let body = line.trim_start();
    if body.starts_with('#') {
        return line.to_string();
    }
    format!("{}# {body}", &line[..line.len() - body.len()])
}

/// `directive value;` in place of `directive <anything>;` in a line.
fn set_value(line: &str, directive: &str, value: &str) -> String {
    let Some(start) = line.find(&format!("{directive} ")) else {
        return line.to_string();
    };
    let Some(end) = line[start..].find(';').map(|end| start + end) else {
        return line.to_string();
    };
    format!("{}{directive} {value}{}", &line[..start], &line[end..])
}

fn rewrite(text: &str, choice: &Choice<'_>) -> Result<String, NginxError> {
    let mut out = String::with_capacity(text.len() + 256);
    let mut seen: Vec<&str> = Vec::new();
    for line in text.lines() {
        let tag = tag_of(line);
        if let Some(tag) = tag {
            if seen.contains(&tag) && (tag == "nodes" || tag == "listen") {
                continue;
            }
            seen.push(tag);
        }
        let written = match tag {
            Some("nodes") => {
                let (indent, directive) = directive_of(line);
                let lines = choice
                    .nodes
                    .iter()
                    .map(|node| format!("{indent}{}", with_argument(directive, node)));
                lines.collect::<Vec<_>>().join("\n")
            }
            Some("listen") => {
                let (indent, directive) = directive_of(line);
                let kept: Vec<&str> = directive
                    .split_whitespace()
                    .filter(|word| !choice.listen_drops.contains(word))
                    .collect();
                format!("{indent}{}", with_argument(&kept.join(" "), choice.listen))
            }
            Some(tag) if choice.enable.contains(&tag) => {
                let mut line = uncomment(line);
                for (directive, value) in choice.values {
                    line = set_value(&line, directive, value);
                }
                line
            }
            Some(tag) if choice.disable.contains(&tag) => comment_out(line),
            _ => line.to_string(),
        };
        out.push_str(&written);
        out.push('\n');
    }
    let needed = ["nodes", "listen"]
        .iter()
        .chain(choice.enable)
        .chain(choice.disable);
    for tag in needed {
        if !seen.contains(tag) {
            return Err(NginxError(format!(
                "the shipped config has no #@{tag} line"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(auth: Auth) -> HttpSite {
        HttpSite {
            nodes: vec!["127.0.0.1:7001".into(), "127.0.0.1:7002".into()],
            listen: "127.0.0.1:8080".into(),
            auth,
            tls: Tls::Off,
            proxy_bind: None,
        }
    }

    fn active(config: &str) -> Vec<&str> {
        config
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect()
    }

    #[test]
    fn nodes_and_listen_are_filled_in_with_their_parameters() {
        let config = http_config(&site(Auth::None)).expect("config");
        let lines = active(&config);
        assert!(lines.contains(&"server 127.0.0.1:7001 max_fails=1 fail_timeout=5s;"));
        assert!(lines.contains(&"server 127.0.0.1:7002 max_fails=1 fail_timeout=5s;"));
        assert!(lines.contains(&"listen 127.0.0.1:8080;"));
        assert!(
            !config.contains("10.0.0.11:6020") && !config.contains("10.0.0.12:6020"),
            "a shipped example node is left"
        );
        assert!(lines.contains(&"set $corestream_user \"\"; #@auth-none"));
        assert!(!lines.iter().any(|line| line.starts_with("auth_basic")));
        assert!(!lines.iter().any(|line| line.starts_with("auth_request")));
    }

    #[test]
    fn one_auth_variant_is_active_with_its_values() {
        let basic = Auth::Basic {
            htpasswd: "/etc/nginx/users".into(),
        };
        let config = http_config(&site(basic)).expect("config");
        let lines = active(&config);
        assert!(lines
            .iter()
            .any(|l| l.starts_with("auth_basic_user_file /etc/nginx/users;")));
        assert!(!lines
            .iter()
            .any(|l| l.starts_with("set $corestream_user \"\"")));
        let request = Auth::Request {
            url: "http://127.0.0.1:9001/check".into(),
        };
        let config = http_config(&site(request)).expect("config");
        let lines = active(&config);
        assert!(lines.iter().any(|l| l.starts_with("auth_request ")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("proxy_pass http://127.0.0.1:9001/check;")));
        let off = active(&http_config(&site(Auth::Off)).expect("config")).join("\n");
        assert!(!off.contains("auth_basic") && !off.contains("auth_request"));
        assert!(!off.contains("set $corestream_user \"\""));
    }

    #[test]
    fn tls_is_on_unless_switched_off() {
        let mut tls = site(Auth::None);
        tls.tls = Tls::Files {
            certificate: "/etc/corestream/cert.pem".into(),
            key: "/etc/corestream/key.pem".into(),
        };
        let config = http_config(&tls).expect("config");
        let lines = active(&config);
        assert!(lines.contains(&"listen 127.0.0.1:8080 ssl;"));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("ssl_certificate /etc/corestream/cert.pem;")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("ssl_certificate_key /etc/corestream/key.pem;")));
        tls.tls = Tls::Shipped;
        let shipped = active(&http_config(&tls).expect("config")).join("\n");
        assert!(shipped.contains("ssl_certificate     /etc/ssl/certs/corestream.pem;"));
        let plain = active(&http_config(&site(Auth::None)).expect("config")).join("\n");
        assert!(plain.contains("listen 127.0.0.1:8080;") && !plain.contains("ssl"));
    }

    #[test]
    fn kerberos_asks_the_spnego_validator() {
        let kerberos = Auth::Kerberos {
            url: SPNEGO_VALIDATOR_URL.into(),
        };
        let config = http_config(&site(kerberos)).expect("config");
        let lines = active(&config);
        assert!(lines.iter().any(|l| l.starts_with("auth_request ")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("proxy_pass http://127.0.0.1:8089/;")));
        assert!(!lines.iter().any(|l| l.starts_with("auth_basic")));
    }

    #[test]
    fn the_stream_block_switches_the_proxy_protocol_and_binds() {
        let mut stream = StreamSite {
            nodes: vec!["10.1.0.5:6021".into()],
            listen: "6021".into(),
            proxy_protocol: true,
            proxy_bind: Some("10.1.0.2".into()),
        };
        let config = stream_config(&stream).expect("config");
        let lines = active(&config);
        assert!(lines.iter().any(|l| l.starts_with("proxy_protocol on;")));
        assert!(lines.iter().any(|l| l.starts_with("proxy_bind 10.1.0.2;")));
        assert!(lines.contains(&"listen 6021 so_keepalive=60s:10s:3;"));
        stream.proxy_protocol = false;
        stream.proxy_bind = None;
        let lines = active(&stream_config(&stream).expect("config")).join("\n");
        assert!(!lines.contains("proxy_protocol on") && !lines.contains("proxy_bind"));
    }

    #[test]
    fn values_that_would_add_directives_are_refused() {
        for node in [
            "a:1; include /etc/passwd",
            "a:1{",
            "a",
            "a:0",
            ":80",
            "a:99999",
        ] {
            let mut bad = site(Auth::None);
            bad.nodes = vec![node.into()];
            assert!(http_config(&bad).is_err(), "{node:?}");
        }
        let path = Auth::Basic {
            htpasswd: "/x; auth_basic off".into(),
        };
        assert!(http_config(&site(path)).is_err());
        let url = Auth::Request {
            url: "file:///etc/passwd".into(),
        };
        assert!(http_config(&site(url)).is_err());
        let mut empty = site(Auth::None);
        empty.nodes.clear();
        assert!(http_config(&empty).is_err());
    }

    #[test]
    fn a_tag_missing_from_the_file_is_an_error() {
        let choice = Choice {
            enable: &["auth-kerberos"],
            disable: &[],
            nodes: &["a:1".to_string()],
            listen: "80",
            listen_drops: &[],
            values: &[],
        };
        let error = rewrite(HTTP_CONF, &choice).expect_err("no such tag");
        assert!(error.0.contains("#@auth-kerberos"), "{error}");
    }
}
