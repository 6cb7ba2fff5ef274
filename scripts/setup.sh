#!/usr/bin/env bash
# Set everything up on a fresh Debian machine: the Fashion-MNIST files, a virtual environment
# in .venv and dropout-lab in it (editable, with the test tools). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_DATA=/usr/share/datasets/fashion-mnist
have_data() {
  for dir in "${DROPOUT_LAB_DATA:-}" "$DEBIAN_DATA" data/FashionMNIST/raw; do
    [ -n "$dir" ] && [ -f "$dir/train-images-idx3-ubyte.gz" ] && return 0
  done
  return 1
}
if ! have_data; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: Fashion-MNIST not found; run 'sudo apt-get install dataset-fashion-mnist'" \
         "or set DROPOUT_LAB_DATA to a folder with its four .gz files" >&2
  fi
fi

# CI: the browser test (tests/end_to_end/test_dashboard_browser.py) drives Debian's chromium through
# playwright's Python driver (a dev extra); playwright's own browser download is not used.
if [ "${CI:-}" = true ] && ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing chromium (apt-get install chromium), for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: CI=true needs chromium for the browser test; run 'sudo apt-get install chromium'" >&2
  fi
fi

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
echo "setup: ready (.venv/bin/dropout-lab)"
