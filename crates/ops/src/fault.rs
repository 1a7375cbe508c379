//! Fault injection for crash tests: `WHARF_FAILPOINT=<name>` makes the process abort at the
//! named point, as a `kill -9` would at that instant. The points sit inside use cases, between
//! a change and its ledger entry, so a test can prove that a crash there leaves neither.

/// The variable naming the point at which to abort.
pub const FAILPOINT_ENV: &str = "WHARF_FAILPOINT";

/// Aborts the process when `WHARF_FAILPOINT` names this point; otherwise does nothing.
pub fn point(name: &str) {
    if std::env::var(FAILPOINT_ENV).is_ok_and(|wanted| wanted == name) {
        tracing::error!(point = name, "failpoint reached: aborting");
        std::process::abort();
    }
}
