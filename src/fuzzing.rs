//! Entry points for the fuzz targets under `fuzz/`: each takes untrusted bytes the way the
//! node meets them and runs the parser on them, so every target is one call and reaches the
//! parsers private to their modules. A panic anywhere below is a finding. Built only with the
//! `fuzzing` feature.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;

use crate::proxy::forward::ClientInfo;
use crate::proxy::h1::chunked::ChunkedScanner;
use crate::proxy::h1::head::{self, Parsed, MAX_HEADERS};
use crate::raft::snapshot_body::SnapshotBody;
use crate::raft::types::Entry;
use crate::resp::decode::{decode, Limits};
use crate::routing::backend::Backend;
use crate::routing::certs::certified_key_from_hash;
use crate::routing::host::Host;

/// A client's bytes on the RESP port: every command decoded until the buffer runs dry or an
/// error (which the server answers and closes on). Small limits, so the fuzzer reaches them.
pub fn resp(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let limits = Limits { max_bulk_len: 4096, max_multibulk_len: 64 };
    while let Ok(Some(_)) = decode(&mut buf, &limits) {}
}

/// A client's request head on the HTTP/1.1 fast path, and the head sent on to the backend.
pub fn http_request(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    if let Parsed::Done(req) = head::parse_request(data, &mut headers, 64 * 1024) {
        let client = ClientInfo::new(std::net::Ipv4Addr::LOCALHOST.into(), false, 80);
        let mut out = Vec::new();
        req.write_backend_head(&client, true, &mut out);
    }
}

/// A backend's response head, for a GET and for a HEAD request.
pub fn http_response(data: &[u8]) {
    for head_request in [false, true] {
        let mut out = Vec::new();
        let _ = head::parse_response(data, head_request, false, b"Sat, 28 Nov 2026 00:00:00 GMT", &mut out);
    }
}

/// A backend's chunked body, fed whole and then split at the first byte's value, as reads
/// may split it.
pub fn chunked(data: &[u8]) {
    let _ = ChunkedScanner::default().feed(data);
    let split = data.first().map_or(0, |&b| usize::from(b).min(data.len()));
    let mut scanner = ChunkedScanner::default();
    if let Ok(None) = scanner.feed(&data[..split]) {
        let _ = scanner.feed(&data[split..]);
    }
}

/// A request's `Host` (or `:authority`) and the frontend keys a lookup would try.
pub fn host(data: &[u8]) {
    if let Ok(host) = Host::parse(data) {
        let _ = host.candidates().count();
    }
}

/// A backend URL as a tool stored it in a `frontend:` list.
pub fn backend_url(data: &[u8]) {
    let backend = Backend::parse(&Bytes::copy_from_slice(data));
    let _ = backend.url_header();
}

/// A configuration file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::from_json(text, std::path::Path::new("fuzz.json"));
    }
}

/// A `tls:<name>` hash: the bytes split at the first NUL into the `cert` and `key` fields.
pub fn pem(data: &[u8]) {
    let (cert, key) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let fields: IndexMap<Bytes, Bytes> = [
        (Bytes::from_static(b"cert"), Bytes::copy_from_slice(cert)),
        (Bytes::from_static(b"key"), Bytes::copy_from_slice(key)),
    ]
    .into_iter()
    .collect();
    let _ = certified_key_from_hash(&fields);
}

/// What a data dir or a peer hands the node: a snapshot body, a Raft log entry.
pub fn raft_data(data: &[u8]) {
    let _ = SnapshotBody::decode(data);
    let _ = postcard::from_bytes::<Entry>(data);
}
