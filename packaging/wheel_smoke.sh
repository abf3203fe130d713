#!/usr/bin/env bash
# Build the sdist and the wheel (the wheel from the sdist, so both are checked), install the
# wheel alone into a fresh venv, and index + search + stop with it. Catches files missing
# from the package. Run by .ci/run; takes a few minutes (the venv installs from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
out=$(mktemp -d)
trap 'RCMD_HOME="$out/home" "$out/venv/bin/rcmd" stop >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
"$PY" -m build --sdist --wheel --outdir "$out/dist" . >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
ls "$out/dist"
"$PY" -m venv "$out/venv"
"$out/venv/bin/pip" install --quiet --disable-pip-version-check "$out"/dist/rcmd-*.whl \
    >"$out/pip.log" 2>&1 || { cat "$out/pip.log"; exit 1; }
cp -r tests/fixtures/demo_crate "$out/crate"
export RCMD_HOME="$out/home"
cd "$out"  # away from the checkout: only the installed wheel is importable
"$out/venv/bin/rcmd" --version
"$out/venv/bin/rcmd" index "$out/crate" --wait
"$out/venv/bin/rcmd" search "where do we retry failed http requests" --json >"$out/hits.json"
"$out/venv/bin/python" - "$out/hits.json" <<'PY'
import json, sys
hits = json.load(open(sys.argv[1]))["results"]
assert hits and hits[0]["path"] == "src/net/retry.rs", hits[:2]
print("wheel smoke test: ok,", len(hits), "results, top", hits[0]["symbol"])
PY
"$out/venv/bin/rcmd" stop
