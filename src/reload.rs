//! Taking a new configuration while running: `sluice run` reads its config file again on
//! SIGHUP, as Vector and most daemons do.
//!
//! What holds:
//! - **Checked before taken.** The file is read and validated as at start (environment
//!   secrets included); a file that does not parse or validate is refused with the reason
//!   (logged, `sluice_config_reloads_refused_total`) and the running configuration goes on
//!   untouched.
//! - **Nothing lost, nothing twice.** A valid one ends the running pass as a shutdown does:
//!   the lanes store and commit what they hold and the consumer leaves the group; the next
//!   pass starts with the new configuration from the committed offsets
//!   ([`crate::pipeline::run_reloading`]). Exactly-once holds across it as across a restart.
//! - **One at a time.** Signals that come while a file is read are folded into that read.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::pipeline::Reloads;
use crate::telemetry::Metrics;

/// Listens for SIGHUP (now, so that a SIGHUP during start-up is not the default action,
/// which ends the process); each one runs `load` and sends what it gives. `None` where the
/// signal cannot be listened for (logged): the run goes on without reloads.
pub fn install<F>(load: F, metrics: Arc<Metrics>) -> Option<Reloads>
where
    F: Fn() -> anyhow::Result<Config> + Send + 'static,
{
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the configuration is read once");
                return None;
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reading the configuration again");
                match load() {
                    Ok(cfg) => {
                        if tx.send(cfg).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        metrics
                            .config_reloads_refused
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %format!("{e:#}"),
                            "the configuration was not reloaded; the running one goes on");
                    }
                }
            }
        });
        Some(rx)
    }
    #[cfg(not(unix))]
    {
        let _ = (load, metrics);
        None
    }
}
