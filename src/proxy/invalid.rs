//! Backend URLs a tool wrote that the proxy cannot use (no `scheme://host`): the request is
//! answered 502 "backend is invalid" (§3.3), and the problem is logged once per change of the
//! frontend's list, not once per request, so a bad route under load cannot flood the log.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::routing::backend::Frontend;
use crate::routing::host::Host;

/// Hosts remembered before the memory of what was reported starts over (a few may then be
/// reported again, which is harmless).
const REMEMBERED: usize = 10_000;

/// Which frontends (host, list version) were reported.
#[derive(Default)]
pub struct InvalidBackends {
    reported: Mutex<HashMap<Bytes, u64>>,
}

impl InvalidBackends {
    /// Logs that backend `idx` of `frontend`, picked for `host`, is unusable, unless this
    /// version of the list was reported already. Only reached on the 502 path.
    pub fn report(&self, host: &Host, frontend: &Frontend, idx: usize) {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if reported.get(host.as_bytes()) == Some(&frontend.version()) {
            return;
        }
        if reported.len() >= REMEMBERED {
            reported.clear();
        }
        reported.insert(Bytes::copy_from_slice(host.as_bytes()), frontend.version());
        let url = frontend.backend(idx).url;
        tracing::warn!(
            host = host.as_str(),
            idx,
            url = %String::from_utf8_lossy(&url),
            "backend URL is invalid (not scheme://host[:port]); answering 502 until the list changes"
        );
    }
}
