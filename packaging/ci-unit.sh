#!/usr/bin/env bash
# CI: runs the installed auditship.service under a real systemd with all of its
# hardening (user auditship, CAP_DAC_READ_SEARCH only, read-only /home, syscall
# filter, ...) and proves that it reads another user's private audit file, ships its
# events, survives a reload, seals another user's call in sealed mode and stops
# cleanly, with the sandbox actually in force.
#
# Where systemd is PID 1, the host's systemd runs it. Elsewhere (a container), the
# host's file system is booted as a throwaway systemd-nspawn container: an overlay
# whose writes go to a tmpfs, so nothing of it stays.
#
# Until the daemon sends sd_notify messages (its binary has no READY=1), a runtime
# drop-in runs it as Type=exec without watchdog; once it does, the unit runs as
# shipped (Type=notify) with a 4 s watchdog so keep-alives are exercised.
# Usage (as root, after installing the package): bash packaging/ci-unit.sh
set -euo pipefail

fail() {
  echo "ci-unit.sh: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || fail "run as root"
[ -x /usr/bin/auditship ] || fail "install the package first (/usr/bin/auditship missing)"

events=3
owner=4242 # a uid without an account: nobody but the capability can read its files
marker="auditship-ci-$$"

if grep -q 'READY=1' /usr/bin/auditship; then
  notify=yes
  dropin=$'[Service]\nWatchdogSec=4\n'
else
  notify=no
  dropin=$'[Service]\nType=exec\nWatchdogSec=0\n'
fi
# A soft open-file limit below the hard one, which the daemon raises at start.
dropin+=$'LimitNOFILE=1024:8192\n'


work=$(mktemp -d /tmp/auditship-ci-unit.XXXXXX)
nspawn_pid=
cleanup() {
  set +e
  if [ -n "$nspawn_pid" ]; then
    kill "$nspawn_pid" 2>/dev/null
    wait "$nspawn_pid" 2>/dev/null
  fi
  if [ "$mode" = host ]; then
    systemctl stop auditship.service 2>/dev/null
    rm -rf "$dropin_dir" "$home" /etc/auditship/conf.d/ci-sealer.toml /etc/auditship/ci-client.toml
    systemctl daemon-reload
  else
    umount "$work/root" 2>/dev/null
    umount "$work/t" 2>/dev/null
  fi
  rm -rf "$work"
}

if [ -d /run/systemd/system ]; then
  mode=host
  root=
  home=/home/$marker
  dropin_dir=/run/systemd/system/auditship.service.d
  sctl() { systemctl "$@"; }
  inside() { "$@"; }
else
  mode=container
  if ! command -v systemd-nspawn >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      systemd-container >/dev/null
  fi
  mkdir -p "$work/t" "$work/root"
  mount -t tmpfs tmpfs "$work/t"
  mkdir -p "$work/t/upper" "$work/t/work"
  mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$work/t/upper,workdir=$work/t/work" "$work/root"
  root=$work/root
  home=$root/home/$marker
  # nspawn mounts a fresh /run: the drop-in goes to the overlay's /etc.
  dropin_dir=$root/etc/systemd/system/auditship.service.d
  init_pid() { pgrep -f '^/usr/lib/systemd/systemd --unit=auditship-ci.target' | head -1; }
  sctl() { nsenter -t "$(init_pid)" -a systemctl "$@"; }
  inside() { nsenter -t "$(init_pid)" -a "$@"; }
fi
trap cleanup EXIT
echo "ci-unit.sh: systemd on the $mode; sd_notify in the binary: $notify"

# Another user's audit stream: directories 0700, files 0600, owned by $owner.
mkdir -p "$home"
for _ in $(seq "$events"); do
  printf '{"hook_event_name":"PreToolUse","session_id":"%s","tool_name":"Bash","tool_input":{"command":"ls"}}' \
    "$marker" | HOME=$home AUDITSHIP_CONFIG=/dev/null /usr/bin/auditship record
done
chown -R "$owner:$owner" "$home"
chmod -R go-rwx "$home"

mkdir -p "$dropin_dir"
printf '%s' "$dropin" >"$dropin_dir/ci.conf"
shipped=$root/var/lib/auditship/shipped.jsonl

if [ "$mode" = host ]; then
  systemctl daemon-reload
  systemctl start auditship.service
else
  # Only what the service needs boots: basic.target, then auditship.service.
  printf '[Unit]\nDescription=auditship CI\nRequires=basic.target auditship.service\nAfter=basic.target auditship.service\n' \
    >"$root/etc/systemd/system/auditship-ci.target"
  systemd-nspawn -q -D "$root" --register=no --keep-unit --link-journal=no \
    --uuid="$(tr -d - </proc/sys/kernel/random/uuid)" --private-network \
    -b -- --unit=auditship-ci.target >"$work/boot.log" 2>&1 &
  nspawn_pid=$!
  for _ in $(seq 60); do
    state=$( [ -n "$(init_pid)" ] && sctl show -p ActiveState --value auditship.service 2>/dev/null || true)
    case "$state" in active | failed) break ;; esac
    sleep 1
  done
fi
if [ "$(sctl show -p ActiveState --value auditship.service)" != active ]; then
  sctl status auditship.service --no-pager -l || true
  [ -f "$work/boot.log" ] && tail -20 "$work/boot.log"
  fail "auditship.service did not start"
