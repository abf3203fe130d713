#!/usr/bin/env bash
# Install rcmd from this checkout.
#
#   packaging/install.sh          a virtual environment in .venv (works with a system Python
#                                 that refuses `pip install`, PEP 668), rcmd linked into
#                                 ~/.local/bin; no dev tools
#   packaging/install.sh --dev    the same plus the dev tools (pytest, ruff, mypy, build)
#                                 and Ray (the `cluster` extra, for its tests)
#   packaging/install.sh --here   into the Python that runs it ($PYTHON, else python3, or
#                                 the active virtualenv) with the dev tools and Ray: what CI does
#                                 (RCMD_INSTALL_HERE=1 does the same)
#
# PYTHON=/path/to/python3 picks the interpreter; RCMD_VENV=DIR another venv folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
dev=0
here="${RCMD_INSTALL_HERE:-0}"
for arg in "$@"; do
    case $arg in
        --dev) dev=1 ;;
        --here) here=1 ;;
        *) echo "install.sh: unknown option $arg (use --dev or --here)" >&2; exit 2 ;;
    esac
done
pip_quiet=(--quiet --disable-pip-version-check)

if [ "$here" = 1 ]; then
    "$PY" -m pip install "${pip_quiet[@]}" -e ".[dev,cluster]"
    echo "rcmd installed into $("$PY" -c 'import sys; print(sys.prefix)'): $(command -v rcmd || echo "$PY -m ipc.cli")"
    exit 0
fi

venv="${RCMD_VENV:-$PWD/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    "$PY" -m venv "$venv" || {
        echo "install.sh: could not create a virtual environment with $PY; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2
        exit 1
    }
fi
extra=""
[ "$dev" = 1 ] && extra="[dev,cluster]"
# compat mode: a plain path entry, not an import hook, so each `rcmd` starts faster.
"$venv/bin/python" -m pip install "${pip_quiet[@]}" -e ".$extra" --config-settings editable_mode=compat

bin="$HOME/.local/bin"
mkdir -p "$bin"
ln -sf "$venv/bin/rcmd" "$bin/rcmd"
echo "rcmd installed in $venv and linked as $bin/rcmd"
case ":$PATH:" in
    *":$bin:"*) ;;
    *) echo "add it to your PATH (in ~/.profile or ~/.bashrc): export PATH=\"\$HOME/.local/bin:\$PATH\"" ;;
esac
