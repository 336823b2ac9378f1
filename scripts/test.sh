#!/usr/bin/env bash
# Set up (once, with the test dependencies) and run the test suite. CPU tests by default;
# on a GPU machine add: -m gpu
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
