//! WebSocket (RFC 6455) framing, written here: the opening handshake's accept key, a frame
//! decoder for every length encoding with client masking, fragmentation and control frames, UTF-8
//! validation of text messages across fragments, and frame encoding for the server side.
//!
//! Split like every parser here: `frame_length` is the cheap "is a whole frame here?" check;
//! `Decoder::push`/`next_event` do the rest. Pure: the HTTP connection task (`server`) feeds it
//! bytes and writes what it returns; it never knows what a deepstream message is.

use base64::Engine;
use sha1::{Digest, Sha1};

const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key);
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Close status codes we send.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete text message (valid UTF-8).
    Text(Vec<u8>),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A ping: answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    Pong,
    /// The peer started the close handshake (`None`: no status code in its frame).
    Close(Option<u16>),
    /// A protocol violation: close with this code and drop the connection.
    Fail(u16),
}

/// The total length of the frame at the start of `bytes` (header + payload), or `None` when
/// more bytes are needed (or the announced length cannot be addressed; the decoder's size
/// limit refuses such a frame before this is asked).
pub fn frame_length(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 2 {
        return None;
    }
    let masked = bytes[1] & 0x80 != 0;
    let (header, payload) = match bytes[1] & 0x7f {
        126 => {
            if bytes.len() < 4 {
                return None;
            }
            (4, u64::from(u16::from_be_bytes([bytes[2], bytes[3]])))
        }
        127 => {
            if bytes.len() < 10 {
                return None;
            }
            let mut length = [0u8; 8];
            length.copy_from_slice(&bytes[2..10]);
            (10, u64::from_be_bytes(length))
        }
        short => (2, u64::from(short)),
    };
    let header = header + if masked { 4 } else { 0 };
    let total = (header as u64).checked_add(payload)?;
    let total = usize::try_from(total).ok()?;
    (bytes.len() >= total).then_some(total)
}

/// XORs `payload` with the 4-byte `mask`, eight bytes at a time.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let value = u64::from_ne_bytes(bytes) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (index, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[index % 4];
    }
}

/// Is this a close code a peer may send? (RFC 6455 §7.4, the IANA registry.)
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Streaming UTF-8 check: fails as soon as a byte sequence cannot be valid, keeps an
/// incomplete sequence at the end of a fragment (at most 3 bytes, held inline: a decoder
/// holds no allocation for it) for the next one.
#[derive(Default, Clone)]
struct Utf8Stream {
    carry: [u8; 3],
    carried: u8,
}

/// How many bytes the UTF-8 sequence that starts with `lead` has (a carried lead is valid).
fn sequence_length(lead: u8) -> usize {
    match lead {
        0xf0.. => 4,
        0xe0.. => 3,
        _ => 2,
    }
}

impl Utf8Stream {
    /// `false` when the bytes so far can no longer be valid UTF-8.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut rest = bytes;
        if self.carried > 0 {
            let carried = usize::from(self.carried);
            let mut sequence = [0u8; 4];
            sequence[..carried].copy_from_slice(&self.carry[..carried]);
            let need = sequence_length(sequence[0]) - carried;
            let taken = need.min(bytes.len());
            sequence[carried..carried + taken].copy_from_slice(&bytes[..taken]);
            match std::str::from_utf8(&sequence[..carried + taken]) {
                Ok(_) => {}
                Err(error) if error.error_len().is_some() => return false,
                // still incomplete: all of `bytes` was taken into the carry
                Err(_) => return self.keep(&sequence[..carried + taken]),
            }
            self.carried = 0;
            rest = &bytes[taken..];
        }
        match std::str::from_utf8(rest) {
            Ok(_) => true,
            Err(error) if error.error_len().is_some() => false,
            Err(error) => self.keep(&rest[error.valid_up_to()..]),
        }
    }

    /// Keeps an incomplete sequence (1 to 3 bytes) for the next fragment.
    fn keep(&mut self, incomplete: &[u8]) -> bool {
        self.carry[..incomplete.len()].copy_from_slice(incomplete);
        self.carried = incomplete.len() as u8;
        true
    }

    /// At the end of a message nothing may be left over.
    fn finish(&mut self) -> bool {
        let complete = self.carried == 0;
        self.carried = 0;
        complete
    }
}

