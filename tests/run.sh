#!/usr/bin/env bash
# Runs auditship's whole test suite on a fresh machine: installs what the tests need,
# then `cargo test --locked`. Usage: bash tests/run.sh [extra cargo test args]
#
# Needed beyond Rust: python3 (the independent verifier), and a real rsyslogd with its
# GnuTLS driver (Debian rsyslog + rsyslog-gnutls) for the syslog-over-TLS tests.
set -euo pipefail
cd "$(dirname "$0")/.."

have_gtls_driver() {
  compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null || [ -e /usr/lib/rsyslog/lmnsd_gtls.so ]
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The pid of the distribution's rsyslog service, if one runs.
system_rsyslogd() {
  local pid
  pid=$(cat /run/rsyslogd.pid 2>/dev/null) || return 0
  if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then echo "$pid"; fi
}

need_apt=()
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
[ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)
have_gtls_driver || need_apt+=(rsyslog-gnutls)

if [ ${#need_apt[@]} -gt 0 ]; then
  before=$(system_rsyslogd)
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # In a container without systemd, installing rsyslog may start its service (unless
  # a policy-rc.d forbids it). The tests run their own rsyslogd; stop the one the
  # install started. A systemd host keeps its service: it only serves /dev/log.
  after=$(system_rsyslogd)
  if [ ! -d /run/systemd/system ] && [ -n "$after" ] && [ "$after" != "$before" ]; then
    as_root kill "$after"
  fi
fi

cargo test --locked "$@"
