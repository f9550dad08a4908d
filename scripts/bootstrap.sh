#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv. Idempotent and fast when nothing changed:
# a stamp file records the hash of everything that decides the install, and a matching stamp skips pip entirely.
#
#   scripts/bootstrap.sh            CPU machine: torch==2.13.0 (local CPU build) + extras cpu,dev
#   MORPHABLE_EXTRAS=gpu,dev scripts/bootstrap.sh   GPU machine: bring your own CUDA torch first
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${MORPHABLE_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
EXTRAS=${MORPHABLE_EXTRAS:-cpu,dev}
CONSTRAINTS=$ROOT/constraints/cpu.txt

say() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. System library open3d needs (libusb-1.0). Install it when we are root, else explain.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing the system package libusb-1.0-0 (needed by open3d)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0) >/dev/null \
      || say "WARNING: apt-get could not install libusb-1.0-0; open3d (rendering) will fail to import"
  else
    say "WARNING: libusb-1.0 is missing and this user cannot install it."
    say "         Ask an administrator to run: apt-get install libusb-1.0-0   (open3d needs it for rendering)"
  fi
fi

# 1b. The test suite's UI end-to-end test drives Debian's chromium (Playwright never downloads a browser here).
if [[ ",$EXTRAS," == *",dev,"* ]] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing the system package chromium (for the UI end-to-end test; about a minute)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
      || say "WARNING: apt-get could not install chromium; the UI end-to-end test will be skipped"
  else
    say "NOTE: chromium is missing; the UI end-to-end test will be skipped (apt-get install chromium)"
  fi
fi

# 2. Python version.
"$PY" - <<'PYCHECK' || { say "Python >= 3.11 is required (set PYTHON=/path/to/python3.11)"; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PYCHECK

# 3. The venv, re-installed only when pyproject, constraints, extras or this script changed.
STAMP_INPUT=$(cat pyproject.toml "$CONSTRAINTS" scripts/bootstrap.sh; echo "$EXTRAS")
STAMP=$(printf '%s' "$STAMP_INPUT" | sha256sum | cut -c1-16)
if [ -f "$VENV/.morphable-stamp" ] && [ "$(cat "$VENV/.morphable-stamp")" = "$STAMP" ] \
   && "$VENV/bin/python" -c "import pipelines, dagster, torch" 2>/dev/null; then
  exit 0
fi
say "setting up $VENV (extras: $EXTRAS); first run takes about 2 minutes"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# pip on this kind of machine warns about every missing extra-index folder; keep real errors, drop that noise.
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }; return "${PIPESTATUS[0]}"; }
quiet "${PIP[@]}" install --upgrade pip
if [[ ",$EXTRAS," == *",cpu,"* ]]; then
  # The CPU torch build first, then everything else under the same constraint, so no resolver pulls CUDA torch.
  quiet "${PIP[@]}" install -c "$CONSTRAINTS" "torch==2.13.0"
  quiet "${PIP[@]}" install -c "$CONSTRAINTS" -e ".[$EXTRAS]"
else
  "$VENV/bin/python" -c "import torch" 2>/dev/null \
    || { say "GPU install: install your CUDA build of torch into $VENV first"; exit 1; }
  quiet "${PIP[@]}" install -e ".[$EXTRAS]"
fi
# lpips only for its linear-layer weights; its metadata would pull torchvision (broken with CPU torch).
quiet "${PIP[@]}" install --no-deps "lpips==0.1.4"
"${PIP[@]}" uninstall -y torchvision >/dev/null 2>&1 || true
echo "$STAMP" > "$VENV/.morphable-stamp"
say "ready: $VENV"