/// Decodes client frames into messages and control events.
pub struct Decoder {
    buffer: Vec<u8>,
    /// `maxMessageSize` (u32: the decoder is part of every idle WebSocket connection).
    max_message_size: u32,
    /// A fragmented message in progress: its opcode and the payload so far.
    message: Option<(u8, Vec<u8>)>,
    utf8: Utf8Stream,
    /// For a text frame still arriving: how many of its payload bytes were checked, and the
    /// UTF-8 state after them (so invalid text fails before the frame ends, in linear time).
    partial: Option<(u32, Utf8Stream)>,
    failed: bool,
}

impl Decoder {
    pub fn new(max_message_size: usize) -> Self {
        Decoder {
            buffer: Vec::new(),
            max_message_size: max_message_size.min(u32::MAX as usize) as u32,
            message: None,
            utf8: Utf8Stream::default(),
            partial: None,
            failed: false,
        }
    }

    pub fn push(&mut self, received: &[u8]) {
        if !self.failed {
            self.buffer.extend_from_slice(received);
        }
    }

    /// Bytes waiting for the rest of their frame.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Bytes allocated for frames in progress (0 when nothing is pending).
    pub fn allocated(&self) -> usize {
        self.buffer.capacity() + self.message.as_ref().map_or(0, |(_, data)| data.capacity())
    }

    fn fail(&mut self, code: u16) -> Option<Event> {
        self.failed = true;
        self.buffer = Vec::new();
        self.message = None;
        Some(Event::Fail(code))
    }

