//! Known bugs the fault tests must catch (`cluster-tests/tests/faults.rs`), compiled in only
//! with the `inject-bugs` feature, which only the test harness turns on, and chosen when the
//! node starts by `HIPACHE_INJECT_BUG`. Without the feature every check is a constant `false`.

/// A bug the suite must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Default-mode (linearizable) reads served from the local replica, as READONLY ones are.
    LocalReads,
    /// A write retried after an ambiguous failure is sent again without its proposal number,
    /// so the leader cannot tell it from a new write (applied twice if the first try landed).
    ResendUnnumbered,
    /// Log entries acknowledged once written to the page cache, without `fdatasync`: lost
    /// with the power.
    AckBeforeSync,
    /// A vote answered once written to the page cache, without `fdatasync`: after a power cut
    /// the node may vote again in the same term, for another candidate.
    UnsyncedVote,
}

impl Bug {
    pub fn name(self) -> &'static str {
        match self {
            Bug::LocalReads => "local-reads",
            Bug::ResendUnnumbered => "resend-unnumbered",
            Bug::AckBeforeSync => "ack-before-sync",
            Bug::UnsyncedVote => "unsynced-vote",
        }
    }
}

/// Whether `bug` was chosen for this process.
#[cfg(feature = "inject-bugs")]
pub fn injected(bug: Bug) -> bool {
    static CHOSEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| {
        let chosen = std::env::var("HIPACHE_INJECT_BUG").ok();
        if let Some(bug) = &chosen {
            tracing::warn!(bug, "running with an injected bug (HIPACHE_INJECT_BUG): for fault tests only");
        }
        chosen
    });
    chosen.as_deref() == Some(bug.name())
}

#[cfg(not(feature = "inject-bugs"))]
pub const fn injected(_bug: Bug) -> bool {
    false
}
