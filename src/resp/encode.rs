//! Writing a [`Reply`] as RESP2 or RESP3 bytes, and reading one reply back.
//!
//! The encoder must produce exactly what Redis 7.0 sends for the same value, since clients
//! (and tests diffing against a real Redis) see the bytes. [`parse_reply`] is its inverse, for
//! integration tests and tools that talk to us or to a real Redis.

use bytes::{BufMut, BytesMut};

use super::decode::ProtocolError;
use crate::keyspace::Reply;

/// What the connection negotiated: RESP2 until a successful `HELLO 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// Appends `reply` to `out`. Types RESP2 lacks degrade as Redis degrades them: maps become flat
/// key/value arrays, sets and pushes plain arrays, verbatim strings bulk strings.
pub fn encode(reply: &Reply, proto: Protocol, out: &mut BytesMut) {
    use Protocol::{Resp2, Resp3};
    match (reply, proto) {
        (Reply::Status(text), _) => put_line(out, b'+', text),
        (Reply::Error(text), _) => put_line(out, b'-', text),
        (Reply::Int(n), _) => put_int_line(out, b':', *n),
        (Reply::Bulk(bytes), _) => put_bulk(out, b'$', &[], bytes),
        (Reply::Nil, Resp2) => out.put_slice(b"$-1\r\n"),
        (Reply::NilArray, Resp2) => out.put_slice(b"*-1\r\n"),
        (Reply::Nil | Reply::NilArray, Resp3) => out.put_slice(b"_\r\n"),
        (Reply::Array(items), _) | (Reply::Set(items) | Reply::Push(items), Resp2) => {
            put_aggregate(out, b'*', items, proto)
        }
        (Reply::Set(items), Resp3) => put_aggregate(out, b'~', items, proto),
        (Reply::Push(items), Resp3) => put_aggregate(out, b'>', items, proto),
        (Reply::Map(pairs), _) => {
            match proto {
                Resp2 => put_len_line(out, b'*', pairs.len().saturating_mul(2)),
                Resp3 => put_len_line(out, b'%', pairs.len()),
            }
            for (key, value) in pairs {
                encode(key, proto, out);
                encode(value, proto, out);
            }
        }
        (Reply::Verbatim(text), Resp2) => put_bulk(out, b'$', &[], text.as_bytes()),
        (Reply::Verbatim(text), Resp3) => put_bulk(out, b'=', b"txt:", text.as_bytes()),
    }
}

