#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, the Rust test suites
# (unit, integration, golden repositories, doc tests) and the independent
# Python reader of the format. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
python3 -m pip install --quiet --disable-pip-version-check -r tools/format-reader/requirements.txt pytest

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== independent format reader"
python3 -m pytest -q tools/format-reader