    /// The next complete event, if the buffered bytes hold one.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.failed {
                return None;
            }
            // A control frame may carry at most 125 bytes (RFC 6455 §5.5): one that announces
            // more (a 16- or 64-bit length) is refused at its second byte, never buffered.
            if self.buffer.len() >= 2 && self.buffer[0] & 0x08 != 0 && self.buffer[1] & 0x7f > 125 {
                return self.fail(close_code::PROTOCOL_ERROR);
            }
            // A header that announces more than the limit fails before the payload arrives.
            if let Some(announced) = announced_payload(&self.buffer) {
                let so_far = self.message.as_ref().map_or(0, |(_, data)| data.len()) as u64;
                if announced.saturating_add(so_far) > u64::from(self.max_message_size) {
                    let opcode = self.buffer[0] & 0x0f;
                    if opcode < 0x8 {
                        return self.fail(close_code::MESSAGE_TOO_BIG);
                    }
                }
            }
            let Some(length) = frame_length(&self.buffer) else {
                return self.check_partial_text();
            };
            self.partial = None;
            let frame: Vec<u8> = if length == self.buffer.len() {
                // The common case, a read that ends with its frame: the buffer becomes the
                // frame (no copy) and nothing stays allocated while the connection is idle.
                std::mem::take(&mut self.buffer)
            } else {
                self.buffer.drain(..length).collect()
            };
            if let Some(event) = self.frame(frame) {
                return Some(event);
            }
        }
    }

    /// A text frame (or a continuation of a text message) whose payload is still arriving:
    /// checks the bytes that arrived since the last check.
    fn check_partial_text(&mut self) -> Option<Event> {
        let bytes = &self.buffer;
        if bytes.len() < 2 || bytes[1] & 0x80 == 0 {
            return None;
        }
        let opcode = bytes[0] & 0x0f;
        let is_text = opcode == OPCODE_TEXT
            || (opcode == OPCODE_CONTINUATION && matches!(self.message, Some((OPCODE_TEXT, _))));
        if !is_text {
            return None;
        }
        let header = match bytes[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        } + 4;
        if bytes.len() <= header {
            return None;
        }
        let mask = [
            bytes[header - 4],
            bytes[header - 3],
            bytes[header - 2],
            bytes[header - 1],
        ];
        let available = bytes.len() - header;
        let (checked, mut state) = self
            .partial
            .take()
            .unwrap_or_else(|| (0, self.utf8.clone()));
        let checked = checked as usize;
        if available <= checked {
            self.partial = Some((checked as u32, state));
            return None;
        }
        let mut fresh = bytes[header + checked..].to_vec();
        // The mask repeats every four bytes from the payload's start.
        let rotated = [
            mask[checked % 4],
            mask[(checked + 1) % 4],
            mask[(checked + 2) % 4],
            mask[(checked + 3) % 4],
        ];
        unmask(&mut fresh, rotated);
        if !state.feed(&fresh) {
            return self.fail(close_code::INVALID_PAYLOAD);
        }
        // `available` is below maxMessageSize (a u32) plus a header: the frame was announced
        self.partial = Some((available.min(u32::MAX as usize) as u32, state));
        None
    }

    /// Handles one whole frame; `None` when it completed nothing yet.
    fn frame(&mut self, mut frame: Vec<u8>) -> Option<Event> {
        let fin = frame[0] & 0x80 != 0;
        let reserved = frame[0] & 0x70;
        let opcode = frame[0] & 0x0f;
        let masked = frame[1] & 0x80 != 0;
        if reserved != 0 || !masked {
            return self.fail(close_code::PROTOCOL_ERROR);
        }
        let (header, payload_length) = match frame[1] & 0x7f {
            126 => (4, usize::from(u16::from_be_bytes([frame[2], frame[3]]))),
            127 => {
                if frame[2] & 0x80 != 0 {
                    return self.fail(close_code::PROTOCOL_ERROR);
                }
                (10, frame.len() - 14)
            }
            short => (2, usize::from(short)),
        };
        let mask = [
            frame[header],
            frame[header + 1],
            frame[header + 2],
            frame[header + 3],
        ];
        let start = header + 4;
        let payload = &mut frame[start..start + payload_length];
        unmask(payload, mask);
        let payload = payload.to_vec();
        match opcode {
            OPCODE_PING | OPCODE_PONG | OPCODE_CLOSE => {
                if !fin || payload.len() > 125 {
                    return self.fail(close_code::PROTOCOL_ERROR);
                }
                match opcode {
                    OPCODE_PING => Some(Event::Ping(payload)),
                    OPCODE_PONG => Some(Event::Pong),
                    _ => self.close_frame(&payload),
                }
            }
            OPCODE_TEXT | OPCODE_BINARY => {
                if self.message.is_some() {
                    return self.fail(close_code::PROTOCOL_ERROR);
                }
                if opcode == OPCODE_TEXT && !self.utf8.feed(&payload) {
                    return self.fail(close_code::INVALID_PAYLOAD);
                }
                self.message = Some((opcode, payload));
                if fin {
                    self.complete()
                } else {
                    None
                }
            }
            OPCODE_CONTINUATION => {
                let Some((message_opcode, data)) = self.message.as_mut() else {
                    return self.fail(close_code::PROTOCOL_ERROR);
                };
                if *message_opcode == OPCODE_TEXT && !self.utf8.feed(&payload) {
                    return self.fail(close_code::INVALID_PAYLOAD);
                }
                data.extend_from_slice(&payload);
                if data.len() > self.max_message_size as usize {
                    return self.fail(close_code::MESSAGE_TOO_BIG);
                }
                if fin {
                    self.complete()
                } else {
                    None
                }
            }
            _ => self.fail(close_code::PROTOCOL_ERROR),
        }
    }

    fn complete(&mut self) -> Option<Event> {
        let (opcode, data) = self.message.take()?;
        if opcode == OPCODE_TEXT {
            if !self.utf8.finish() {
                return self.fail(close_code::INVALID_PAYLOAD);
            }
            Some(Event::Text(data))
        } else {
            Some(Event::Binary(data))
        }
    }

    fn close_frame(&mut self, payload: &[u8]) -> Option<Event> {
        match payload.len() {
            0 => Some(Event::Close(None)),
            1 => self.fail(close_code::PROTOCOL_ERROR),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !is_valid_close_code(code) {
                    return self.fail(close_code::PROTOCOL_ERROR);
                }
                if std::str::from_utf8(&payload[2..]).is_err() {
                    return self.fail(close_code::INVALID_PAYLOAD);
                }
                Some(Event::Close(Some(code)))
            }
        }
    }
}

