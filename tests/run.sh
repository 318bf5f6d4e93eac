#!/usr/bin/env bash
# Runs auditship's whole test suite on a fresh machine: installs what the tests need,
# then `cargo test --locked`. Usage: bash tests/run.sh [extra cargo test args]
#
# Needed beyond Rust: python3 (the independent verifier), curl and setpriv (a post to
# the telemetry receiver as another user), a real rsyslogd with its GnuTLS driver
# (Debian rsyslog + rsyslog-gnutls) for the syslog-over-TLS tests, Debian's chromium for
# the HTML report, and moto[server] from PyPI (S3 with Object Lock, for the S3 archive
# tests): used from python3 when it has it, else installed into a venv at
# target/moto-venv (Debian's Python is externally managed; its venv module comes with
# python3-venv). The tests find that venv themselves (tests/moto.rs), or
# AUDITSHIP_TEST_PYTHON.
#
# Debian's chromium renders the HTML report headless in tests/report.rs (a screenshot
# and a PDF); the tests find it on PATH, or at AUDITSHIP_TEST_CHROMIUM.
#
# The Claude Code CLI (npm @anthropic-ai/claude-code, at the version pinned below and in
# tests/claude_code.rs) is installed with npm into target/claude-code when missing; its
# native binary then runs offline. The tests find it there, or at AUDITSHIP_TEST_CLAUDE.
#
# The Kafka tests (tests/kafka.rs) run tansu, a Kafka-protocol broker published as a
# Rust crate, built once with `cargo install` (about 15 minutes on two cores) into
# ~/.cache/auditship-test/tansu and reused from there by every later run and clone
# (AUDITSHIP_TEST_TANSU points elsewhere). They read topics back with kafka-python
# (with lz4 and zstandard for compressed batches) from a venv at target/kafka-venv, or
# AUDITSHIP_TEST_KAFKA_PYTHON. The SASL and TLS tests (tests/kafka_auth.rs) put a front
# before tansu (tests/support/kafka_front.py, from the same venv) whose SCRAM server is
# the scramp library's.
set -euo pipefail
cd "$(dirname "$0")/.."

moto_venv="$PWD/target/moto-venv"
moto_spec='moto[server]>=5.2,<6'

claude_version='2.1.328'
claude_prefix="$PWD/target/claude-code"
claude_bin="$claude_prefix/node_modules/.bin/claude"

# True when the CLI in target/claude-code runs and is the pinned release.
has_claude() {
  [ -x "$claude_bin" ] || return 1
  local v
  v=$(DISABLE_AUTOUPDATER=1 "$claude_bin" --version 2>/dev/null) || return 1
  [ "${v%% *}" = "$claude_version" ]
}

tansu_version='0.6.0'
tansu_root="${HOME}/.cache/auditship-test/tansu"
kafka_venv="$PWD/target/kafka-venv"
kafka_spec=('kafka-python>=2.3,<3' 'lz4>=4,<5' 'zstandard<1' 'scramp>=1.4,<2')

has_tansu() {
  local v
  v=$("$1" --version 2>/dev/null) || return 1
  [ "$v" = "tansu $tansu_version" ]
}

has_kafka_python() {
  "$1" -c 'import kafka, lz4, zstandard, scramp' 2>/dev/null
}

# True when Python $1 runs moto's server in the tested major version.
has_moto() {
  "$1" - <<'PY' 2>/dev/null
import moto, moto.server
assert (5, 2) <= tuple(int(p) for p in moto.__version__.split(".")[:2]) < (6, 0)
PY
}

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
if ! command -v python3 >/dev/null 2>&1; then
  need_apt+=(python3 python3-venv)
elif { { ! has_moto python3 && ! [ -x "$moto_venv/bin/python3" ]; } \
  || ! has_kafka_python "$kafka_venv/bin/python3"; } \
  && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  need_apt+=(python3-venv)
fi
[ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)
# The telemetry tests post as another user: setpriv (util-linux) running curl.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
have_gtls_driver || need_apt+=(rsyslog-gnutls)
command -v chromium >/dev/null 2>&1 || [ -n "${AUDITSHIP_TEST_CHROMIUM:-}" ] || need_apt+=(chromium)
if ! has_claude && ! command -v npm >/dev/null 2>&1; then
  need_apt+=(nodejs npm)
fi

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

if has_moto python3; then
  AUDITSHIP_TEST_PYTHON=$(command -v python3)
else
  if ! has_moto "$moto_venv/bin/python3"; then
    python3 -m venv "$moto_venv"
    "$moto_venv/bin/python3" -m pip install --quiet --disable-pip-version-check "$moto_spec"
    has_moto "$moto_venv/bin/python3" || {
      echo "tests/run.sh: $moto_spec did not install into $moto_venv" >&2
      exit 1
    }
  fi
  AUDITSHIP_TEST_PYTHON="$moto_venv/bin/python3"
fi
export AUDITSHIP_TEST_PYTHON

if ! has_claude; then
  # --prefix keeps the install (package.json, lock, node_modules) inside target/; the
  # exact version pins the platform package with its native binary too.
  npm install --prefix "$claude_prefix" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$claude_version"
  # Its postinstall links the native binary into place; npm configured not to run
  # install scripts leaves a stub that only prints an error, so run it here then.
  if ! has_claude; then
    (cd "$claude_prefix/node_modules/@anthropic-ai/claude-code" && node install.cjs)
  fi
  has_claude || {
    echo "tests/run.sh: @anthropic-ai/claude-code@$claude_version did not install into $claude_prefix" >&2
    exit 1
  }
fi
AUDITSHIP_TEST_CLAUDE="$claude_bin"
export AUDITSHIP_TEST_CLAUDE

if [ -z "${AUDITSHIP_TEST_TANSU:-}" ]; then
  if ! has_tansu "$tansu_root/bin/tansu"; then
    # The default features have no storage engine; dynostore brings memory://.
    cargo install tansu --version "$tansu_version" --locked --features dynostore \
      --root "$tansu_root"
    has_tansu "$tansu_root/bin/tansu" || {
      echo "tests/run.sh: tansu $tansu_version did not install into $tansu_root" >&2
      exit 1
    }
  fi
  AUDITSHIP_TEST_TANSU="$tansu_root/bin/tansu"
fi
export AUDITSHIP_TEST_TANSU

if [ -z "${AUDITSHIP_TEST_KAFKA_PYTHON:-}" ]; then
  if ! has_kafka_python "$kafka_venv/bin/python3"; then
    [ -x "$kafka_venv/bin/python3" ] || python3 -m venv "$kafka_venv"
    "$kafka_venv/bin/python3" -m pip install --quiet --disable-pip-version-check "${kafka_spec[@]}"
    has_kafka_python "$kafka_venv/bin/python3" || {
      echo "tests/run.sh: kafka-python, lz4, zstandard or scramp did not install into $kafka_venv" >&2
      exit 1
    }
  fi
  AUDITSHIP_TEST_KAFKA_PYTHON="$kafka_venv/bin/python3"
fi
export AUDITSHIP_TEST_KAFKA_PYTHON

cargo test --locked "$@"
