//! Integration tests: the real binary as a child process, real files, real processes.
//! One test binary (faster to link on two cores); shared helpers live in `util`.

mod http1;
mod messages_api;
mod moto;
mod pki;
mod rsyslog;
mod siem;
mod sink;
mod tls_server;
mod util;

mod archive;
mod check_config;
mod checkpoints;
mod cli_finish;
mod config_layers;
mod config_truth;
mod copytruncate;
mod daemon;
mod daemon_faults;
mod doc_examples;
mod inflight;
mod integrity_edges;
mod kafka;
mod kafka_auth;
mod layers;
mod siem_servers;
mod siem_sinks;
mod sink_tls;
mod symlink_paths;
mod transport_ops;

mod claude_code;
mod install_hooks;
mod mcp;
mod operator_truth;
mod ops;
mod otel;
mod packaging;
mod record;
mod record_content;
mod record_edges;
mod redact_catalogue;
mod report;
mod s3;
mod sealer;
mod vectors;
mod verify;
mod verify_edges;
