#!/usr/bin/env bash
# CI: builds the Debian package, installs it, checks what it installed (binary,
# configuration, user, state directory, unit, man pages, completions), runs the unit
# under systemd (packaging/ci-unit.sh), then purges it and checks that nothing is
# left. Works as root or with sudo, with or without systemd as PID 1.
#
# The package is built from the dev profile, i.e. the binary `cargo test` already
# built: a release build would add minutes of compiling for the same files.
# Real packages: bash packaging/build-deb.sh (release).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_deb_version=3.8.0
profile=${AUDITSHIP_DEB_PROFILE:-dev}

fail() {
  echo "ci-deb.sh: $*" >&2
  exit 1
}
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $cargo_deb_version"; then
  start=$SECONDS
  cargo install cargo-deb --locked --version "$cargo_deb_version"
  echo "ci-deb.sh: cargo-deb $cargo_deb_version installed in $((SECONDS - start)) s"
fi

deb=$(bash packaging/build-deb.sh --profile "$profile" | tail -1)
echo "ci-deb.sh: built $deb"

contents=$(dpkg-deb --contents "$deb" | awk '{print $6}')
for path in ./usr/bin/auditship ./lib/systemd/system/auditship.service \
  ./usr/lib/systemd/user/auditship.service ./etc/auditship/auditship.toml \
  ./usr/share/man/man1/auditship.1.gz ./usr/share/man/man1/auditship-run.1.gz \
  ./usr/share/bash-completion/completions/auditship \
  ./usr/share/zsh/vendor-completions/_auditship \
  ./usr/share/fish/vendor_completions.d/auditship.fish \
  ./usr/share/doc/auditship/README.md ./usr/share/doc/auditship/config.example.toml \
  ./usr/share/doc/auditship/FORMAT.md ./usr/share/doc/auditship/copyright; do
  grep -qxF "$path" <<<"$contents" || fail "$path missing from the package"
done
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/auditship/auditship.toml ] \
  || fail "conffiles is not /etc/auditship/auditship.toml"

if dpkg-query -W -f '${Status}' auditship 2>/dev/null | grep -q installed; then
  echo "ci-deb.sh: purging the auditship package already installed"
  as_root dpkg --purge auditship >/dev/null
fi
getent passwd auditship >/dev/null && fail "a user auditship exists before the install"

# Whatever happens from here, the machine is left without the package.
trap 'as_root dpkg --purge auditship >/dev/null 2>&1 || true' EXIT
as_root dpkg -i "$deb"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[ "$(/usr/bin/auditship --version)" = "auditship $version" ] || fail "--version: $(/usr/bin/auditship --version)"
/usr/bin/auditship check-config --config /etc/auditship/auditship.toml >/dev/null \
  || fail "the installed configuration does not validate"
IFS=: read -r _ _ _ _ _ home shell < <(getent passwd auditship) || fail "no user auditship"
[ "$home" = /var/lib/auditship ] || fail "auditship's home is $home"
case "$shell" in */nologin | */false) ;; *) fail "auditship's shell is $shell" ;; esac
getent group auditship >/dev/null || fail "no group auditship"
[ "$(stat -c '%a %U %G' /var/lib/auditship)" = "700 auditship auditship" ] \
  || fail "/var/lib/auditship is $(stat -c '%a %U %G' /var/lib/auditship)"
if command -v systemctl >/dev/null 2>&1; then
  [ -L /etc/systemd/system/multi-user.target.wants/auditship.service ] \
    || fail "auditship.service is not enabled"
fi
zcat /usr/share/man/man1/auditship.1.gz | grep -q '^\.TH auditship 1 ' || fail "man page"
bash -c 'source /usr/share/bash-completion/completions/auditship && complete -p auditship' \
  >/dev/null || fail "bash completion does not register"
# Unit files as systemd reads them (the man page named in Documentation= included).
systemd-analyze verify /lib/systemd/system/auditship.service \
  /usr/lib/systemd/user/auditship.service || fail "systemd-analyze verify"
echo "ci-deb.sh: installed: binary, configuration, user, state directory, unit, man pages, completions"

as_root bash packaging/ci-unit.sh

# remove keeps the configuration, the state and the user; purge takes them all.
as_root dpkg -r auditship >/dev/null
[ -e /usr/bin/auditship ] && fail "remove left /usr/bin/auditship"
[ -e /etc/auditship/auditship.toml ] || fail "remove took the configuration"
[ -d /var/lib/auditship ] || fail "remove took the state directory"
getent passwd auditship >/dev/null || fail "remove took the user"
as_root dpkg --purge auditship >/dev/null 2>&1
trap - EXIT
for path in /usr/bin/auditship /lib/systemd/system/auditship.service \
  /usr/lib/systemd/user/auditship.service /etc/auditship /var/lib/auditship \
  /usr/share/man/man1/auditship.1.gz /usr/share/doc/auditship \
  /etc/systemd/system/multi-user.target.wants/auditship.service; do
  [ -e "$path" ] || [ -L "$path" ] && fail "purge left $path"
done
getent passwd auditship >/dev/null && fail "purge left the user auditship"
getent group auditship >/dev/null && fail "purge left the group auditship"
echo "ci-deb.sh: remove kept configuration, state and user; purge removed everything"
