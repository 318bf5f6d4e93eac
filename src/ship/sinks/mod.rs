//! One file per protocol. A sink encodes a run of shipped records (JSON lines) in its
//! protocol's shape, sends it once, and classifies the answer as a [`Verdict`]. It
//! never sleeps or loops: retries belong to `ship`.

pub mod file;
pub mod http;

use super::Verdict;
use crate::config::daemon::{SinkConfig, SinkKind};

/// A configured sink.
pub enum Sink {
    Http(http::HttpSink),
    File(file::FileSink),
}

impl Sink {
    pub fn new(cfg: &SinkConfig, client: &reqwest::Client) -> Sink {
        match &cfg.kind {
            SinkKind::Http { .. } => Sink::Http(http::HttpSink::new(cfg, client.clone())),
            SinkKind::File { .. } => Sink::File(file::FileSink::new(cfg)),
        }
    }

    /// Sends `records` (JSON lines, each ending in `\n`) once. `Bytes` so a retry
    /// or the request body shares the buffer instead of copying it.
    pub async fn send(&mut self, records: &bytes::Bytes, events: u32) -> Verdict {
        match self {
            Sink::Http(s) => s.send(records, events).await,
            Sink::File(s) => s.send(records).await,
        }
    }
}

/// Gzip-compresses a request body (fast level: CPU matters more than bytes here).
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}
