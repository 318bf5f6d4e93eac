//! Integration tests: the real binary as a child process, real files, real processes.
//! One test binary (faster to link on two cores); shared helpers live in `util`.

mod http1;
mod moto;
mod pki;
mod rsyslog;
mod siem;
mod sink;
mod tls_server;
mod util;

mod archive;
mod check_config;
mod cli_finish;
mod config_layers;
mod daemon;
mod daemon_faults;
mod siem_servers;
mod siem_sinks;
mod sink_tls;

mod install_hooks;
mod ops;
mod packaging;
mod record;
mod redact_catalogue;
mod s3;
mod vectors;
mod verify;
