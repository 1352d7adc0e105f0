//! Decoding client requests: multibulk (what every client library sends) and inline commands
//! (what `nc`/telnet users type).
//!
//! The rules follow Redis 7.0's `processMultibulkBuffer`, `processInlineBuffer` and
//! `sdssplitargs` (networking.c, sds.c) rather than the RESP spec, because clients and people
//! compare us with a real Redis: the same bytes must be accepted, rejected with the same error
//! text, or waited on. The quirks kept on purpose are noted where they are implemented.
//!
//! The decoder is stateless: each call re-reads the frame at the front of the buffer. Header
//! lines are short and a bulk body is only length-checked, never scanned, so a 64 MiB argument
//! arriving in many reads costs O(1) per read. A command with a very large number of small
//! arguments arriving in many reads is re-scanned per read; if that ever matters, a `Decoder`
//! struct remembering the resume offset is the fix.

use super::inline::split_args;
use bytes::{Buf, Bytes, BytesMut};

use crate::keyspace::Reply;

/// Redis's `PROTO_INLINE_MAX_SIZE`: how much may be buffered without finding the end of an
/// inline line or of a `*`/`$` count line before the client is cut off.
const INLINE_MAX_SIZE: usize = 64 * 1024;

/// Redis's `PROTO_MBULK_BIG_ARG`. Arguments this long are handed out as slices of the read
/// buffer (no copy); shorter ones are copied, so a small key or value kept in the route table
/// does not pin a whole read buffer in memory.
const BIG_ARG: usize = 32 * 1024;

/// Caps on what a client may ask us to buffer, checked before any payload arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest `$len` accepted (Redis's `proto-max-bulk-len`, 512 MiB by default there).
    pub max_bulk_len: usize,
    /// Largest `*count` accepted. Redis 7.0 accepts up to `INT_MAX`; we are stricter because
    /// no admin command needs more, with the same error text.
    pub max_multibulk_len: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_bulk_len: 64 * 1024 * 1024, max_multibulk_len: 1024 * 1024 }
    }
}

/// Why a client's bytes cannot be decoded. `Display` is the Redis 7.0 text after `-ERR `; the
/// caller sends [`ProtocolError::reply`] and closes the connection, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// Carries the offending byte. Redis sends it raw; a byte of 0x80 or more cannot be raw in
    /// a `String`, so it is shown as the Unicode character of the same number (two bytes in
    /// UTF-8) - the only case where our text differs from Redis's.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    /// Only from `encode::parse_reply` (reading a server's reply); Redis has no such message.
    #[error("Protocol error: invalid reply: {0}")]
    InvalidReply(&'static str),
}

impl ProtocolError {
    /// The error reply Redis sends before closing the connection.
    pub fn reply(&self) -> Reply {
        Reply::Error(format!("ERR {self}"))
    }
}

/// Takes one command off the front of `buf`.
///
/// `Ok(None)`: the frame is incomplete and nothing was consumed. `Ok(Some(args))` with empty
/// `args`: a blank line, `*0` or `*-1`, which Redis skips without replying; the caller should
/// too. On `Err` the connection is beyond repair and `buf` is left as it was.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => decode_multibulk(buf, limits),
        Some(_) => decode_inline(buf),
    }
}

