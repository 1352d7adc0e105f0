//! Hipache's access log (§4.2), written off the request path.
//!
//! Requests send a [`Record`] over a bounded channel to a writer task on their own worker
//! thread, which formats lines into a buffer and appends whole buffers to the shared output.
//! When the channel is full (the disk cannot keep up) records are dropped and counted rather
//! than slowing requests. `SIGUSR1` reopens the file, for logrotate, as Hipache's master did.
//!
//! The line format is Hipache's:
//! `<remote> - - [DD/Mon/YYYY:HH:MM:SS +0000] "<METHOD> <url> HTTP/<ver>" <status> <bytes>
//! "<referer>" "<user-agent>" "<identifier>" <total_s> <backend_s>`.
//! Deliberate differences (§9.2): `<bytes>` is this response's body size (Hipache logged the
//! connection's cumulative bytes written, headers included); `<remote>` has no `::ffff:`
//! prefix; the year is UTC like the rest of the timestamp.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Uri, Version};
use tokio::sync::mpsc;

use super::body::OnEnd;
use crate::signals;

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// Names the config key and both ways out, because the usual cause is the default path
    /// (`/var/log/hipache/access.log`) on a machine where we may not create it.
    #[error(
        "server.accessLog: cannot open {path}: {source} (set server.accessLog to a writable file, \"-\" for stdout, or null to turn the log off)"
    )]
    Open { path: PathBuf, source: std::io::Error },
}

/// What the client asked, as the log line shows it. Each HTTP path fills it from its own
/// view of the request head.
#[derive(Debug)]
pub struct Request {
    /// The `X-Real-IP` the backend saw: the client's own header, or ours.
    pub remote: Option<HeaderValue>,
    pub time: SystemTime,
    pub method: Method,
    /// The request target as an HTTP/1 client sends it, also for HTTP/2 clients.
    pub uri: Uri,
    pub version: Version,
    pub referer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
}

/// One request, complete but for the numbers known only when the response body ends.
#[derive(Debug)]
pub struct Record {
    pub request: Request,
    pub status: u16,
    pub identifier: Bytes,
    pub start: Instant,
    pub backend_start: Instant,
    pub bytes: u64,
    pub total: Duration,
    pub backend: Duration,
}

/// Where every worker's lines go: the open file (or stdout), reopened on `SIGUSR1`/`SIGHUP`.
/// Workers write whole buffers of complete lines under the lock, so lines never interleave.
pub struct AccessLogOutput {
    target: Target,
    out: Mutex<Box<dyn Write + Send>>,
}

impl AccessLogOutput {
    /// Opens the destination now (so a bad path fails start-up) and starts reopening it on
    /// the signals, on the calling (the node's) runtime.
    pub fn open(target: Target) -> Result<Arc<AccessLogOutput>, AccessLogError> {
        let out = Mutex::new(open(&target)?);
        let output = Arc::new(AccessLogOutput { target, out });
        tokio::spawn(reopen_on_signals(Arc::downgrade(&output)));
        Ok(output)
    }

    fn write(&self, buf: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if out.write_all(buf).and_then(|()| out.flush()).is_err() {
            tracing::warn!("access log write failed");
        }
    }

    /// Opens the destination again (logrotate has moved the old file away).
    fn reopen(&self) {
        match open(&self.target) {
            Ok(f) => {
                *self.out.lock().unwrap_or_else(|e| e.into_inner()) = f;
                tracing::info!("access log reopened");
            }
            Err(e) => tracing::warn!(error = %e, "access log reopen failed; keeping the old file"),
        }
    }
}

/// A worker's handle: requests send their [`Record`] to the worker's own [`LogWriter`].
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Record>,
}

/// Records waiting for a worker's writer; past this, new records are dropped.
const QUEUE: usize = 65_536;

/// A worker writes its buffered lines at this size even while more records are queued.
const WRITE_AT: usize = 64 * 1024;

impl AccessLog {
    /// A worker's handle and the writer to run on the same worker thread: formatting and
    /// buffering stay on the thread that served the request, as in nginx's workers.
    pub fn new(output: &Arc<AccessLogOutput>) -> (AccessLog, LogWriter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (AccessLog { tx }, LogWriter { rx, output: output.clone() })
    }