fi

shipped_count() {
  if [ -f "$shipped" ]; then grep -c "$marker" "$shipped" || true; else echo 0; fi
}
for _ in $(seq 60); do
  [ "$(shipped_count)" -ge "$events" ] && break
  sleep 1
done
n=$(shipped_count)
if [ "$n" -ne "$events" ]; then
  sctl status auditship.service --no-pager -l || true
  [ -f "$work/boot.log" ] && tail -20 "$work/boot.log"
  fail "$n of $events events shipped from a 0600 file of uid $owner"
fi
echo "ci-unit.sh: the service read uid $owner's private file and shipped $n events"

pid=$(sctl show -p MainPID --value auditship.service)
status=$(inside cat "/proc/$pid/status")
limits=$(inside cat "/proc/$pid/limits")
grep -q '^CapEff:[[:space:]]*0000000000000004$' <<<"$status" || fail "capabilities: $(grep ^Cap <<<"$status")"
grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$status" || fail "NoNewPrivileges not in force"
grep -q '^Seccomp:[[:space:]]*2$' <<<"$status" || fail "no seccomp filter"
# Started with 1024 of 8192 open files, the daemon raises the soft limit to the hard
# one: the syscall filter let that through (with SystemCallErrorNumber=EPERM a
# refused call would have left 1024; without it, killed the daemon).
read -r soft hard < <(awk '/^Max open files/ {print $4, $5}' <<<"$limits")
[ "$soft" = 8192 ] && [ "$hard" = 8192 ] || fail "open files soft $soft, hard $hard: not raised to 8192"
user=$(inside stat -c %U "/proc/$pid")
[ "$user" = auditship ] || fail "runs as $user"
echo "ci-unit.sh: runs as auditship, CapEff=CAP_DAC_READ_SEARCH, NoNewPrivs, seccomp, open files $soft/$hard"

if [ "$notify" = yes ]; then
  sleep 10 # more than two watchdog timeouts: keep-alives must arrive
  [ "$(sctl show -p NRestarts --value auditship.service)" = 0 ] || fail "restarted (watchdog?)"
fi
sctl reload auditship.service
sleep 1
[ "$(sctl show -p ActiveState --value auditship.service)" = active ] || fail "not active after reload"

# Sealed mode, turned on by a reload: the unit's runtime directory holds the socket,
# the service makes its key and a private stream for uid $owner, whose `record`
# (through setpriv) is recorded with the kernel's identity.
mkdir -p "$root/etc/auditship/conf.d"
printf '[sealer]\n' >"$root/etc/auditship/conf.d/ci-sealer.toml"
printf '[record]\nsocket = "/run/auditship/record.sock"\non_error = "block"\n' \
  >"$root/etc/auditship/ci-client.toml"
chmod 0644 "$root/etc/auditship/conf.d/ci-sealer.toml" "$root/etc/auditship/ci-client.toml"
sctl reload auditship.service
for _ in $(seq 30); do
  inside test -S /run/auditship/record.sock && break
  sleep 0.5
done
inside test -S /run/auditship/record.sock || fail "no sealer socket after the reload"
printf '{"hook_event_name":"PreToolUse","session_id":"%s","tool_name":"Bash","tool_input":{"command":"ls"},"user_id":"root"}' "$marker" |
  inside setpriv --reuid="$owner" --regid="$owner" --clear-groups env HOME=/nonexistent \
    /usr/bin/auditship record --config /etc/auditship/ci-client.toml ||
  fail "record as uid $owner was not sealed: $(inside journalctl -u auditship.service --no-pager -o cat | tail -5)"
stream=/var/lib/auditship/sealed/uid-$owner
sealed=$(inside sh -c "cat $stream/*.jsonl")
grep -q "\"uid\":$owner" <<<"$sealed" || fail "the sealed event does not name uid $owner: $sealed"
for f in "$stream" /var/lib/auditship/sealer-hmac.key; do
  [ "$(inside stat -c %U "$f")" = auditship ] || fail "$f is not the service's"
done
[ "$(inside stat -c %a "$stream")" = 700 ] || fail "$stream is not 0700"
inside sh -c "stat -c %a $stream/*.jsonl" | grep -qx 600 || fail "the sealed file is not 0600"
inside /usr/bin/auditship verify --key sealer=/var/lib/auditship/sealer-hmac.key "$stream" >/dev/null ||
  fail "the sealed stream does not verify"
echo "ci-unit.sh: sealed mode: socket in the runtime directory, uid $owner's call sealed by the service"

sctl stop auditship.service
result=$(sctl show -p Result --value auditship.service)
code=$(sctl show -p ExecMainStatus --value auditship.service)
if [ "$result" != success ] || [ "$code" != 0 ]; then
  inside journalctl -u auditship.service --no-pager -o cat | tail -20
  fail "stop: result $result, exit status $code"
fi
echo "ci-unit.sh: reload and stop clean (result $result, exit status $code)"
if printf '{"hook_event_name":"PreToolUse","session_id":"x"}' |
  inside setpriv --reuid="$owner" --regid="$owner" --clear-groups env HOME=/nonexistent \
    /usr/bin/auditship record --config /etc/auditship/ci-client.toml 2>/dev/null; then
  fail "record went through with the service stopped and on_error = block"
fi
echo "ci-unit.sh: with the service stopped, a sealed PreToolUse fails closed"
