//! Crash points for the torture tests, compiled out of release builds.
//!
//! In debug builds (`cfg(debug_assertions)`, what `cargo test` builds), the environment
//! variable `SLUICE_FAILPOINTS` arms named points: `name@N[,name@N...]` aborts the process
//! the N-th time `name` is reached (N = 1 when omitted), exactly like a kill -9 at that line:
//! no destructor runs, nothing is flushed. In release builds [`hit`] is an empty inline
//! function and the variable is ignored.
//!
//! Points: `after_record_before_insert`, `after_insert_before_commit` (lane.rs),
//! `insert_mid_body` (clickhouse/client.rs: half of the body sent), `during_revoke`
//! (kafka/consumer.rs: lanes told to drain, not yet drained).

#[cfg(debug_assertions)]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    struct Point {
        name: String,
        at: u64,
        seen: AtomicU64,
    }

    fn points() -> &'static [Point] {
        static POINTS: OnceLock<Vec<Point>> = OnceLock::new();
        POINTS.get_or_init(|| {
            std::env::var("SLUICE_FAILPOINTS")
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    let (name, at) = s.trim().split_once('@').unwrap_or((s.trim(), "1"));
                    Point {
                        name: name.to_string(),
                        at: at.parse().unwrap_or(1),
                        seen: AtomicU64::new(0),
                    }
                })
                .collect()
        })
    }

    /// Whether reaching `name` now would crash (counts the hit).
    pub fn fires(name: &str) -> bool {
        points()
            .iter()
            .any(|p| p.name == name && p.seen.fetch_add(1, Ordering::SeqCst) + 1 == p.at)
    }

    pub fn crash(name: &str) -> ! {
        eprintln!("failpoint {name}: crashing now (SLUICE_FAILPOINTS)");
        std::process::abort()
    }
}

/// Aborts the process here if `name` is armed and due (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if armed::fires(name) {
        armed::crash(name);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Whether `name` is armed and due now (debug builds only); the caller crashes at the
/// right moment itself with [`crash`].
#[inline]
pub fn due(name: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        armed::fires(name)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}

/// Aborts the process (a due failpoint).
pub fn crash(name: &str) -> ! {
    #[cfg(debug_assertions)]
    {
        armed::crash(name)
    }
    #[cfg(not(debug_assertions))]
    {
        eprintln!("failpoint {name} reached in a release build");
        std::process::abort()
    }
}