    /// Logs `request`, answered `status` by `identifier`'s backend, once the response body
    /// has ended, with its byte count and the times since `start` and `backend_start`.
    pub fn on_end(
        &self,
        request: Request,
        status: u16,
        identifier: Bytes,
        start: Instant,
        backend_start: Instant,
    ) -> Box<dyn OnEnd> {
        let record = Record {
            request,
            status,
            identifier,
            start,
            backend_start,
            bytes: 0,
            total: Duration::ZERO,
            backend: Duration::ZERO,
        };
        Box::new(Pending { log: self.clone(), record })
    }

    fn send(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            metrics::counter!("hipache_access_log_dropped_total").increment(1);
        }
    }
}

struct Pending {
    log: AccessLog,
    record: Record,
}

impl OnEnd for Pending {
    fn ended(self: Box<Self>, bytes: u64) {
        let Pending { log, mut record } = *self;
        record.bytes = bytes;
        let now = Instant::now();
        record.total = now.saturating_duration_since(record.start);
        record.backend = now.saturating_duration_since(record.backend_start);
        log.send(record);
    }
}

fn open(target: &Target) -> Result<Box<dyn Write + Send>, AccessLogError> {
    match target {
        Target::Stdout => Ok(Box::new(std::io::stdout())),
        Target::File(path) => {
            let failed = |source| AccessLogError::Open { path: path.clone(), source };
            // Hipache's default path lives in a directory a fresh machine does not have yet.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(failed)?;
            }
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(failed)?;
            Ok(Box::new(file))
        }
    }
}

/// Formats one worker's records and appends them to the output.
pub struct LogWriter {
    rx: mpsc::Receiver<Record>,
    output: Arc<AccessLogOutput>,
}

impl LogWriter {
    /// Runs until every [`AccessLog`] handle of its worker is gone. Writes what is queued,
    /// writing only when the queue is empty or [`WRITE_AT`] bytes are buffered: batches the
    /// syscalls under load and keeps the file current when idle.
    pub async fn run(mut self) {
        let mut buf = Vec::with_capacity(WRITE_AT + 1024);
        let mut stamp = Timestamp::default();
        while let Some(record) = self.rx.recv().await {
            format_line(&mut buf, &mut stamp, &record);
            if buf.len() >= WRITE_AT || self.rx.is_empty() {
                self.output.write(&buf);
                buf.clear();
            }
        }
        if !buf.is_empty() {
            self.output.write(&buf);
        }
    }
}

