#!/usr/bin/env bash
# CI: systemd's own rating of the system unit's sandbox. Fails when
# `systemd-analyze security` rates auditship.service's exposure above 2.0 (of 10),
# i.e. when a change weakens the hardening. Offline: no running systemd needed.
set -euo pipefail
cd "$(dirname "$0")/.."

max=2.0
fail() {
  echo "ci-security.sh: $*" >&2
  exit 1
}
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
# --offline and --threshold arrived in systemd 250.
version=$(systemd-analyze --version | awk 'NR == 1 {print $2}')
[ "$version" -ge 250 ] || fail "systemd-analyze $version cannot rate a unit file offline (needs 250)"

report=$(systemd-analyze security --offline=true --no-pager systemd/auditship.service)
line=$(grep 'Overall exposure level' <<<"$report") || fail "no rating in: $report"
echo "ci-security.sh: ${line#→ }"
# The threshold is on systemd's internal 0-100 scale (1.6 is 16).
threshold=$(awk -v m="$max" 'BEGIN { printf "%d", m * 10 }')
if ! systemd-analyze security --offline=true --no-pager --threshold="$threshold" \
  systemd/auditship.service >/dev/null; then
  grep '✗' <<<"$report" >&2 || true
  fail "auditship.service is rated above $max"
fi
