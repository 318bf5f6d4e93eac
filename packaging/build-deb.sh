#!/usr/bin/env bash
# Builds auditship's Debian package: the binary, then the files it generates (man
# pages, shell completions) into target/packaging/, then cargo-deb with the metadata
# in Cargo.toml ([package.metadata.deb]). Prints the .deb's path on its last line.
#
# Usage: bash packaging/build-deb.sh [--profile PROFILE]   (default: release)
# Needs cargo-deb: cargo install cargo-deb --locked --version 3.8.0
# The generated files also serve `cargo generate-rpm` ([package.metadata.generate-rpm]).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs a value}; shift 2 ;;
    *) echo "usage: $0 [--profile PROFILE]" >&2; exit 2 ;;
  esac
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked --version 3.8.0" >&2
  exit 1
fi

cargo build --locked --profile "$profile" --bin auditship

target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
  | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
case "$profile" in dev | test) profile_dir=debug ;; *) profile_dir=$profile ;; esac
bin="$target_dir/$profile_dir/auditship"

# Always under the source tree: Cargo.toml's asset paths are relative to it.
out=target/packaging
rm -rf "$out/man" "$out/completions"
mkdir -p "$out/man" "$out/completions"
"$bin" man --dir "$out/man" >/dev/null
gzip -9n "$out"/man/*.1
"$bin" completions bash >"$out/completions/auditship.bash"
"$bin" completions zsh >"$out/completions/_auditship"
"$bin" completions fish >"$out/completions/auditship.fish"

rm -f "$out"/auditship_*.deb
# cargo-deb warns that the dev profile is not meant for releases; CI packages its test
# build on purpose (packaging/ci-deb.sh).
# Stripped: the release profile keeps line tables for profiling, a package needs none.
cargo deb --no-build --strip --profile "$profile" --output "$out/" >&2
deb=$(ls "$out"/auditship_*.deb)
echo "$deb"
