#!/usr/bin/env bash
# Install everything the tests need (skipping what is present), lint, and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/ruff check netdiag tests bench captures
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