/// Reopens the output on each `SIGUSR1` (Hipache's reopen signal) and `SIGHUP` (which Hipache
/// did not handle: it killed the process; most daemons' logrotate recipes send it), while the
/// output lives.
async fn reopen_on_signals(output: Weak<AccessLogOutput>) {
    use tokio::signal::unix::SignalKind;
    let lost = "it cannot reopen the access log";
    let mut usr1 = signals::install(SignalKind::user_defined1(), "SIGUSR1", lost);
    let mut hup = signals::install(SignalKind::hangup(), "SIGHUP", lost);
    loop {
        tokio::select! {
            Some(()) = signals::next(&mut usr1) => {}
            Some(()) = signals::next(&mut hup) => {}
            else => return,
        }
        let Some(output) = output.upgrade() else { return };
        output.reopen();
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// The bracketed timestamp of the second last formatted, `[DD/Mon/YYYY:HH:MM:SS +0000]`: a
/// worker's lines mostly share their second, as nginx's cached log time does.
#[derive(Default)]
pub struct Timestamp {
    secs: Option<u64>,
    text: Vec<u8>,
}

impl Timestamp {
    fn of(&mut self, time: SystemTime) -> &[u8] {
        let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if self.secs != Some(secs) {
            let (year, month, day) = civil_from_days((secs / 86_400) as i64);
            let tod = secs % 86_400;
            self.text.clear();
            let _ = write!(
                self.text,
                "[{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000]",
                day,
                MONTHS[(month - 1) as usize],
                year,
                tod / 3600,
                tod % 3600 / 60,
                tod % 60
            );
            self.secs = Some(secs);
        }
        &self.text
    }
}

/// Appends one line (with its newline) to `out`. Numbers go through `itoa` and the timestamp
/// through `stamp`'s cache rather than `format!`: this runs once per request on the worker
/// that served it, and the formatting machinery was most of the log's cost (perf).
pub fn format_line(out: &mut Vec<u8>, stamp: &mut Timestamp, record: &Record) {
    let (r, req) = (record, &record.request);
    let version: &[u8] = match req.version {
        Version::HTTP_09 => b"0.9",
        Version::HTTP_10 => b"1.0",
        Version::HTTP_2 => b"2.0",
        Version::HTTP_3 => b"3.0",
        _ => b"1.1",
    };
    let mut n = itoa::Buffer::new();
    push_text(out, req.remote.as_ref().map(HeaderValue::as_bytes).unwrap_or(b"-"));
    out.extend_from_slice(b" - - ");
    out.extend_from_slice(stamp.of(req.time));
    out.extend_from_slice(b" \"");
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    let _ = write!(out, "{}", req.uri);
    out.extend_from_slice(b" HTTP/");
    out.extend_from_slice(version);
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(n.format(r.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(n.format(r.bytes).as_bytes());
    out.extend_from_slice(b" \"");
    push_text(out, req.referer.as_ref().map(HeaderValue::as_bytes).unwrap_or(b""));
    out.extend_from_slice(b"\" \"");
    push_text(out, req.user_agent.as_ref().map(HeaderValue::as_bytes).unwrap_or(b""));
    out.extend_from_slice(b"\" \"");
    push_text(out, &r.identifier);
    out.extend_from_slice(b"\" ");
    push_seconds(out, r.total);
    out.push(b' ');
    push_seconds(out, r.backend);
    out.push(b'\n');
}

/// Seconds with three decimals (`0.012`), rounded to the nearest millisecond.
fn push_seconds(out: &mut Vec<u8>, d: Duration) {
    let ms = (d.as_micros() + 500) / 1000;
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(ms / 1000).as_bytes());
    out.push(b'.');
    let frac = n.format(ms % 1000 + 1000);
    out.extend_from_slice(&frac.as_bytes()[1..]);
}

/// Appends client-controlled text made safe for one log line: UTF-8 as is, but quotes and
/// control characters as `?` and invalid bytes as U+FFFD (as `String::from_utf8_lossy`).
fn push_text(out: &mut Vec<u8>, b: &[u8]) {
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            let c = if c == '"' || c.is_control() { '?' } else { c };
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(char::REPLACEMENT_CHARACTER.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// algorithm): the log needs a UTC date and nothing else from a date library.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_hipache() {
        let now = Instant::now();
        let record = Record {
            request: Request {
                remote: Some(HeaderValue::from_static("1.2.3.4")),
                time: UNIX_EPOCH + Duration::from_secs(1_764_060_245), // 2025-11-25 08:44:05 UTC
                method: Method::GET,
                uri: Uri::from_static("/a?b=1"),
                version: Version::HTTP_11,
                referer: None,
                user_agent: Some(HeaderValue::from_static("curl/8 \"x\"")),
            },
            status: 200,
            identifier: Bytes::from("app"),
            start: now,
            backend_start: now,
            bytes: 13,
            total: Duration::from_millis(12),
            backend: Duration::from_micros(10_400),
        };
        let mut line = Vec::new();
        format_line(&mut line, &mut Timestamp::default(), &record);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "1.2.3.4 - - [25/Nov/2025:08:44:05 +0000] \"GET /a?b=1 HTTP/1.1\" 200 13 \"\" \"curl/8 ?x?\" \"app\" 0.012 0.010\n"
        );
    }

    #[test]
    fn seconds_have_three_decimals_rounded_to_the_millisecond() {
        for (d, text) in [
            (Duration::ZERO, "0.000"),
            (Duration::from_micros(10_400), "0.010"),
            (Duration::from_micros(10_500), "0.011"),
            (Duration::from_millis(61_005), "61.005"),
            (Duration::from_micros(999_600), "1.000"),
        ] {
            let mut out = Vec::new();
            push_seconds(&mut out, d);
            assert_eq!(String::from_utf8(out).unwrap(), text, "{d:?}");
        }
    }

    #[test]
    fn the_cached_timestamp_follows_the_clock() {
        let mut stamp = Timestamp::default();
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(stamp.of(at(1_764_060_245)), b"[25/Nov/2025:08:44:05 +0000]");
        assert_eq!(stamp.of(at(1_764_060_245)), b"[25/Nov/2025:08:44:05 +0000]");
        assert_eq!(stamp.of(at(1_767_225_600)), b"[01/Jan/2026:00:00:00 +0000]");
    }

    #[test]
    fn client_text_cannot_break_the_line() {
        let mut out = Vec::new();
        push_text(&mut out, b"a\"b\x01\nc\xffd\xe2\x82e\xc3\xa9");
        assert_eq!(String::from_utf8(out).unwrap(), "a?b??c\u{FFFD}d\u{FFFD}e\u{e9}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
