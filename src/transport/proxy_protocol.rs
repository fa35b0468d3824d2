//! The PROXY protocol (HAProxy's, versions 1 and 2) in front of the 1.x TCP protocol: the
//! header a proxy (nginx `proxy_protocol on`) sends first on every connection, naming the real
//! client. Pure codec: `server::serve_tcp` reads until `parse` answers, then uses the source
//! address for logs and auth and hands the bytes after the header to the TCP framer.
//!
//! `parse` is split like every framer here: it answers `Ok(None)` while the bytes so far are a
//! prefix of a possible header, so a caller can read more, and an error as soon as they cannot
//! be one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// A v1 line is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// Largest v2 header accepted (addresses plus TLVs): nginx sends 28 or 52 bytes.
pub const V2_MAX: usize = 16 + 1024;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied connection from `source`.
    Proxied { source: SocketAddr },
    /// The proxy's own connection (v2 LOCAL, v1 UNKNOWN): keep the socket's address.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The bytes cannot start a PROXY header.
    NotProxy,
    Malformed(&'static str),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::NotProxy => formatter.write_str("no PROXY protocol header"),
            ProxyError::Malformed(what) => write!(formatter, "malformed PROXY header: {what}"),
        }
    }
}

/// The header at the start of `bytes` and its length, `None` while more bytes are needed.
pub fn parse(bytes: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let prefix = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..prefix] == V2_SIGNATURE[..prefix] {
        return if bytes.len() < 16 {
            Ok(None)
        } else {
            parse_v2(bytes)
        };
    }
    let prefix = bytes.len().min(V1_PREFIX.len());
    if bytes[..prefix] == V1_PREFIX[..prefix] {
        return parse_v1(bytes);
    }
    Err(ProxyError::NotProxy)
}

fn parse_v1(bytes: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(newline) = memchr::memchr(b'\n', window) else {
        return if bytes.len() >= V1_MAX {
            Err(ProxyError::Malformed("v1 line longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    let line = window[..newline]
        .strip_suffix(b"\r")
        .ok_or(ProxyError::Malformed("v1 line does not end with CRLF"))?;
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed("v1 not ASCII"))?;
    let mut parts = line.split(' ');
    parts.next(); // PROXY
    let header = match parts.next() {
        Some("UNKNOWN") => ProxyHeader::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let source: IpAddr = parts
                .next()
                .and_then(|text| text.parse().ok())
                .ok_or(ProxyError::Malformed("v1 source address"))?;
            let destination: IpAddr = parts
                .next()
                .and_then(|text| text.parse().ok())
                .ok_or(ProxyError::Malformed("v1 destination address"))?;
            let source_port: u16 = parts
                .next()
                .and_then(|text| text.parse().ok())
                .ok_or(ProxyError::Malformed("v1 source port"))?;
            let _destination_port: u16 = parts
                .next()
                .and_then(|text| text.parse().ok())
                .ok_or(ProxyError::Malformed("v1 destination port"))?;
            if parts.next().is_some() {
                return Err(ProxyError::Malformed("v1 has extra fields"));
            }
            let matches = match family {
                "TCP4" => source.is_ipv4() && destination.is_ipv4(),
                _ => source.is_ipv6() && destination.is_ipv6(),
            };
            if !matches {
                return Err(ProxyError::Malformed("v1 address family mismatch"));
            }
            ProxyHeader::Proxied {
                source: SocketAddr::new(source, source_port),
            }
        }
        _ => return Err(ProxyError::Malformed("v1 protocol family")),
    };
    Ok(Some((header, newline + 1)))
}

fn parse_v2(bytes: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let version_command = bytes[12];
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version"));
    }
    let family = bytes[13];
    let length = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let total = 16 + length;
    if total > V2_MAX {
        return Err(ProxyError::Malformed("v2 header too long"));
    }
    if bytes.len() < total {
        return Ok(None);
    }
    let body = &bytes[16..total];
    let header = match version_command & 0x0f {
        0x0 => ProxyHeader::Local,
        0x1 => match family {
            // TCP or UDP over IPv4
            0x11 | 0x12 => {
                if body.len() < 12 {
                    return Err(ProxyError::Malformed("v2 IPv4 block too short"));
                }
                let address = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                let port = u16::from_be_bytes([body[8], body[9]]);
                ProxyHeader::Proxied {
                    source: SocketAddr::new(IpAddr::V4(address), port),
                }
            }
            0x21 | 0x22 => {
                if body.len() < 36 {
                    return Err(ProxyError::Malformed("v2 IPv6 block too short"));
                }
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[..16]);
                let port = u16::from_be_bytes([body[32], body[33]]);
                ProxyHeader::Proxied {
                    source: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port),
                }
            }
            // UNSPEC or unix sockets: no usable address
            _ => ProxyHeader::Local,
        },
        _ => return Err(ProxyError::Malformed("v2 command")),
    };
    Ok(Some((header, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(text: &str) -> ProxyHeader {
        ProxyHeader::Proxied {
            source: text.parse().expect("address"),
        }
    }

    #[test]
    fn v1_headers_and_their_prefixes() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 6021\r\nC\x1fCHR";
        assert_eq!(parse(line), Ok(Some((proxied("192.0.2.7:51000"), 42))));
        for cut in 0..42 {
            assert_eq!(parse(&line[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 6021\r\n"),
            Ok(Some((proxied("[2001:db8::1]:4000"), 46)))
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Some((ProxyHeader::Local, 15)))
        );
        assert!(matches!(
            parse(b"PROXY TCP4 192.0.2.7 2001:db8::2 1 2\r\n"),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 999.0.2.7 10.0.0.1 1 2\r\n"),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(parse(&[b'P'; 200]), Err(ProxyError::NotProxy)));
        let mut long = b"PROXY ".to_vec();
        long.extend_from_slice(&[b'1'; 120]);
        assert!(matches!(parse(&long), Err(ProxyError::Malformed(_))));
        assert_eq!(parse(b"C\x1fCHR\x1f"), Err(ProxyError::NotProxy));
    }

    #[test]
    fn v2_headers_and_their_prefixes() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12]);
        header.extend_from_slice(&[203, 0, 113, 9, 10, 0, 0, 1]);
        header.extend_from_slice(&51000u16.to_be_bytes());
        header.extend_from_slice(&6021u16.to_be_bytes());
        let mut with_data = header.clone();
        with_data.extend_from_slice(b"C\x1fCHR");
        assert_eq!(
            parse(&with_data),
            Ok(Some((proxied("203.0.113.9:51000"), 28)))
        );
        for cut in 0..28 {
            assert_eq!(parse(&header[..cut]), Ok(None), "cut at {cut}");
        }
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local), Ok(Some((ProxyHeader::Local, 16))));
        let mut bad_version = V2_SIGNATURE.to_vec();
        bad_version.extend_from_slice(&[0x11, 0x11, 0, 0]);
        assert!(matches!(parse(&bad_version), Err(ProxyError::Malformed(_))));
        let mut too_long = V2_SIGNATURE.to_vec();
        too_long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(parse(&too_long), Err(ProxyError::Malformed(_))));
    }
}
