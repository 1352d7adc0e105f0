//! Reading one JSON value of the configuration: Hipache's loose forms (numbers written as
//! strings, one address or an array) and errors that name the dotted key.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::ConfigError;

pub(super) type Obj = Map<String, Value>;

/// A present, non-null value. `null` means "use the default", like a missing key.
pub(super) fn get<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(super) fn section<'a>(top: &'a Obj, name: &str, empty: &'a Obj) -> Result<&'a Obj, ConfigError> {
    get(top, name).map_or(Ok(empty), |v| as_object(v, name))
}

pub(super) fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

pub(super) fn expected(key: &str, what: &str, got: &Value) -> ConfigError {
    invalid(key, format!("expected {what}, got {}", show(got)))
}

/// The offending value as JSON, cut short so a huge array does not flood the terminal.
pub(super) fn show(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

pub(super) fn as_object<'a>(v: &'a Value, key: &str) -> Result<&'a Obj, ConfigError> {
    v.as_object().ok_or_else(|| expected(key, "an object", v))
}

pub(super) fn string<'a>(v: &'a Value, key: &str) -> Result<&'a str, ConfigError> {
    v.as_str().ok_or_else(|| expected(key, "a string", v))
}

pub(super) fn boolean(v: &Value, key: &str) -> Result<bool, ConfigError> {
    v.as_bool().ok_or_else(|| expected(key, "true or false", v))
}

/// Numbers may be written as strings ("30"): Node coerced them, so old files may do that.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// Seconds, fractional allowed (`0.5`), never negative.
pub(super) fn seconds(v: &Value, key: &str) -> Result<Duration, ConfigError> {
    let secs = number(v).filter(|f| *f >= 0.0).ok_or_else(|| expected(key, "a non-negative number", v))?;
    Duration::try_from_secs_f64(secs).map_err(|_| expected(key, "a number of seconds that fits", v))
}

pub(super) fn integer(v: &Value, key: &str) -> Result<u64, ConfigError> {
    let exact = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    exact.ok_or_else(|| expected(key, "a non-negative integer", v))
}

/// A whole number of at least `min` `unit` (the error names both).
pub(super) fn at_least(v: &Value, key: &str, min: u64, unit: &str) -> Result<u64, ConfigError> {
    match integer(v, key)? {
        n if n < min => Err(invalid(key, format!("expected at least {min} {unit}, got {n}"))),
        n => Ok(n),
    }
}

pub(super) fn to_usize(n: u64, key: &str) -> Result<usize, ConfigError> {
    usize::try_from(n).map_err(|_| invalid(key, "too large"))
}

/// An optional size of at least `min` `unit`s; `default` when the key is absent.
pub(super) fn size_at_least(
    v: Option<&Value>,
    key: &str,
    min: u64,
    unit: &str,
    default: usize,
) -> Result<usize, ConfigError> {
    v.map_or(Ok(default), |v| to_usize(at_least(v, key, min, unit)?, key))
}

pub(super) fn port(v: &Value, key: &str) -> Result<u16, ConfigError> {
    integer(v, key).ok().and_then(|n| u16::try_from(n).ok()).ok_or_else(|| expected(key, "a port number (0-65535)", v))
}

/// Hipache's "a value or an array of values", each element named `key[i]`.
pub(super) fn one_or_many<'a>(v: &'a Value, key: &str) -> Result<Vec<(&'a Value, String)>, ConfigError> {
    Ok(match v {
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| (v, format!("{key}[{i}]"))).collect(),
        other => vec![(other, key.to_owned())],
    })
}

pub(super) fn paths(v: &Value, key: &str) -> Result<Vec<PathBuf>, ConfigError> {
    one_or_many(v, key)?.into_iter().map(|(v, k)| string(v, &k).map(PathBuf::from)).collect()
}

/// A listen address: an IP ("0.0.0.0", "::", "[::1]"), "localhost", or an IP with its own
/// port ("127.0.0.1:8080", "[::1]:8080"). Other host names are refused: we bind before any
/// resolver is worth trusting, and a name that resolves to several addresses is ambiguous.
pub(super) fn bind_addr(v: &Value, key: &str) -> Result<(IpAddr, Option<u16>), ConfigError> {
    let s = string(v, key)?.trim();
    if s == "localhost" {
        return Ok((IpAddr::V4(Ipv4Addr::LOCALHOST), None));
    }
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    match socket_addr(v, key) {
        Ok(addr) => Ok((addr.ip(), Some(addr.port()))),
        Err(_) => Err(expected(key, "an IP address such as \"0.0.0.0\" or \"::\"", v)),
    }
}

/// "ip:port" (or "localhost:port"); port 0 is allowed so tests can ask for ephemeral ports.
pub(super) fn socket_addr(v: &Value, key: &str) -> Result<SocketAddr, ConfigError> {
    let s = string(v, key)?.trim();
    let parsed = match s.strip_prefix("localhost:") {
        Some(port) => port.parse::<u16>().ok().map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)),
        None => s.parse::<SocketAddr>().ok(),
    };
    parsed.ok_or_else(|| expected(key, "\"ip:port\"", v))
}