/// The payload length a (possibly incomplete) frame header announces.
fn announced_payload(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < 2 {
        return None;
    }
    match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => Some(u64::from(u16::from_be_bytes([bytes[2], bytes[3]]))),
        127 if bytes.len() >= 10 => {
            let mut length = [0u8; 8];
            length.copy_from_slice(&bytes[2..10]);
            Some(u64::from_be_bytes(length))
        }
        126 | 127 => None,
        short => Some(u64::from(short)),
    }
}

/// Appends a frame header: the first byte, then the length with the mask bit `masked`.
fn write_header(out: &mut Vec<u8>, first: u8, masked: bool, length: usize) {
    let mask_bit = if masked { 0x80 } else { 0 };
    out.push(first);
    match length {
        0..=125 => out.push(mask_bit | length as u8),
        126..=65535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(length as u64).to_be_bytes());
        }
    }
}

/// Appends an unmasked server frame.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    write_header(out, 0x80 | opcode, false, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a masked client frame with the first byte `first` (FIN, RSV and opcode bits as
/// given, so tests can send fragments and bad bits): the client side of the test suites and of
/// corestream-bench.
pub fn write_client_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    write_header(out, first, true, payload.len());
    out.extend_from_slice(&mask);
    let masked = payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]);
    out.extend(masked);
}

/// Appends the header of an unmasked text frame of `length` bytes (the payload follows it on
/// the wire, written from wherever it is).
pub fn write_text_header(out: &mut Vec<u8>, length: usize) {
    write_header(out, 0x80 | OPCODE_TEXT, false, length);
}

pub fn write_text(out: &mut Vec<u8>, payload: &[u8]) {
    write_frame(out, OPCODE_TEXT, payload);
}

pub fn write_binary(out: &mut Vec<u8>, payload: &[u8]) {
    write_frame(out, OPCODE_BINARY, payload);
}

pub fn write_pong(out: &mut Vec<u8>, payload: &[u8]) {
    write_frame(out, OPCODE_PONG, payload);
}

