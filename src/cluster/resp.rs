//! RESP framing for the Redis links: a cheap "is a whole reply here?" scan, then the `redis`
//! crate's parser on exactly that many bytes.
//!
//! Called by `cluster::link` for every chunk read from a Redis socket. The scan walks the type
//! bytes and lengths only (memchr for line ends), so a partial reply costs one scan and no
//! allocation; the parse allocates the `redis::Value` the link hands on.

use memchr::memchr;

/// Why the bytes from Redis cannot be framed (the link drops the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    UnknownType(u8),
    BadLength,
    TooDeep,
    Parse(String),
}

impl std::fmt::Display for RespError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RespError::UnknownType(byte) => write!(formatter, "unknown RESP type byte {byte:#04x}"),
            RespError::BadLength => write!(formatter, "malformed RESP length"),
            RespError::TooDeep => write!(formatter, "RESP nesting too deep"),
            RespError::Parse(text) => write!(formatter, "RESP parse error: {text}"),
        }
    }
}

/// Deepest nesting accepted (Redis replies to our commands nest at most 3 deep).
const MAX_DEPTH: usize = 32;

/// The length of the first whole reply in `buffer`, or `None` while it is incomplete.
pub fn frame_length(buffer: &[u8]) -> Result<Option<usize>, RespError> {
    // (position, values still to read at this level); an explicit stack, no recursion.
    let mut position = 0;
    let mut remaining: Vec<i64> = Vec::new();
    let mut pending = 1i64;
    loop {
        if pending == 0 {
            match remaining.pop() {
                Some(outer) => {
                    pending = outer;
                    continue;
                }
                None => return Ok(Some(position)),
            }
        }
        let Some(&kind) = buffer.get(position) else {
            return Ok(None);
        };
        let Some(line_end) = memchr(b'\n', &buffer[position..]) else {
            return Ok(None);
        };
        // A line is the type byte, its text, then CRLF: a newline first is no line at all.
        if line_end == 0 {
            return Err(RespError::UnknownType(kind));
        }
        let line = &buffer[position + 1..position + line_end];
        let line = line.strip_suffix(b"\r").ok_or(RespError::BadLength)?;
        let after_line = position + line_end + 1;
        pending -= 1;
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => position = after_line,
            b'$' | b'=' | b'!' => {
                let length = parse_length(line)?;
                if length < 0 {
                    position = after_line;
                } else {
                    let end = after_line + length as usize + 2;
                    if buffer.len() < end {
                        return Ok(None);
                    }
                    position = end;
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let mut count = parse_length(line)?;
                if kind == b'%' || kind == b'|' {
                    count = count.checked_mul(2).ok_or(RespError::BadLength)?;
                }
                position = after_line;
                if count > 0 {
                    if remaining.len() >= MAX_DEPTH {
                        return Err(RespError::TooDeep);
                    }
                    remaining.push(pending);
                    pending = count;
                }
            }
            other => return Err(RespError::UnknownType(other)),
        }
    }
}

fn parse_length(line: &[u8]) -> Result<i64, RespError> {
    let text = std::str::from_utf8(line).map_err(|_| RespError::BadLength)?;
    let length: i64 = text.parse().map_err(|_| RespError::BadLength)?;
    if !(-1..=512 * 1024 * 1024).contains(&length) {
        return Err(RespError::BadLength);
    }
    Ok(length)
}

/// Parses one whole reply (as measured by `frame_length`).
pub fn parse(frame: &[u8]) -> Result<redis::Value, RespError> {
    redis::parse_redis_value(frame).map_err(|error| RespError::Parse(error.to_string()))
}

/// Appends one command, encoded by the `redis` crate, to `out`.
pub fn write_command(out: &mut Vec<u8>, arguments: &[&[u8]]) {
    let mut command = redis::Cmd::new();
    for argument in arguments {
        command.arg(*argument);
    }
    command.write_packed_command(out);
}

/// One command, encoded.
pub fn command(arguments: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    write_command(&mut out, arguments);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_replies_are_measured_and_partial_ones_wait() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR nope\r\n",
            b":42\r\n",
            b"$-1\r\n",
            b"$3\r\nabc\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhe\r\nl\r\n",
            b"*2\r\n*2\r\n:1\r\n:2\r\n$1\r\nx\r\n",
        ];
        for case in cases {
            let mut with_more = case.to_vec();
            with_more.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(frame_length(&with_more), Ok(Some(case.len())), "{case:?}");
            for cut in 0..case.len() {
                assert_eq!(
                    frame_length(&case[..cut]),
                    Ok(None),
                    "{case:?} cut at {cut}"
                );
            }
            assert!(parse(case).is_ok());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(frame_length(b"?x\r\n"), Err(RespError::UnknownType(b'?')));
        // found by the fuzzer: a bare newline where a reply starts
        assert_eq!(frame_length(b"\n"), Err(RespError::UnknownType(b'\n')));
        assert_eq!(
            frame_length(b"*1\r\n\n"),
            Err(RespError::UnknownType(b'\n'))
        );
        assert_eq!(frame_length(b"$abc\r\n"), Err(RespError::BadLength));
        assert_eq!(frame_length(b"$-5\r\n"), Err(RespError::BadLength));
        let deep = "*1\r\n".repeat(100);
        assert_eq!(frame_length(deep.as_bytes()), Err(RespError::TooDeep));
    }

    #[test]
    fn commands_encode_as_resp_arrays() {
        assert_eq!(
            command(&[b"PUBLISH", b"c", b"a\x1eb"]),
            b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$3\r\na\x1eb\r\n".to_vec()
        );
        // the same bytes the redis crate would produce
        assert_eq!(
            command(&[b"GET", b"k"]),
            redis::cmd("GET").arg("k").get_packed_command()
        );
    }
}
