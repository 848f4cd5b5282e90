#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, the Rust test suites
# (unit, integration, golden repositories, doc tests) and the independent
# Python reader of the format. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies and servers"
export PATH="$HOME/.cargo/bin:$PATH"
python3 -m pip install --quiet --disable-pip-version-check -r tools/format-reader/requirements.txt pytest
# Real servers the tests start on 127.0.0.1: s3s-fs and moto (S3), Azurite
# (Azure Blob), OpenSSH's sshd (SFTP).
bash scripts/install-test-servers.sh

echo "== cargo fmt"
cargo fmt --all -- --check

# The dependency policy of deny.toml. Licenses, duplicate versions and sources
# need only crates.io. Advisories need RustSec's advisory database, which is
# on GitHub, out of reach of this project's machines and CI (no registry
# package carries it): they are checked when CARGO_DENY_ADVISORY_DB names a
# checkout of it (a git clone of advisory-db), or when one was fetched
# before into target/advisory-dbs (deny.toml's db-path).
echo "== cargo deny"
cargo deny --locked check bans licenses sources
advisory_db=target/advisory-dbs/advisory-db-3157b0e258782691 # cargo-deny's name for it
if [ -n "${CARGO_DENY_ADVISORY_DB:-}" ] && { [ -L "$advisory_db" ] || [ ! -e "$advisory_db" ]; }; then
    mkdir -p "$(dirname "$advisory_db")"
    ln -sfn "$(cd "$CARGO_DENY_ADVISORY_DB" && pwd)" "$advisory_db"
fi
if [ -d "$advisory_db/crates" ]; then
    cargo deny --locked --offline check advisories
else
    echo "advisories not checked: no advisory database (set CARGO_DENY_ADVISORY_DB to a checkout of RustSec's advisory-db)"
fi

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The workspace build above unifies features (the tests enable backup-core's
# `internals` and `test-util`); each published crate must also build alone,
# with its default features, as a dependent builds it.
echo "== each crate alone, default features"
cargo clippy --locked -p backup-core -p backup-sinks -p backup-cli -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

# The Python binding, installed as a user installs it (pip install
# ./backup-py), but with the dev profile and the workspace's target directory
# so that it reuses what the tests above compiled (a user's install builds
# the release profile), then its type stubs, its typed tests and examples,
# and its tests.
echo "== Python binding"
python3 -m pip install --quiet --disable-pip-version-check mypy
CARGO_TARGET_DIR="$PWD/target" MATURIN_PEP517_ARGS="--profile dev" \
    python3 -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./backup-py
(
    cd backup-py
    python3 -m mypy.stubtest backup_toolkit
    python3 -m mypy --strict tests ../examples/python
    python3 -m pytest -q tests
)

echo "== independent format reader"
python3 -m pytest -q tools/format-reader

# The benchmark harness in quick mode (tiny datasets, backupctl beside
# restic, every restore compared byte for byte), so that it never rots.
echo "== benchmark harness (quick mode)"
python3 benches/compare/compare.py --quick --backupctl target/debug/backupctl

# Every decoder's fuzz target for a few seconds, from the committed seeds
# (the 10-minute runs: scripts/fuzz.sh 600, see fuzz/README.md).
echo "== fuzzing (short run)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-5}"