pub fn write_close(out: &mut Vec<u8>, code: Option<u16>) {
    match code {
        Some(code) => write_frame(out, OPCODE_CLOSE, &code.to_be_bytes()),
        None => write_frame(out, OPCODE_CLOSE, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_frame_decodes_to_its_payload() {
        for length in [0, 5, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..length).map(|i| (i % 251) as u8).collect();
            let mut frame = Vec::new();
            write_client_frame(&mut frame, 0x82, &payload, [1, 2, 3, 4]);
            let mut decoder = Decoder::new(1 << 20);
            decoder.push(&frame);
            assert_eq!(
                decoder.next_event(),
                Some(Event::Binary(payload)),
                "{length}"
            );
        }
    }

    /// A masked client frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            length @ 0..=125 => out.push(0x80 | length as u8),
            length @ 126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        let mut masked = payload.to_vec();
        unmask(&mut masked, mask);
        out.extend(masked);
        out
    }

    fn decode(bytes: &[u8], limit: usize) -> Vec<Event> {
        let mut decoder = Decoder::new(limit);
        decoder.push(bytes);
        std::iter::from_fn(|| decoder.next_event()).collect()
    }

    #[test]
    fn nothing_stays_allocated_between_whole_frames() {
        let mut decoder = Decoder::new(1 << 20);
        let mut frame = client_frame(0x81, b"E\x1fS\x1fnews\x1e");
        decoder.push(&frame);
        assert!(matches!(decoder.next_event(), Some(Event::Text(_))));
        assert_eq!(decoder.allocated(), 0);
        // A frame split across reads is held until it is whole, then released.
        let tail = frame.split_off(5);
        decoder.push(&frame);
        assert_eq!(decoder.next_event(), None);
        assert!(decoder.allocated() > 0);
        decoder.push(&tail);
        assert!(matches!(decoder.next_event(), Some(Event::Text(_))));
        assert_eq!(decoder.allocated(), 0);
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn every_length_encoding_and_byte_at_a_time() {
        for size in [0usize, 5, 125, 126, 65535, 65536, 70000] {
            let payload = vec![b'a'; size];
            let frame = client_frame(0x81, &payload);
            assert_eq!(decode(&frame, 1 << 20), vec![Event::Text(payload.clone())]);
            if size < 200 {
                let mut decoder = Decoder::new(1 << 20);
                let mut events = Vec::new();
                for byte in &frame {
                    decoder.push(&[*byte]);
                    events.extend(std::iter::from_fn(|| decoder.next_event()));
                }
                assert_eq!(events, vec![Event::Text(payload)]);
            }
        }
    }

    #[test]
    fn fragments_with_control_frames_between() {
        let mut bytes = client_frame(0x01, b"Hel");
        bytes.extend(client_frame(0x89, b"ping!"));
        bytes.extend(client_frame(0x00, b"lo"));
        bytes.extend(client_frame(0x80, b", world"));
        assert_eq!(
            decode(&bytes, 1024),
            vec![
                Event::Ping(b"ping!".to_vec()),
                Event::Text(b"Hello, world".to_vec())
            ]
        );
    }

    #[test]
    fn protocol_violations() {
        // Unmasked client frame.
        assert_eq!(decode(&[0x81, 0x01, b'a'], 1024), vec![Event::Fail(1002)]);
        // Reserved bits without an extension.
        assert_eq!(
            decode(&client_frame(0xC1, b"a"), 1024),
            vec![Event::Fail(1002)]
        );
        // Unknown opcode.
        assert_eq!(
            decode(&client_frame(0x83, b""), 1024),
            vec![Event::Fail(1002)]
        );
        // Fragmented control frame, and a control frame over 125 bytes.
        assert_eq!(
            decode(&client_frame(0x09, b""), 1024),
            vec![Event::Fail(1002)]
        );
        assert_eq!(
            decode(&client_frame(0x89, &[0; 126]), 1024),
            vec![Event::Fail(1002)]
        );
        // ... refused from the header alone: a ping announcing 2^40 bytes, nothing after it.
        let mut decoder = Decoder::new(1 << 50);
        let mut header = vec![0x89, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        decoder.push(&header[..2]);
        assert_eq!(decoder.next_event(), Some(Event::Fail(1002)));
        decoder.push(&header[2..]);
        assert_eq!(decoder.pending(), 0, "nothing buffered after the refusal");
        // Continuation with nothing to continue; a new message inside a fragmented one.
        assert_eq!(
            decode(&client_frame(0x80, b"x"), 1024),
            vec![Event::Fail(1002)]
        );
        let mut bytes = client_frame(0x01, b"a");
        bytes.extend(client_frame(0x81, b"b"));
        assert_eq!(decode(&bytes, 1024), vec![Event::Fail(1002)]);
        // Close codes and payloads.
        assert_eq!(
            decode(&client_frame(0x88, &[0x03]), 1024),
            vec![Event::Fail(1002)]
        );
        assert_eq!(
            decode(&client_frame(0x88, &1005u16.to_be_bytes()), 1024),
            vec![Event::Fail(1002)]
        );
        assert_eq!(
            decode(&client_frame(0x88, &1000u16.to_be_bytes()), 1024),
            vec![Event::Close(Some(1000))]
        );
        assert_eq!(
            decode(&client_frame(0x88, b""), 1024),
            vec![Event::Close(None)]
        );
    }

    #[test]
    fn utf8_is_validated_across_fragments_and_fails_fast() {
        let euro = "€".as_bytes();
        let mut bytes = client_frame(0x01, &euro[..1]);
        bytes.extend(client_frame(0x80, &euro[1..]));
        assert_eq!(decode(&bytes, 1024), vec![Event::Text(euro.to_vec())]);
        // An invalid byte fails at once, before the message ends.
        let mut decoder = Decoder::new(1024);
        decoder.push(&client_frame(0x01, &[b'a', 0xff]));
        assert_eq!(decoder.next_event(), Some(Event::Fail(1007)));
        // A sequence cut off at the end of the message is invalid too.
        assert_eq!(
            decode(&client_frame(0x81, &euro[..2]), 1024),
            vec![Event::Fail(1007)]
        );
    }

    #[test]
    fn the_streaming_utf8_check_agrees_with_std_at_every_split() {
        let samples: Vec<Vec<u8>> = vec![
            "a€b😀c κόσμε".as_bytes().to_vec(),
            vec![0xf0, 0x9f, 0x98],       // cut off
            vec![b'a', 0xe0, 0x80, 0x80], // overlong
            vec![0xed, 0xa0, 0x80],       // surrogate
            vec![0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
            vec![0xc3, b'a'],             // continuation missing
            vec![0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80],
        ];
        for sample in &samples {
            let expected = std::str::from_utf8(sample).is_ok();
            for first in 0..=sample.len() {
                for second in first..=sample.len() {
                    let mut stream = Utf8Stream::default();
                    let valid = [&sample[..first], &sample[first..second], &sample[second..]]
                        .iter()
                        .all(|part| stream.feed(part))
                        && stream.finish();
                    assert_eq!(valid, expected, "{sample:02x?} split at {first}, {second}");
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_fails_while_the_frame_is_still_arriving() {
        let mut payload = "κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(&[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xf4, 0x90,
        ]);
        payload.extend_from_slice(b"rest of a long frame");
        let frame = client_frame(0x81, &payload);
        let mut decoder = Decoder::new(1024);
        // Everything up to and including the invalid bytes, but not the end of the frame.
        let cut = frame.len() - 10;
        for byte in &frame[..cut] {
            decoder.push(&[*byte]);
            if let Some(event) = decoder.next_event() {
                assert_eq!(event, Event::Fail(1007));
                return;
            }
        }
        panic!("invalid UTF-8 was not refused before the frame ended");
    }

    #[test]
    fn valid_text_arriving_in_pieces_is_not_refused() {
        let payload = "ünïcødé ✓ 😀 ".repeat(50);
        let frame = client_frame(0x81, payload.as_bytes());
        let mut decoder = Decoder::new(1 << 20);
        let mut events = Vec::new();
        for chunk in frame.chunks(7) {
            decoder.push(chunk);
            events.extend(std::iter::from_fn(|| decoder.next_event()));
        }
        assert_eq!(events, vec![Event::Text(payload.into_bytes())]);
    }

    #[test]
    fn messages_over_the_limit_fail_with_1009_before_the_payload_arrives() {
        let header_only = &client_frame(0x81, &vec![b'a'; 70000])[..14];
        let mut decoder = Decoder::new(65536);
        decoder.push(header_only);
        assert_eq!(decoder.next_event(), Some(Event::Fail(1009)));
        let mut bytes = client_frame(0x01, &[b'a'; 600]);
        bytes.extend(client_frame(0x80, &[b'a'; 600]));
        assert_eq!(decode(&bytes, 1000), vec![Event::Fail(1009)]);
    }

    #[test]
    fn word_at_a_time_unmasking_matches_bytewise() {
        let mask = [1, 2, 3, 250];
        for length in 0..40 {
            let original: Vec<u8> = (0..length as u8).collect();
            let mut fast = original.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(index, byte)| byte ^ mask[index % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn server_frames() {
        let mut out = Vec::new();
        write_text(&mut out, b"hi");
        assert_eq!(out, vec![0x81, 2, b'h', b'i']);
        out.clear();
        write_text(&mut out, &[0; 300]);
        assert_eq!(&out[..4], &[0x81, 126, 1, 44]);
        out.clear();
        write_close(&mut out, Some(1000));
        assert_eq!(out, vec![0x88, 2, 0x03, 0xe8]);
    }
}
