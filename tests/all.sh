#!/usr/bin/env bash
# The project's test command: the Rust tests, then the Python package's
# tests (tests/python/) against the wheel, installed with `pip install .`
# into a fresh virtual environment (target/py-venv, made again each time).
# The wheel is built by maturin, which pip fetches from PyPI; it compiles
# the binaries in release mode (minutes the first time, then only what
# changed). pandas is tried, and its tests are skipped when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace

venv=target/py-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet . pytest
"$venv/bin/python" -m pip install --quiet pandas || echo "tests/all.sh: pandas not installed; its tests are skipped" >&2
# Run from tests/python, with nothing of the source tree on the path: the
# tests see the installed package and the binaries the wheel put on PATH.
bin="$PWD/$venv/bin"
cd tests/python
env -u CALLPOOL_SUPERVISOR -u CALLPOOL_HTTP_WORKER -u CALLPOOL_DEMO_API \
  PATH="$bin:$PATH" "$bin/python" -m pytest -q -p no:cacheprovider
