//! engine.io protocol 3 (what deepstream 1.x browser clients use): packets and polling
//! payloads, written here. Pure; the HTTP port drives it.
//!
//! Packets are a type digit and data: `0` open, `1` close, `2` ping, `3` pong, `4` message,
//! `5` upgrade, `6` noop. Polling bodies carry several packets:
//! - text (`b64=1`, or any XHR that sends text): `<length>:<packet>...`, in one of two
//!   conventions that agree on ASCII and differ for anything else (`TextConvention`):
//!   engine.io-parser 1.x (deepstream 1.1.1's server and its client's engine.io-client 1.8.6)
//!   counts the packet's UTF-8 *bytes* and sends each byte as a character (U+0000..U+00FF, so
//!   non-ASCII is UTF-8 encoded twice on the wire); engine.io-parser 2.x (engine.io 3.x, the
//!   official protocol v3 test suite, engine.io-client@3) sends the text as it is and counts
//!   UTF-16 code units. The decoder accepts both.
//! - binary (XHR2 without `b64`): per packet `0x00`, the length's decimal digits as byte values,
//!   `0xFF`, then the packet's UTF-8 bytes.

/// One engine.io packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Open(Vec<u8>),
    Close,
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A text message.
    Message(Vec<u8>),
    /// A binary message: `b4<base64>` in text payloads, a true binary packet in binary ones.
    Binary(Vec<u8>),
    Upgrade,
    Noop,
}

impl Packet {
    /// Decodes one packet (type digit + data). `b` + base64 binary messages are decoded to
    /// their bytes. `None` for an unknown type.
    pub fn decode(bytes: &[u8]) -> Option<Packet> {
        let (kind, data) = bytes.split_first()?;
        let data = data.to_vec();
        Some(match kind {
            b'0' => Packet::Open(data),
            b'1' => Packet::Close,
            b'2' => Packet::Ping(data),
            b'3' => Packet::Pong(data),
            b'4' => Packet::Message(data),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            b'b' => {
                use base64::Engine;
                let (&kind, encoded) = data.split_first()?;
                if kind != b'4' {
                    return None;
                }
                Packet::Binary(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .ok()?,
                )
            }
            _ => return None,
        })
    }

    /// Appends the packet's bytes (type digit + data; a binary message as `b4<base64>`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Packet::Binary(data) = self {
            use base64::Engine;
            out.extend_from_slice(b"b4");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(data)
                    .as_bytes(),
            );
            return;
        }
        let (kind, data): (u8, &[u8]) = match self {
            Packet::Open(data) => (b'0', data),
            Packet::Close => (b'1', &[]),
            Packet::Ping(data) => (b'2', data),
            Packet::Pong(data) => (b'3', data),
            Packet::Message(data) => (b'4', data),
            Packet::Binary(_) => return,
            Packet::Upgrade => (b'5', &[]),
            Packet::Noop => (b'6', &[]),
        };
        out.push(kind);
        out.extend_from_slice(data);
    }
}

/// How a text payload counts and carries non-ASCII characters (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextConvention {
    /// engine.io-parser 1.x: UTF-8 bytes as characters, lengths in bytes.
    Utf8Bytes,
    /// engine.io-parser 2.x: plain text, lengths in UTF-16 code units.
    Utf16Units,
}

/// A polling body could not be decoded (engine.io answers it with a parse error and closes).
#[derive(Debug, PartialEq, Eq)]
pub struct PayloadError;

