#!/usr/bin/env bash
# Install rcmd from this checkout (editable) with the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
echo "rcmd installed: $(command -v rcmd || echo "$PY -m ipc.cli")"
