#!/usr/bin/env bash
# Set up this checkout for svdkit's two commands (README): Debian's chromium for the browser test, a virtual
# environment in .venv with the pinned requirements, and svdkit itself installed editable into it.
# Safe to run again: a step that is already done is skipped (pip only checks what is installed).
#
#   bash scripts/setup.sh            # then .venv/bin/python -m svdkit ... or .venv/bin/python -m pytest
#   PYTHON=python3.11 bash scripts/setup.sh   # the Python that makes .venv (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Debian's chromium: the browser test drives it (Playwright never downloads a browser here).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    sudo=(none)
  fi
  if [ "${sudo[*]}" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: chromium is missing and cannot be installed here (needs apt-get, as root or with sudo);" \
         "the browser test will fail until it is: apt-get install chromium" >&2
  else
    echo "setup: installing Debian's chromium (apt-get install chromium)" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

# 2. The virtual environment, made once.
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with ${PYTHON:-python3}" >&2
  "${PYTHON:-python3}" -m venv .venv
fi

# 3. The pinned, tested requirements (a no-op when they are installed already).
.venv/bin/python -m pip install -q -r requirements.txt

# 4. svdkit from this checkout, editable, with no dependencies of its own (requirements.txt pins them all).
#    Skipped when .venv already imports svdkit from here.
here=$(pwd -P)
found=$(cd / && "$here/.venv/bin/python" -c 'import svdkit; print(svdkit.__file__)' 2>/dev/null || true)
if [ "$found" != "$here/svdkit/__init__.py" ]; then
  .venv/bin/python -m pip install -q --no-deps -e .
fi