/// A CR or LF inside a status or error would end the line early and desynchronise the client;
/// Redis replaces them with spaces, and so do we.
fn put_line(out: &mut BytesMut, kind: u8, text: &str) {
    out.put_u8(kind);
    if text.bytes().any(|b| b == b'\r' || b == b'\n') {
        out.extend(text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    } else {
        out.put_slice(text.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// `prefix` is counted in the length: RESP3's verbatim `txt:` is part of the payload.
fn put_bulk(out: &mut BytesMut, kind: u8, prefix: &[u8], body: &[u8]) {
    put_len_line(out, kind, prefix.len() + body.len());
    out.put_slice(prefix);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn put_aggregate(out: &mut BytesMut, kind: u8, items: &[Reply], proto: Protocol) {
    put_len_line(out, kind, items.len());
    for item in items {
        encode(item, proto, out);
    }
}

fn put_int_line(out: &mut BytesMut, kind: u8, n: i64) {
    out.put_u8(kind);
    if n < 0 {
        out.put_u8(b'-');
    }
    put_decimal(out, n.unsigned_abs());
    out.put_slice(b"\r\n");
}

fn put_len_line(out: &mut BytesMut, kind: u8, len: usize) {
    out.put_u8(kind);
    // usize is at most 64 bits on every target we build for.
    put_decimal(out, len as u64);
    out.put_slice(b"\r\n");
}

/// Formats without allocating: this runs for every reply header.
fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

/// Deeper nesting than this is refused rather than risking the stack on hostile input; Redis
/// itself never nests replies more than a few levels.
const MAX_DEPTH: usize = 256;

/// Reads one reply (RESP2 or RESP3) from the front of `buf`; returns it with the number of bytes
/// it took, or `None` if `buf` holds only part of it.
///
/// `Reply` has no variants for some RESP3 types, so they are mapped, losing the distinction:
/// double `,1.5`, boolean `#t` and big number `(123` become `Status` holding the raw text after
/// the type byte; blob error `!` becomes `Error`; null `_` becomes `Nil` (never `NilArray`).
/// Verbatim `=` keeps only the text after its 3-letter format. Attributes `|` are refused:
/// Redis 7.0 never sends them. Status, error and verbatim text that is not UTF-8 is converted
/// lossily. Incomplete replies are re-read from the start on the next call, which is fine for
/// tests and tools but not meant for bulk transfer.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut pos = 0;
    Ok(parse_at(buf, &mut pos, 0)?.map(|reply| (reply, pos)))
}

fn parse_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Reply>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::InvalidReply("nesting too deep"));
    }
    let start = *pos;
    let rest = buf.get(start..).unwrap_or_default();
    let Some(cr) = rest.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = rest[..cr].split_first() else {
        return Err(ProtocolError::InvalidReply("empty line"));
    };
    *pos = start + cr + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let reply = match kind {
        b'+' | b',' | b'#' | b'(' => Reply::Status(text()),
        b'-' => Reply::Error(text()),
        b':' => Reply::Int(parse_int(line)?),
        b'_' if line.is_empty() => Reply::Nil,
        b'_' => return Err(ProtocolError::InvalidReply("null with payload")),
        b'$' | b'=' | b'!' => {
            let len = parse_int(line)?;
            if len == -1 && kind == b'$' {
                return Ok(Some(Reply::Nil));
            }
            let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidReply("bad length"))?;
            let Some(body) = take_body(buf, pos, len)? else {
                return Ok(None);
            };
            match kind {
                b'$' => Reply::Bulk(bytes::Bytes::copy_from_slice(body)),
                b'!' => Reply::Error(String::from_utf8_lossy(body).into_owned()),
                _ => match body.get(3) {
                    Some(b':') => Reply::Verbatim(String::from_utf8_lossy(&body[4..]).into_owned()),
                    _ => return Err(ProtocolError::InvalidReply("verbatim without format")),
                },
            }
        }
        b'*' | b'~' | b'>' | b'%' => {
            let count = parse_int(line)?;
            if count == -1 && kind == b'*' {
                return Ok(Some(Reply::NilArray));
            }
            let count = usize::try_from(count).map_err(|_| ProtocolError::InvalidReply("bad count"))?;
            // The count is untrusted: preallocate a little, let real elements grow the vector.
            if kind == b'%' {
                let mut pairs = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let Some(key) = parse_at(buf, pos, depth + 1)? else {
                        return Ok(None);
                    };
                    let Some(value) = parse_at(buf, pos, depth + 1)? else {
                        return Ok(None);
                    };
                    pairs.push((key, value));
                }
                Reply::Map(pairs)
            } else {
                let mut items = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let Some(item) = parse_at(buf, pos, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                }
                match kind {
                    b'~' => Reply::Set(items),
                    b'>' => Reply::Push(items),
                    _ => Reply::Array(items),
                }
            }
        }
        _ => return Err(ProtocolError::InvalidReply("unknown type byte")),
    };
    Ok(Some(reply))
}

fn parse_int(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()).ok_or(ProtocolError::InvalidReply("bad integer"))
}

