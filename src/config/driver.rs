//! Hipache's `driver` URL, `redis://[user]:password@host:port/database#prefix`
//! (docs/hipache-behaviour.md §5.1), reduced to what still means something with an embedded
//! store: the database and the key prefix that Hipache's tools write routes under, and the
//! password they authenticate with. Host and port are ignored: the store is this node.
//!
//! Parsed by hand rather than with the `url` crate because Hipache used Node's legacy
//! `url.parse`, which accepts forms WHATWG URL parsing rejects or reads differently
//! (`redis:`, `redis://:7001/#pfx` with a port and no host), and users' files hold those forms.

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::Serialize;

use super::ConfigError;
use crate::keyspace::DATABASES;
use crate::routing::RoutingKeys;

/// What the first `driver` URL says about where routes live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Driver {
    /// The database Hipache `SELECT`ed (the URL's path); 0 when the path is empty.
    pub db: usize,
    /// Put in front of `frontend:` and `dead:` keys (the URL's `#fragment`).
    pub prefix: String,
    /// The password from the URL's userinfo (after its last `:`), percent-decoded.
    pub password: Option<String>,
}

impl Driver {
    /// Where the proxy and the admin API find the routing keys.
    pub fn routing_keys(&self) -> RoutingKeys {
        RoutingKeys { db: self.db, prefix: Bytes::from(self.prefix.clone()) }
    }

    /// Parses one URL; `key` names it in errors (`driver`, `driver[0]`).
    pub fn parse(url: &str, key: &str) -> Result<Driver, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { key: key.to_owned(), message };
        let (scheme, rest) = url.split_once(':').ok_or_else(|| {
            invalid(format!("expected a URL such as \"redis://:password@host:6379/0#prefix\", got {url:?}"))
        })?;
        // Hipache strips the scheme to letters and a trailing "s" (TLS) except for redis.
        let name: String = scheme.chars().filter(char::is_ascii_alphabetic).collect::<String>().to_ascii_lowercase();
        if name != "redis" {
            return Err(invalid(format!(
                "only redis:// driver URLs can be read (got the {name:?} driver): routes are kept in the embedded store's Redis keyspace"
            )));
        }
        let (rest, prefix) = match rest.split_once('#') {
            Some((r, p)) => (r, p),
            None => (rest, ""),
        };
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let password = authority
            .rsplit_once('@')
            .and_then(|(userinfo, _)| userinfo.rsplit_once(':').map(|(_, pw)| pw))
            .filter(|pw| !pw.is_empty())
            .map(|pw| percent_decode_str(pw).decode_utf8_lossy().into_owned());
        let db = match path.trim_end_matches('/') {
            "" => 0,
            p => p.parse::<usize>().ok().filter(|&n| n < DATABASES).ok_or_else(|| {
                invalid(format!("the database in {url:?} must be a number from 0 to {}, got {p:?}", DATABASES - 1))
            })?,
        };
        let prefix = percent_decode_str(prefix).decode_utf8_lossy().into_owned();
        Ok(Driver { db, prefix, password })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Driver {
        Driver::parse(url, "driver").unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn hipache_url_forms() {
        let d = parse("redis://:secret@127.0.0.1:6379/3#hip_");
        assert_eq!(d, Driver { db: 3, prefix: "hip_".into(), password: Some("secret".into()) });
        assert_eq!(parse("redis:"), Driver::default());
        assert_eq!(parse("redis:///1").db, 1);
        assert_eq!(parse("redis://:7001/#someprefix").prefix, "someprefix");
        assert_eq!(parse("redis://127.0.0.1:6379").db, 0);
        assert_eq!(parse("redis://:@127.0.0.1:6379/3#hip_").password, None, "empty password: none");
        assert_eq!(parse("redis://user:p%40ss@h/").password.as_deref(), Some("p@ss"));
        assert_eq!(parse("REDIS://h/15").db, 15);
    }

    #[test]
    fn bad_urls_name_the_key() {
        for (url, words) in [
            ("127.0.0.1", "expected a URL"),
            ("etcd://h:4001", "only redis://"),
            ("redis://h/16", "from 0 to 15"),
            ("redis://h/x", "from 0 to 15"),
        ] {
            let e = Driver::parse(url, "driver[0]").unwrap_err().to_string();
            assert!(e.contains("driver[0]") && e.contains(words), "{url}: {e}");
        }
    }
}