fn decode_multibulk(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some((cr, mut pos)) = count_line(buf, 0, ProtocolError::MultibulkCountTooBig)? else {
        return Ok(None);
    };
    let count = parse_ll(&buf[1..cr])
        .filter(|&n| n <= limits.max_multibulk_len)
        .ok_or(ProtocolError::InvalidMultibulkLength)?;
    // Redis treats every non-positive count, not only `*0` and `*-1`, as an empty command.
    let Ok(count) = usize::try_from(count) else {
        buf.advance(pos);
        return Ok(Some(Vec::new()));
    };

    // Payload positions only: a frame may take many reads to complete, and nothing is copied
    // until it has.
    let mut ranges = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let Some((cr, body)) = count_line(buf, pos, ProtocolError::BulkCountTooBig)? else {
            return Ok(None);
        };
        // `cr >= pos`, and when the first byte is `$` the digits lie strictly between.
        match buf[pos] {
            b'$' => {}
            other => return Err(ProtocolError::ExpectedDollar(other)),
        }
        let len = parse_ll(&buf[pos + 1..cr])
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= limits.max_bulk_len)
            .ok_or(ProtocolError::InvalidBulkLength)?;
        // Like Redis, the two bytes after the payload are skipped, not checked for CRLF.
        let Some(end) = body.checked_add(len).and_then(|n| n.checked_add(2)) else {
            return Err(ProtocolError::InvalidBulkLength);
        };
        if buf.len() < end {
            return Ok(None);
        }
        ranges.push(body..body + len);
        pos = end;
    }

    let frame = buf.split_to(pos).freeze();
    let args = ranges
        .into_iter()
        .map(|r| if r.len() >= BIG_ARG { frame.slice(r) } else { Bytes::copy_from_slice(&frame[r]) })
        .collect();
    Ok(Some(args))
}

/// Finds a `*count` or `$len` line starting at `start`; returns the index of its `\r` and where
/// the next line starts. Like Redis, any byte after the `\r` is taken as its `\n`.
fn count_line(buf: &[u8], start: usize, too_big: ProtocolError) -> Result<Option<(usize, usize)>, ProtocolError> {
    let rest = buf.get(start..).unwrap_or_default();
    match find_before_nul(rest, b'\r') {
        None if rest.len() > INLINE_MAX_SIZE => Err(too_big),
        Some(i) if i + 2 <= rest.len() => Ok(Some((start + i, start + i + 2))),
        _ => Ok(None),
    }
}

fn decode_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(nl) = find_before_nul(buf, b'\n') else {
        return if buf.len() > INLINE_MAX_SIZE { Err(ProtocolError::InlineTooBig) } else { Ok(None) };
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    let args = split_args(&buf[..line_end]).ok_or(ProtocolError::UnbalancedQuotes)?;
    buf.advance(nl + 1);
    Ok(Some(args))
}

/// Redis looks for line ends with `strchr`, which stops at a NUL byte: with a NUL before the
/// terminator Redis keeps waiting (until the 64 KiB limit cuts the client off). Mirrored so the
/// same bytes get the same outcome; it also means an inline line never contains a NUL.
fn find_before_nul(hay: &[u8], needle: u8) -> Option<usize> {
    let i = hay.iter().position(|&b| b == needle || b == 0)?;
    (hay[i] == needle).then_some(i)
}

