//! Hipache's access log (§4.2), written off the request path.
//!
//! Requests send a [`Record`] over a bounded channel; one task formats and appends. When the
//! channel is full (the disk cannot keep up) records are dropped and counted rather than
//! slowing requests. `SIGUSR1` reopens the file, for logrotate, as Hipache's master did.
//!
//! The line format is Hipache's:
//! `<remote> - - [DD/Mon/YYYY:HH:MM:SS +0000] "<METHOD> <url> HTTP/<ver>" <status> <bytes>
//! "<referer>" "<user-agent>" "<identifier>" <total_s> <backend_s>`.
//! Deliberate differences (§9.2): `<bytes>` is this response's body size (Hipache logged the
//! connection's cumulative bytes written, headers included); `<remote>` has no `::ffff:`
//! prefix; the year is UTC like the rest of the timestamp.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Uri, Version};
use tokio::sync::mpsc;

use super::body::OnEnd;

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

#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Record>,
}

/// Records waiting for the writer; past this, new records are dropped.
const QUEUE: usize = 65_536;

impl AccessLog {
    /// Opens the destination now (so a bad path fails start-up) and spawns the writer.
    pub fn start(target: Target) -> Result<AccessLog, AccessLogError> {
        let out = open(&target)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(target, out, rx));
        Ok(AccessLog { tx })
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
        record.total = record.start.elapsed();
        record.backend = record.backend_start.elapsed();
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

async fn write_loop(target: Target, out: Box<dyn Write + Send>, mut rx: mpsc::Receiver<Record>) {
    let mut out = std::io::BufWriter::new(out);
    // SIGUSR1 is Hipache's reopen signal; SIGHUP, which Hipache did not handle (it killed the
    // process), means the same here, as it does for most daemons' logrotate recipes.
    let handler = |kind: tokio::signal::unix::SignalKind, name: &str| match tokio::signal::unix::signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "{name} handler not installed; it cannot reopen the access log");
            None
        }
    };
    let mut usr1 = handler(tokio::signal::unix::SignalKind::user_defined1(), "SIGUSR1");
    let mut hup = handler(tokio::signal::unix::SignalKind::hangup(), "SIGHUP");
    let mut line = String::with_capacity(256);
    loop {
        tokio::select! {
            record = rx.recv() => {
                let Some(record) = record else { break };
                line.clear();
                format_line(&mut line, &record);
                // Write what is queued, flushing only when the queue is empty: batches the
                // syscalls under load and keeps the file current when idle.
                if out.write_all(line.as_bytes()).is_err() || (rx.is_empty() && out.flush().is_err()) {
                    tracing::warn!("access log write failed");
                }
            }
            Some(()) = next(&mut usr1) => reopen(&target, &mut out),
            Some(()) = next(&mut hup) => reopen(&target, &mut out),
        }
    }
    let _ = out.flush();
}

/// The next delivery of a signal, or never when its handler could not be installed.
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal.as_mut() {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Opens the destination again (logrotate has moved the old file away).
fn reopen(target: &Target, out: &mut std::io::BufWriter<Box<dyn Write + Send>>) {
    let _ = out.flush();
    match open(target) {
        Ok(f) => {
            *out = std::io::BufWriter::new(f);
            tracing::info!("access log reopened");
        }
        Err(e) => tracing::warn!(error = %e, "access log reopen failed; keeping the old file"),
    }
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Formats one line (with its newline) into `out`.
pub fn format_line(out: &mut String, record: &Record) {
    let (r, req) = (record, &record.request);
    let secs = req.time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let tod = secs % 86_400;
    let version = match req.version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2.0",
        Version::HTTP_3 => "3.0",
        _ => "1.1",
    };
    let _ = writeln!(
        out,
        "{} - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"{} {} HTTP/{}\" {} {} \"{}\" \"{}\" \"{}\" {:.3} {:.3}",
        text(req.remote.as_ref().map(HeaderValue::as_bytes).unwrap_or(b"-")),
        day,
        MONTHS[(month - 1) as usize],
        year,
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        req.method,
        req.uri,
        version,
        r.status,
        r.bytes,
        text(req.referer.as_ref().map(HeaderValue::as_bytes).unwrap_or(b"")),
        text(req.user_agent.as_ref().map(HeaderValue::as_bytes).unwrap_or(b"")),
        text(&r.identifier),
        r.total.as_secs_f64(),
        r.backend.as_secs_f64(),
    );
}

/// Client-controlled text, made safe for one log line (no quotes or control bytes).
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().map(|c| if c == '"' || c.is_control() { '?' } else { c }).collect()
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
        let mut line = String::new();
        format_line(&mut line, &record);
        assert_eq!(
            line,
            "1.2.3.4 - - [25/Nov/2025:08:44:05 +0000] \"GET /a?b=1 HTTP/1.1\" 200 13 \"\" \"curl/8 ?x?\" \"app\" 0.012 0.010\n"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