/// Encodes packets as a text payload (`b64=1`).
pub fn encode_text_payload(packets: &[Packet], convention: TextConvention) -> Vec<u8> {
    let mut out = Vec::new();
    let mut packet = Vec::new();
    for each in packets {
        packet.clear();
        each.encode(&mut packet);
        if convention == TextConvention::Utf16Units {
            let text = String::from_utf8_lossy(&packet);
            let units: usize = text.chars().map(char::len_utf16).sum();
            out.extend_from_slice(units.to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(text.as_bytes());
            continue;
        }
        out.extend_from_slice(packet.len().to_string().as_bytes());
        out.push(b':');
        for byte in &packet {
            if *byte < 0x80 {
                out.push(*byte);
            } else {
                // The byte as the character U+0080..U+00FF, in UTF-8.
                out.push(0xC0 | (byte >> 6));
                out.push(0x80 | (byte & 0x3F));
            }
        }
    }
    if packets.is_empty() {
        out.extend_from_slice(b"0:");
    }
    out
}

/// Decodes a text payload into packets.
pub fn decode_text_payload(body: &[u8]) -> Result<Vec<Packet>, PayloadError> {
    let text = std::str::from_utf8(body).map_err(|_| PayloadError)?;
    let mut packets = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (length, after) = rest.split_once(':').ok_or(PayloadError)?;
        let length: usize = length.parse().map_err(|_| PayloadError)?;
        // `length` UTF-16 units (a byte-character counts one, as does any BMP character).
        let mut end = after.len();
        let mut units = 0;
        for (index, character) in after.char_indices() {
            if units == length {
                end = index;
                break;
            }
            units += character.len_utf16();
        }
        if units < length || (end == after.len() && units != length) {
            return Err(PayloadError);
        }
        let packet_text = &after[..end];
        // Byte-characters that form valid UTF-8 are the 1.x double encoding; anything else is
        // plain text (2.x). (Text that is literally such a sequence, like "Ã©", is ambiguous;
        // the 1.x reading wins, as it is what deepstream's own clients send.)
        let as_bytes: Option<Vec<u8>> = packet_text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect();
        let bytes: Vec<u8> = match as_bytes {
            Some(bytes) if std::str::from_utf8(&bytes).is_ok() => bytes,
            _ => packet_text.as_bytes().to_vec(),
        };
        if !bytes.is_empty() {
            packets.push(Packet::decode(&bytes).ok_or(PayloadError)?);
        }
        rest = &after[end..];
    }
    Ok(packets)
}

/// Encodes packets as a binary payload (XHR2).
pub fn encode_binary_payload(packets: &[Packet]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut packet = Vec::new();
    for each in packets {
        packet.clear();
        if let Packet::Binary(data) = each {
            // A true binary packet: the raw type byte 4, then the data.
            packet.push(4);
            packet.extend_from_slice(data);
            out.push(0x01);
            out.extend(packet.len().to_string().bytes().map(|digit| digit - b'0'));
            out.push(0xFF);
            out.extend_from_slice(&packet);
            continue;
        }
        each.encode(&mut packet);
        out.push(0x00);
        out.extend(packet.len().to_string().bytes().map(|digit| digit - b'0'));
        out.push(0xFF);
        out.extend_from_slice(&packet);
    }
    out
}

/// Decodes a binary payload into packets.
pub fn decode_binary_payload(body: &[u8]) -> Result<Vec<Packet>, PayloadError> {
    let mut packets = Vec::new();
    let mut rest = body;
    while let Some((&kind, after)) = rest.split_first() {
        if kind > 1 {
            return Err(PayloadError);
        }
        let digits_end = after
            .iter()
            .position(|byte| *byte == 0xFF)
            .ok_or(PayloadError)?;
        if digits_end == 0 || digits_end > 10 {
            return Err(PayloadError);
        }
        let mut length = 0usize;
        for digit in &after[..digits_end] {
            if *digit > 9 {
                return Err(PayloadError);
            }
            length = length * 10 + usize::from(*digit);
        }
        let packet_start = digits_end + 1;
        let packet = after
            .get(packet_start..packet_start + length)
            .ok_or(PayloadError)?;
        if kind == 1 {
            // A true binary packet: the raw type byte (4: message), then the data.
            match packet.split_first() {
                Some((4, data)) => packets.push(Packet::Binary(data.to_vec())),
                _ => return Err(PayloadError),
            }
        } else {
            packets.push(Packet::decode(packet).ok_or(PayloadError)?);
        }
        rest = &after[packet_start + length..];
    }
    Ok(packets)
}

