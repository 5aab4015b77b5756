//! Named crash points for crash-consistency tests (crate `fail`).
//!
//! A test starts a node with `FAILPOINTS="<name>=return"` (or `return(<ms>)`) and
//! the node aborts at that point — after sleeping `<ms>` milliseconds, so that
//! concurrent work (a purge racing an install) gets to run first — exactly like a
//! `kill -9` there: no destructors, no flush. Other `fail` actions (`pause`,
//! `sleep(ms)`) work too. Everything here compiles to nothing unless the crate is
//! built with the `failpoints` feature (the README's test command enables it;
//! release builds never do).
//!
//! Points: see [`names`]; each one's comment at its call site says which window
//! it opens.

/// The points a test may arm, in one list so tests and code cannot drift apart.
pub mod names {
    /// An install copied the received snapshot but has not renamed it current.
    pub const INSTALL_BEFORE_RENAME: &str = "install-before-rename";
    /// Apply wrote a batch's chunk files but has not committed the batch.
    pub const APPLY_AFTER_CHUNK_FILES: &str = "apply-after-chunk-files";
    /// An upload stored a chunk on a quorum of members but has not proposed the
    /// record naming it.
    pub const UPLOAD_AFTER_CHUNK_QUORUM: &str = "upload-after-chunk-quorum";
    /// A peer asked for a chunk: `return` answers UNAVAILABLE instead of the bytes.
    pub const SERVE_CHUNK_UNAVAILABLE: &str = "serve-chunk-unavailable";
}

/// Arms the points named in `FAILPOINTS` for the life of the process.
pub fn setup_from_env() {
    #[cfg(feature = "failpoints")]
    {
        let scenario = fail::FailScenario::setup();
        if !fail::list().is_empty() {
            tracing::warn!(points = ?fail::list(), "crash points armed (test build)");
        }
        // The scenario holds the registry until the process exits.
        std::mem::forget(scenario);
    }
}

/// Aborts the process here if the point `name` is armed with `return[(ms)]`.
pub fn crash_here(name: &str) {
    #[cfg(feature = "failpoints")]
    {
        let abort = |delay_ms: Option<String>| {
            if let Some(ms) = delay_ms.and_then(|ms| ms.parse::<u64>().ok()) {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            eprintln!("crash point {name}: aborting the process");
            std::process::abort()
        };
        fail::fail_point!(name, abort);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// True if the point `name` is armed with `return` (for points that answer an
/// error instead of crashing).
pub fn armed(name: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |_| ()).is_some()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}
