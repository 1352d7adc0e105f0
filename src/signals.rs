//! Unix signal handlers that degrade to "never delivered" when they cannot be installed: the
//! node's stop signals (`main`) and the access log's reopen signals (`proxy::access_log`).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Installs a handler for `kind` (must run inside the runtime); on failure logs that `name`
/// cannot be handled, and what that costs (`consequence`), and returns `None`.
pub fn install(kind: SignalKind, name: &str, consequence: &str) -> Option<Signal> {
    match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot install the {name} handler; {consequence}");
            None
        }
    }
}

/// The next delivery of a signal, or never when its handler could not be installed.
pub async fn next(signal: &mut Option<Signal>) -> Option<()> {
    match signal.as_mut() {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