/// The open packet's JSON.
pub fn handshake(
    sid: &str,
    upgrades: bool,
    ping_interval_ms: u128,
    ping_timeout_ms: u128,
) -> Vec<u8> {
    let upgrades = if upgrades { "[\"websocket\"]" } else { "[]" };
    format!(
        "{{\"sid\":\"{sid}\",\"upgrades\":{upgrades},\"pingInterval\":{ping_interval_ms},\"pingTimeout\":{ping_timeout_ms}}}"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_captured_handshake_and_messages() {
        let open = Packet::Open(handshake("CNSi-8OKbpcCJ9PUAAAC", true, 25000, 60000));
        let body = encode_text_payload(&[open], TextConvention::Utf8Bytes);
        assert_eq!(
            String::from_utf8(body).expect("text"),
            r#"97:0{"sid":"CNSi-8OKbpcCJ9PUAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":60000}"#
        );
        let body = encode_text_payload(
            &[Packet::Message(b"C\x1fCH\x1e".to_vec())],
            TextConvention::Utf8Bytes,
        );
        assert_eq!(body, b"6:4C\x1fCH\x1e");
        assert_eq!(
            decode_text_payload(b"23:4C\x1fCHR\x1flocalhost:16020\x1e").expect("decodes"),
            vec![Packet::Message(b"C\x1fCHR\x1flocalhost:16020\x1e".to_vec())]
        );
        // The binary form of the 97-byte open packet starts 00 09 07 FF 30.
        let binary = encode_binary_payload(&[Packet::Open(handshake(
            "CNSi-8OKbpcCJ9PUAAAC",
            true,
            25000,
            60000,
        ))]);
        assert_eq!(&binary[..5], &[0x00, 9, 7, 0xFF, b'0']);
    }

    #[test]
    fn both_text_conventions_for_non_ascii() {
        let message = Packet::Message("é".as_bytes().to_vec());
        // 1.x: "4é" is 3 UTF-8 bytes, sent as the characters '4', U+00C3, U+00A9.
        let body = encode_text_payload(std::slice::from_ref(&message), TextConvention::Utf8Bytes);
        assert_eq!(body, b"3:4\xC3\x83\xC2\xA9");
        assert_eq!(
            decode_text_payload(&body).expect("decodes"),
            vec![message.clone()]
        );
        // 2.x: plain text, two UTF-16 units.
        let body = encode_text_payload(std::slice::from_ref(&message), TextConvention::Utf16Units);
        assert_eq!(body, "2:4é".as_bytes());
        assert_eq!(decode_text_payload(&body).expect("decodes"), vec![message]);
        // An astral character counts two UTF-16 units.
        let emoji = Packet::Message("😀".as_bytes().to_vec());
        let body = encode_text_payload(std::slice::from_ref(&emoji), TextConvention::Utf16Units);
        assert_eq!(body, "3:4😀".as_bytes());
        assert_eq!(decode_text_payload(&body).expect("decodes"), vec![emoji]);
    }

    /// Found by the `engineio_payload` fuzz target: a base64 packet with a type other than a
    /// message, and binary data that is not UTF-8, which a text payload must carry as base64.
    #[test]
    fn regression_fuzz_base64_packets() {
        assert_eq!(decode_text_payload(b"06:bA0251"), Err(PayloadError));
        let binary = Packet::Binary(vec![0xD3, 0x6E, 0x75]);
        let body = encode_text_payload(std::slice::from_ref(&binary), TextConvention::Utf8Bytes);
        assert_eq!(body, b"6:b40251");
        assert_eq!(decode_text_payload(&body).expect("decodes"), vec![binary]);
    }

    #[test]
    fn several_packets_both_encodings_and_errors() {
        let packets = vec![
            Packet::Ping(b"probe".to_vec()),
            Packet::Message(b"hi".to_vec()),
            Packet::Binary(vec![0xD3, 0x00, 0xFF]),
            Packet::Noop,
        ];
        // The binary payload the official suite expects for "4hello" and binary [1, 2, 3, 4].
        assert_eq!(
            encode_binary_payload(&[
                Packet::Message(b"hello".to_vec()),
                Packet::Binary(vec![1, 2, 3, 4])
            ]),
            vec![0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4]
        );
        for convention in [TextConvention::Utf8Bytes, TextConvention::Utf16Units] {
            let body = encode_text_payload(&packets, convention);
            assert_eq!(decode_text_payload(&body).expect("text"), packets);
        }
        assert_eq!(
            decode_binary_payload(&encode_binary_payload(&packets)).expect("binary"),
            packets
        );
        assert_eq!(decode_text_payload(b"5:4ab"), Err(PayloadError));
        assert_eq!(decode_text_payload(b"x:4"), Err(PayloadError));
        assert_eq!(decode_text_payload(b"1:9"), Err(PayloadError));
        assert_eq!(
            decode_binary_payload(&[0x00, 9, 9, 0xFF, b'4']),
            Err(PayloadError)
        );
        assert_eq!(encode_text_payload(&[], TextConvention::Utf8Bytes), b"0:");
    }
}
