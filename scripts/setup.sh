#!/usr/bin/env bash
# Create .venv in the repository root and install the pinned dependencies (idempotent:
# re-installs only when requirements*.txt change). Needs Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1))" >&2
  exit 2
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing dependencies into .venv (about 5 minutes the first time)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  echo "$want" > "$stamp"
fi
# Orthanc with its DICOMweb plugin, and chromium, for tests/viewers: Debian packages, installed only when
# missing and only as root (CI); elsewhere those tests skip and say why
bash scripts/orthanc.sh install || echo "setup: Orthanc not installed; the Orthanc tests will skip"
install_chromium() {  # a fresh machine may have no package lists yet: update only when needed
  [ "$(id -u)" = 0 ] || return 1
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; }
}
command -v chromium >/dev/null || install_chromium || echo "setup: chromium not installed; the OHIF test will skip"
echo "setup: .venv ready ($(.venv/bin/python -c 'import monailabel, monai, torch; print("monailabel", monailabel.__version__, "monai", monai.__version__, "torch", torch.__version__)' 2>/dev/null))"
