//! The configuration loader on arbitrary TOML, through the path `check-config` takes:
//! `config::load_daemon` (files, drop-ins, merge, `${VAR}`, deserialize, validate,
//! errors placed at line and column), then the effective settings rendered as TOML.
//!
//! Input: the main file, then drop-ins, separated by NUL bytes (which TOML text never
//! holds). They are written to a scratch directory as `auditship.toml` and
//! `conf.d/NN.toml`. `HOME` points into that directory, so `~/…` paths in the input
//! name nothing outside it.
//!
//! - Loading never panics, whatever the files hold.
//! - An error names at least one problem, each on a non-empty line.
//! - A configuration that loads renders as TOML (check-config's output), and loading
//!   it again gives the same configuration hash.
#![no_main]

use auditship::config;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::LazyLock;

/// The most files one input makes (the main file and drop-ins).
const MAX_FILES: usize = 5;

static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("auditship-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    // SAFETY: set once, before any other thread of this process reads the environment.
    unsafe { std::env::set_var("HOME", &dir) };
    dir
});

fuzz_target!(|data: &[u8]| {
    let dir = &*DIR;
    let main = dir.join("auditship.toml");
    let conf_d = dir.join("conf.d");
    let _ = std::fs::remove_dir_all(&conf_d);
    let mut files = data.split(|&b| b == 0).take(MAX_FILES);
    std::fs::write(&main, files.next().unwrap_or_default()).expect("write main file");
    for (i, text) in files.enumerate() {
        std::fs::create_dir_all(&conf_d).expect("conf.d");
        std::fs::write(conf_d.join(format!("{i:02}.toml")), text).expect("write drop-in");
    }

    match config::load_daemon(Some(&main)) {
        Ok((cfg, daemon)) => {
            toml::to_string(&config::effective::settings(
                &cfg,
                Some(&daemon),
                &daemon.from_env,
            ))
            .unwrap_or_else(|e| panic!("a valid configuration does not render: {e}"));
            let (again, _) = config::load_daemon(Some(&main)).expect("loads twice");
            assert_eq!(cfg.hash, again.hash, "the configuration hash changed");
        }
        Err(e) => {
            assert!(!e.0.is_empty(), "an error without problems");
            assert!(e.0.iter().all(|p| !p.trim().is_empty()), "{e:?}");
        }
    }
});
