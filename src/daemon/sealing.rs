//! The sealer's place in the daemon: it outlives a pipeline. A reload that leaves
//! its socket, directory, key and connection limit alone updates it in place (the
//! mapping, identities and limits), so `record` is never turned away while the
//! pipeline restarts; any other change starts it again; a configuration without
//! `[sealer]` stops it. The process's stop stops it first, so the events of the
//! requests it finishes are read by the pipeline's last pass.

use crate::config::Config;
use crate::config::daemon::DaemonConfig;
use crate::sealer::{Sealer, SealerError};
use std::sync::Arc;

/// The sealer, when one runs.
#[derive(Default)]
pub struct SealerSlot {
    running: Option<Sealer>,
}

impl SealerSlot {
    pub fn new() -> SealerSlot {
        SealerSlot::default()
    }

    /// Makes the sealer run as `daemon.sealer` says (started, updated in place,
    /// started again or stopped), and gives the sources that ship the sealed
    /// streams its key.
    pub async fn apply(
        &mut self,
        config: &Config,
        daemon: &mut DaemonConfig,
    ) -> Result<(), SealerError> {
        let Some(cfg) = daemon.sealer.clone() else {
            self.stop().await;
            return Ok(());
        };
        let mapping = Arc::new(config.clone());
        match &self.running {
            Some(s) if s.fits(&cfg) => s.update(&cfg, mapping),
            _ => {
                self.stop().await;
                self.running = Some(Sealer::start(&cfg, mapping).await?);
            }
        }
        if let Some(s) = &self.running {
            let probe = cfg.dir.join("user");
            for src in &mut daemon.sources {
                let covers = src
                    .paths
                    .iter()
                    .any(|p| crate::config::coverage::covers(p, &probe));
                if covers && !src.keys.contains(&cfg.hmac_kid) {
                    src.keys.merge(s.keys());
                }
            }
        }
        Ok(())
    }

    /// The running sealer.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.running.as_ref()
    }

    /// Stops the sealer, if one runs: connections already accepted are served,
    /// streams commit what they hold.
    pub async fn stop(&mut self) {
        if let Some(s) = self.running.take() {
            s.stop().await;
        }
    }
}