/// The `len` payload bytes at `*pos` and their CRLF, or `None` if not all have arrived.
fn take_body<'a>(buf: &'a [u8], pos: &mut usize, len: usize) -> Result<Option<&'a [u8]>, ProtocolError> {
    let body_end = pos.checked_add(len).ok_or(ProtocolError::InvalidReply("bad length"))?;
    let end = body_end.checked_add(2).ok_or(ProtocolError::InvalidReply("bad length"))?;
    let Some(tail) = buf.get(body_end..end) else {
        return Ok(None);
    };
    if tail != b"\r\n" {
        return Err(ProtocolError::InvalidReply("payload not followed by CRLF"));
    }
    let body = &buf[*pos..body_end];
    *pos = end;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn encoded(reply: &Reply, proto: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(reply, proto, &mut out);
        out.to_vec()
    }

    fn bulk(s: &str) -> Reply {
        Reply::bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// One value of every variant, nested, so each appears inside aggregates too.
    fn every_variant() -> Vec<Reply> {
        let leaves = vec![
            Reply::ok(),
            Reply::err("ERR no such key"),
            Reply::Int(0),
            Reply::Int(i64::MIN),
            Reply::Int(i64::MAX),
            bulk(""),
            Reply::bulk(Bytes::from_static(b"bin\r\n\0\xff")),
            Reply::Nil,
            Reply::NilArray,
            Reply::Verbatim("# Server\r\nredis_version:7.0.15\r\n".into()),
            Reply::Array(vec![]),
        ];
        let mut all = leaves.clone();
        all.push(Reply::Array(leaves.clone()));
        all.push(Reply::Set(leaves.clone()));
        all.push(Reply::Push(vec![bulk("message"), bulk("ch"), Reply::Array(leaves.clone())]));
        all.push(Reply::Map(vec![(bulk("k"), Reply::Map(vec![(Reply::Int(1), Reply::Set(leaves))]))]));
        all
    }

    /// What reading back loses: RESP2 has no map, set, push, verbatim or typed null; RESP3's
    /// single null cannot say which kind of nil it was.
    fn as_read_back(reply: &Reply, proto: Protocol) -> Reply {
        let all = |items: &[Reply]| items.iter().map(|r| as_read_back(r, proto)).collect();
        match (reply, proto) {
            (Reply::NilArray, Protocol::Resp3) => Reply::Nil,
            (Reply::Array(items), _) => Reply::Array(all(items)),
            (Reply::Set(items) | Reply::Push(items), Protocol::Resp2) => Reply::Array(all(items)),
            (Reply::Set(items), Protocol::Resp3) => Reply::Set(all(items)),
            (Reply::Push(items), Protocol::Resp3) => Reply::Push(all(items)),
            (Reply::Map(pairs), Protocol::Resp2) => {
                Reply::Array(pairs.iter().flat_map(|(k, v)| [as_read_back(k, proto), as_read_back(v, proto)]).collect())
            }
            (Reply::Map(pairs), Protocol::Resp3) => {
                Reply::Map(pairs.iter().map(|(k, v)| (as_read_back(k, proto), as_read_back(v, proto))).collect())
            }
            (Reply::Verbatim(text), Protocol::Resp2) => bulk(text),
            (other, _) => other.clone(),
        }
    }

    #[test]
    fn round_trip_every_variant_in_both_protocols() {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            for reply in every_variant() {
                let bytes = encoded(&reply, proto);
                let (read, used) = parse_reply(&bytes).unwrap().unwrap();
                assert_eq!(used, bytes.len(), "{reply:?} {proto:?}");
                assert_eq!(read, as_read_back(&reply, proto), "{proto:?}");
                for cut in 0..bytes.len() {
                    assert_eq!(parse_reply(&bytes[..cut]), Ok(None), "{reply:?} {proto:?} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn parse_reply_reads_one_of_several() {
        let mut out = BytesMut::new();
        encode(&Reply::ok(), Protocol::Resp2, &mut out);
        encode(&Reply::Int(7), Protocol::Resp2, &mut out);
        let (first, used) = parse_reply(&out).unwrap().unwrap();
        assert_eq!((first, used), (Reply::ok(), 5));
        assert_eq!(parse_reply(&out[used..]), Ok(Some((Reply::Int(7), 4))));
    }

    /// Expected bytes were captured from redis-server 7.0.15 (HGETALL, SMEMBERS, GET of a
    /// missing key, BLPOP timeout, MEMORY DOCTOR on an empty instance) after HELLO 2 / HELLO 3.
    #[test]
    fn golden_bytes_match_redis() {
        use Protocol::{Resp2, Resp3};
        let map = Reply::Map(vec![(bulk("f"), bulk("v"))]);
        let set = Reply::Set(vec![bulk("a")]);
        let doctor = "Hi Sam, this instance is empty or is using very little memory, my issues \
            detector can't be used in these conditions. Please, leave for your mission on Earth \
            and fill it with some data. The new Sam and I will be back to our programming as \
            soon as I finished rebooting.\n";
        let verbatim = Reply::Verbatim(doctor.into());
        let cases: Vec<(Reply, Protocol, Vec<u8>)> = vec![
            (map.clone(), Resp2, b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n".to_vec()),
            (map, Resp3, b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n".to_vec()),
            (set.clone(), Resp2, b"*1\r\n$1\r\na\r\n".to_vec()),
            (set, Resp3, b"~1\r\n$1\r\na\r\n".to_vec()),
            (Reply::Nil, Resp2, b"$-1\r\n".to_vec()),
            (Reply::Nil, Resp3, b"_\r\n".to_vec()),
            (Reply::NilArray, Resp2, b"*-1\r\n".to_vec()),
            (Reply::NilArray, Resp3, b"_\r\n".to_vec()),
            (Reply::Array(vec![]), Resp3, b"*0\r\n".to_vec()),
            (verbatim.clone(), Resp2, [&b"$268\r\n"[..], doctor.as_bytes(), b"\r\n"].concat()),
            (verbatim, Resp3, [&b"=272\r\ntxt:"[..], doctor.as_bytes(), b"\r\n"].concat()),
            (Reply::Push(vec![bulk("message")]), Resp3, b">1\r\n$7\r\nmessage\r\n".to_vec()),
            (Reply::Push(vec![bulk("message")]), Resp2, b"*1\r\n$7\r\nmessage\r\n".to_vec()),
            (Reply::Int(-42), Resp2, b":-42\r\n".to_vec()),
            (Reply::ok(), Resp3, b"+OK\r\n".to_vec()),
        ];
        for (reply, proto, expected) in cases {
            assert_eq!(encoded(&reply, proto), expected, "{reply:?} {proto:?}");
        }
    }

    #[test]
    fn line_breaks_in_status_and_error_become_spaces() {
        assert_eq!(encoded(&Reply::Status("a\r\nb".into()), Protocol::Resp2), b"+a  b\r\n");
        assert_eq!(encoded(&Reply::err("ERR x\ny"), Protocol::Resp3), b"-ERR x y\r\n");
        // What Redis 7.0.15 sends for `*1\r\n\r\n`.
        let err = ProtocolError::ExpectedDollar(b'\r').reply();
        assert_eq!(encoded(&err, Protocol::Resp2), b"-ERR Protocol error: expected '$', got ' '\r\n");
    }

    #[test]
    fn resp3_types_without_a_variant_are_mapped() {
        let cases: [(&[u8], Reply); 6] = [
            (b",1.5\r\n", Reply::Status("1.5".into())),
            (b"#t\r\n", Reply::Status("t".into())),
            (b"(12345678901234567890\r\n", Reply::Status("12345678901234567890".into())),
            (b"!9\r\nERR oops!\r\n", Reply::err("ERR oops!")),
            (b"=7\r\nmkd:abc\r\n", Reply::Verbatim("abc".into())),
            (b"_\r\n", Reply::Nil),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_reply(input), Ok(Some((expected, input.len()))), "{input:?}");
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        for input in [
            &b"?\r\n"[..],
            b"\r\n",
            b"|1\r\n+a\r\n+b\r\n+c\r\n",
            b":x\r\n",
            b"$-2\r\n",
            b"*-2\r\n",
            b"$1\r\nabc\r\n",
            b"=2\r\nab\r\n",
            b"_x\r\n",
            b"$18446744073709551615\r\n",
        ] {
            assert!(matches!(parse_reply(input), Err(ProtocolError::InvalidReply(_))), "{input:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(parse_reply(deep.as_bytes()).is_err());
    }

    /// The reader is also used on bytes from the network: it must never panic.
    #[test]
    fn random_replies_never_panic() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"+-:$*_%~=>,#(!|\r\n0123456789-txt";
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let input: Vec<u8> = (0..len).map(|_| alphabet[next() as usize % alphabet.len()]).collect();
            if let Ok(Some((_, used))) = parse_reply(&input) {
                assert!(used > 0 && used <= input.len());
            }
        }
    }
}
