#!/usr/bin/env bash
# A local Orthanc PACS with DICOMweb for the muscle server (README: "Orthanc (DICOMweb PACS)").
#
#   bash scripts/orthanc.sh            # install if missing, then run Orthanc in the foreground
#   bash scripts/orthanc.sh install    # only install the Debian packages if missing (setup, CI)
#   bash scripts/orthanc.sh url        # print the DICOMweb URL and the login to use
#
# Settings (environment): ORTHANC_PORT (default 8042), ORTHANC_DIR (default var/orthanc:
# storage, index and the generated config; git-ignored), ORTHANC_USER (default muscle),
# ORTHANC_PASSWORD (default: a random one made on the first start and kept, readable only by
# you, in $ORTHANC_DIR/password), ORTHANC_POSTGRESQL (a JSON file with a "PostgreSQL" section,
# see deploy/orthanc/postgresql.example.json: the index then lives in PostgreSQL, and the
# Debian package orthanc-postgresql is installed too). The fixed settings live in
# deploy/orthanc/orthanc.json.
set -euo pipefail
cd "$(dirname "$0")/.."

PLUGINS=/usr/share/orthanc/plugins
PLUGIN=$PLUGINS/libOrthancDicomWeb.so
PG_PLUGIN=$PLUGINS/libOrthancPostgreSQLIndex.so
PACKAGES="orthanc orthanc-dicomweb"
[ -z "${ORTHANC_POSTGRESQL:-}" ] || PACKAGES="$PACKAGES orthanc-postgresql"
PORT=${ORTHANC_PORT:-8042}
DIR=${ORTHANC_DIR:-var/orthanc}
USER_NAME=${ORTHANC_USER:-muscle}

installed() {
  command -v Orthanc >/dev/null 2>&1 && [ -f "$PLUGIN" ] && { [ -z "${ORTHANC_POSTGRESQL:-}" ] || [ -f "$PG_PLUGIN" ]; }
}

install() {
  installed && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "orthanc.sh: Orthanc is not installed; as root on Debian: apt-get install $PACKAGES" >&2
    return 1
  fi
  echo "orthanc.sh: installing the Debian packages $PACKAGES" >&2
  export DEBIAN_FRONTEND=noninteractive
  # a fresh machine may have no package lists yet: update only when the install needs it
  apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null; }
  # the package starts Debian's own service (port 8042, DICOM port on, no login) where an init
  # system runs: it is not ours and would hold our port, so stop and disable it
  if command -v systemctl >/dev/null && systemctl is-active --quiet orthanc 2>/dev/null; then
    systemctl disable --now orthanc >/dev/null 2>&1 || true
  fi
  installed
}

password() {
  if [ -n "${ORTHANC_PASSWORD:-}" ]; then echo "$ORTHANC_PASSWORD"; return; fi
  mkdir -p "$DIR"
  if [ ! -s "$DIR/password" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DIR/password")
  fi
  cat "$DIR/password"
}

case "${1:-start}" in
  install)
    install
    ;;
  url)
    echo "DICOMweb URL: http://127.0.0.1:$PORT/dicom-web"
    echo "login: $USER_NAME / $(password)"
    ;;
  start)
    install
    mkdir -p "$DIR/storage" "$DIR/config"
    pass=$(password)
    cp deploy/orthanc/orthanc.json "$DIR/config/orthanc.json"
    plugins="\"$PLUGIN\""
    rm -f "$DIR/config/postgresql.json"
    if [ -n "${ORTHANC_POSTGRESQL:-}" ]; then  # the index in PostgreSQL (department scale)
      (umask 077; cp "$ORTHANC_POSTGRESQL" "$DIR/config/postgresql.json")
      plugins="$plugins, \"$PG_PLUGIN\""
    fi
    # the per-run half of the configuration; Orthanc merges every *.json of the folder
    (umask 077; cat > "$DIR/config/runtime.json" <<EOF
{
  "HttpPort" : $PORT,
  "StorageDirectory" : "$(cd "$DIR" && pwd)/storage",
  "IndexDirectory" : "$(cd "$DIR" && pwd)/storage",
  "RegisteredUsers" : { "$USER_NAME" : "$pass" },
  "Plugins" : [ $plugins ]
}
EOF
)
    echo "orthanc.sh: DICOMweb on http://127.0.0.1:$PORT/dicom-web (login $USER_NAME, password in $DIR/password or \$ORTHANC_PASSWORD)" >&2
    exec Orthanc "$DIR/config"
    ;;
  *)
    echo "usage: bash scripts/orthanc.sh [start|install|url]" >&2
    exit 2
    ;;
esac