/// Redis's `string2ll`: optional `-`, no `+`, no leading zeros (`-0` included), no spaces, at
/// most 20 characters. Clients never send anything else; people typing into `nc` do.
fn parse_ll(s: &[u8]) -> Option<i64> {
    if s == b"0" {
        return Some(0);
    }
    if s.len() > 20 {
        return None;
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], limits: &Limits) -> (Vec<Vec<Bytes>>, Option<ProtocolError>, BytesMut) {
        let mut buf = BytesMut::from(input);
        let mut commands = Vec::new();
        loop {
            match decode(&mut buf, limits) {
                Ok(Some(args)) => commands.push(args),
                Ok(None) => return (commands, None, buf),
                Err(e) => return (commands, Some(e), buf),
            }
        }
    }

    fn one(input: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        decode(&mut BytesMut::from(input), &Limits::default())
    }

    fn args(list: &[&[u8]]) -> Vec<Bytes> {
        list.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    #[test]
    fn multibulk_command() {
        let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"[..]);
        let got = decode(&mut buf, &Limits::default()).unwrap();
        assert_eq!(got, Some(args(&[b"SET", b"k", b"a\r\nb"])));
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_bulk_and_binary_payload() {
        assert_eq!(one(b"*2\r\n$0\r\n\r\n$3\r\n\0\xff\0\r\n"), Ok(Some(args(&[b"", b"\0\xff\0"]))));
    }

    #[test]
    fn non_positive_counts_and_blank_lines_are_empty_commands() {
        for input in [&b"*0\r\n"[..], b"*-1\r\n", b"*-7\r\n", b"\r\n", b"\n", b" \t \r\n"] {
            let mut buf = BytesMut::from(input);
            assert_eq!(decode(&mut buf, &Limits::default()), Ok(Some(vec![])), "{input:?}");
            assert!(buf.is_empty(), "{input:?}");
        }
    }

    #[test]
    fn pipeline_in_one_buffer_leaves_the_partial_tail() {
        let input = b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*0\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI";
        let (commands, err, rest) = decode_all(input, &Limits::default());
        assert_eq!(err, None);
        assert_eq!(commands, vec![args(&[b"PING"]), args(&[b"ECHO", b"hi"]), vec![], args(&[b"GET", b"k"])]);
        assert_eq!(&rest[..], b"*1\r\n$4\r\nPI");
    }

    /// Every proper prefix of a frame must leave the buffer untouched, and feeding the stream
    /// one byte at a time must give the same commands as one big read.
    #[test]
    fn byte_by_byte_matches_whole_buffer() {
        let frames: [&[u8]; 6] = [
            b"*2\r\n$4\r\nECHO\r\n$5\r\nhe\r\no\r\n",
            b"*-1\r\n",
            b"SET k \"a\\x41 b\" 'c\\'d'\r\n",
            b"\r\n",
            b"*1\r\n$0\r\n\r\n",
            b"GET k\n",
        ];
        for frame in frames {
            for cut in 0..frame.len() {
                let mut buf = BytesMut::from(&frame[..cut]);
                assert_eq!(decode(&mut buf, &Limits::default()), Ok(None), "{frame:?} cut {cut}");
                assert_eq!(&buf[..], &frame[..cut]);
            }
        }
        let stream = frames.concat();
        let (whole, err, rest) = decode_all(&stream, &Limits::default());
        assert!(err.is_none() && rest.is_empty());
        assert_eq!(whole.len(), frames.len());
        let mut buf = BytesMut::new();
        let mut trickled = Vec::new();
        for &b in &stream {
            buf.extend_from_slice(&[b]);
            while let Some(cmd) = decode(&mut buf, &Limits::default()).unwrap() {
                trickled.push(cmd);
            }
        }
        assert_eq!(trickled, whole);
        assert!(buf.is_empty());
    }

    #[test]
    fn large_bulk_in_pieces_is_sliced_not_copied() {
        let payload = vec![b'x'; 1 << 20];
        let mut stream = b"*2\r\n$3\r\nSET\r\n$1048576\r\n".to_vec();
        stream.extend_from_slice(&payload);
        stream.extend_from_slice(b"\r\n");
        let mut buf = BytesMut::new();
        let mut got = None;
        for chunk in stream.chunks(4096) {
            assert!(got.is_none());
            buf.extend_from_slice(chunk);
            got = decode(&mut buf, &Limits::default()).unwrap();
        }
        let got = got.unwrap();
        assert_eq!(got[0], "SET");
        assert_eq!(got[1], payload);

        // Zero-copy: a big argument points into the read buffer, a small one does not.
        let mut buf = BytesMut::from(&stream[..]);
        let base = buf.as_ptr() as usize;
        let got = decode(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(got[1].as_ptr() as usize, base + stream.len() - 2 - payload.len());
        assert_ne!(got[0].as_ptr() as usize, base + 13);
    }

    /// Redis skips the two bytes after a payload and after a count line's `\r` unchecked.
    #[test]
    fn bytes_after_payload_and_cr_are_not_checked() {
        assert_eq!(one(b"*1\r\n$4\r\nPINGxx"), Ok(Some(args(&[b"PING"]))));
        assert_eq!(one(b"*1\rX$4\rYPINGxx"), Ok(Some(args(&[b"PING"]))));
        assert_eq!(one(b"*1\r\n$4\r\nPINGx"), Ok(None));
    }

    #[test]
    fn inline_splitting_follows_sdssplitargs() {
        let cases: [(&[u8], &[&[u8]]); 14] = [
            (b"PING\r\n", &[b"PING"]),
            (b"  SET\t k  v \r\n", &[b"SET", b"k", b"v"]),
            (b"ECHO \"a\\x41\\n\"\r\n", &[b"ECHO", b"aA\n"]),
            (b"ECHO \"\\r\\t\\b\\a\\\\\\\"\\q\\xZZ\"\n", &[b"ECHO", b"\r\t\x08\x07\\\"qxZZ"]),
            (b"ECHO \"\\xfF\"\n", &[b"ECHO", b"\xff"]),
            (b"ECHO 'a\\'b' 'c\\nd'\r\n", &[b"ECHO", b"a'b", b"c\\nd"]),
            (b"ECHO \"\" ''\r\n", &[b"ECHO", b"", b""]),
            (b"ECHO a\"b c\"\r\n", &[b"ECHO", b"ab c"]),
            (b"ECHO a\"b c\" d\r\n", &[b"ECHO", b"ab c", b"d"]),
            (b"ECHO \x0ba\x0bb\r\n", &[b"ECHO", b"a\x0bb"]),
            (b"ECHO \"a\"\x0b\r\n", &[b"ECHO", b"a"]),
            (b"ECHO a\rb\n", &[b"ECHO", b"a", b"b"]),
            (b"ECHO back\\slash\r\n", &[b"ECHO", b"back\\slash"]),
            (b"ECHO caf\xc3\xa9\r\r\n", &[b"ECHO", b"caf\xc3\xa9"]),
        ];
        for (input, expected) in cases {
            assert_eq!(one(input), Ok(Some(args(expected))), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn inline_unbalanced_quotes() {
        for input in [
            &b"\"a\"b\r\n"[..],
            b"'a'b\r\n",
            b"ECHO \"abc\r\n",
            b"ECHO 'abc\r\n",
            b"ECHO \"abc\\\r\n",
            b"ECHO \"a\"\"b\"\r\n",
        ] {
            assert_eq!(one(input), Err(ProtocolError::UnbalancedQuotes), "{input:?}");
        }
    }

    /// Expected texts were taken from redis-server 7.0.15 over a raw socket.
    #[test]
    fn protocol_errors_match_redis_text() {
        let cases: [(&[u8], &str); 14] = [
            (b"*x\r\n", "Protocol error: invalid multibulk length"),
            (b"*+1\r\n", "Protocol error: invalid multibulk length"),
            (b"*01\r\n", "Protocol error: invalid multibulk length"),
            (b"*-0\r\n", "Protocol error: invalid multibulk length"),
            (b"*\r\n", "Protocol error: invalid multibulk length"),
            (b"*1\r\nx\r\n", "Protocol error: expected '$', got 'x'"),
            (b"*1\r\n\r\n", "Protocol error: expected '$', got '\r'"),
            (b"*1\r\n$-5\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$+4\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$04\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$111111111111111111111111111111\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$67108865\r\n", "Protocol error: invalid bulk length"),
            (b"\"a\"b\r\n", "Protocol error: unbalanced quotes in request"),
        ];
        for (input, text) in cases {
            let err = one(input).unwrap_err();
            assert_eq!(err.to_string(), text, "{input:?}");
            assert_eq!(err.reply(), Reply::Error(format!("ERR {text}")));
        }
    }

    #[test]
    fn later_bad_header_fails_before_the_frame_completes() {
        let (commands, err, _) = decode_all(b"*1\r\n$3\r\nfoo\r\n*2\r\n$1\r\na\r\nz\r\n", &Limits::default());
        assert_eq!(commands, vec![args(&[b"foo"])]);
        assert_eq!(err, Some(ProtocolError::ExpectedDollar(b'z')));
    }

    #[test]
    fn unterminated_lines_are_cut_off_past_64k() {
        let at_limit = |prefix: &[u8], fill: u8, extra: usize| {
            let mut input = prefix.to_vec();
            input.resize(INLINE_MAX_SIZE + extra, fill);
            one(&input)
        };
        assert_eq!(at_limit(b"", b'x', 0), Ok(None));
        assert_eq!(at_limit(b"", b'x', 1), Err(ProtocolError::InlineTooBig));
        assert_eq!(at_limit(b"*", b'1', 0), Ok(None));
        assert_eq!(at_limit(b"*", b'1', 1), Err(ProtocolError::MultibulkCountTooBig));
        assert_eq!(at_limit(b"*1\r\n$", b'1', 4), Ok(None));
        assert_eq!(at_limit(b"*1\r\n$", b'1', 5), Err(ProtocolError::BulkCountTooBig));
        assert_eq!(ProtocolError::InlineTooBig.to_string(), "Protocol error: too big inline request");
        assert_eq!(ProtocolError::MultibulkCountTooBig.to_string(), "Protocol error: too big mbulk count string");
        assert_eq!(ProtocolError::BulkCountTooBig.to_string(), "Protocol error: too big bulk count string");
    }

    /// Redis's `strchr` stops at NUL, so it never sees the line end and keeps waiting.
    #[test]
    fn nul_before_line_end_waits_like_redis() {
        assert_eq!(one(b"PI\0NG\r\n"), Ok(None));
        assert_eq!(one(b"*1\0\r\n"), Ok(None));
        assert_eq!(one(b"*1\r\n$\x004\r\n"), Ok(None));
        let mut input = b"PI\0NG\r\n".to_vec();
        input.resize(INLINE_MAX_SIZE + 1, b'x');
        assert_eq!(one(&input), Err(ProtocolError::InlineTooBig));
    }

    #[test]
    fn limits_are_inclusive() {
        let limits = Limits { max_bulk_len: 3, max_multibulk_len: 2 };
        let check = |input: &[u8]| decode(&mut BytesMut::from(input), &limits);
        assert_eq!(check(b"*2\r\n$3\r\nabc\r\n$0\r\n\r\n"), Ok(Some(args(&[b"abc", b""]))));
        assert_eq!(check(b"*3\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(check(b"*1\r\n$4\r\n"), Err(ProtocolError::InvalidBulkLength));
        let max = Limits { max_bulk_len: usize::MAX, max_multibulk_len: i64::MAX };
        let huge = format!("*1\r\n${}\r\n", i64::MAX);
        assert_eq!(decode(&mut BytesMut::from(huge.as_bytes()), &max), Ok(None));
        assert_eq!(
            decode(&mut BytesMut::from(&b"*9223372036854775808\r\n"[..]), &max),
            Err(ProtocolError::InvalidMultibulkLength)
        );
    }

    #[test]
    fn string2ll_rules() {
        for (s, v) in [
            (&b"0"[..], Some(0)),
            (b"-1", Some(-1)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"00", None),
            (b"-0", None),
            (b"+1", None),
            (b" 1", None),
            (b"1 ", None),
            (b"-", None),
            (b"", None),
            (b"1x", None),
        ] {
            assert_eq!(parse_ll(s), v, "{s:?}");
        }
    }

    /// Deterministic fuzzing without a `rand` dependency: random bytes, and random corruptions
    /// of valid frames, must never panic and every `Some` must consume input.
    #[test]
    fn random_input_never_panics() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"*$\r\n-0123456789 \t\"'\\xaF\0\x0bSETGET";
        let seeds: [&[u8]; 3] =
            [b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n", b"ECHO \"a\\x41\" 'b\\'c'\r\n", b"*-1\r\n*0\r\n\r\n"];
        let limits = Limits { max_bulk_len: 64, max_multibulk_len: 16 };
        for round in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut input: Vec<u8> = match round % 3 {
                0 => (0..len).map(|_| next() as u8).collect(),
                1 => (0..len).map(|_| alphabet[next() as usize % alphabet.len()]).collect(),
                _ => seeds[round % seeds.len()].repeat(2),
            };
            if round % 3 == 2 {
                for _ in 0..1 + next() % 3 {
                    let i = next() as usize % input.len();
                    input[i] = alphabet[next() as usize % alphabet.len()];
                }
            }
            let mut buf = BytesMut::from(&input[..]);
            while let Ok(Some(_)) = {
                let before = buf.len();
                let r = decode(&mut buf, &limits);
                if matches!(r, Ok(Some(_))) {
                    assert!(buf.len() < before, "no progress on {input:?}");
                }
                r
            } {}
        }
    }
}
