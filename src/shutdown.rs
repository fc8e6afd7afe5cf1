//! One shutdown signal for the process: the first SIGINT or SIGTERM.
//!
//! The handlers are installed by [`install`] at the very start of `sluice run`, before
//! anything connects: a SIGTERM that arrives while sluice is still starting must mean "stop
//! cleanly" (exit 0), not the default action (killed by the signal).
//!
//! The pipeline takes shutdown as a plain future, so tests pass their own (a oneshot, a
//! timer) and run the real pipeline code path.

use std::future::Future;

/// Installs the SIGINT/SIGTERM handlers now; the returned future resolves on the first one.
pub fn install() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    if let Some(e) = term.as_ref().err().or(int.as_ref().err()) {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT; only Ctrl-C stops sluice");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            tracing::info!("shutdown requested: stop fetching, flush, insert, commit");
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown requested: stop fetching, flush, insert, commit");
        }
    }
}
