# Sourced by .ci/run (and usable by hand): installs Debian's Orthanc with its DICOMweb plugin and dcmtk, and
# runs a throwaway Orthanc on loopback with HTTP authentication. Exports for the tests:
#   ZEBRA_TEST_DICOMWEB_URL, ZEBRA_TEST_DICOMWEB_USER, ZEBRA_TEST_DICOMWEB_PASSWORD
# The password is random per start; nothing here prints it.
ORTHANC_DIR="${ORTHANC_DIR:-/tmp/zebra-ci-orthanc}"
ORTHANC_TEMPLATE="${ORTHANC_TEMPLATE:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/orthanc.json.in}"

orthanc_python() {
  command -v python3 || command -v python3.11
}

orthanc_free_port() {
  "$(orthanc_python)" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

orthanc_start() {
  if ! command -v Orthanc >/dev/null 2>&1 || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] \
    || ! command -v dsrdump >/dev/null 2>&1 || ! command -v dciodvfy >/dev/null 2>&1; then
    echo "ci: installing Orthanc, its DICOMweb plugin, dcmtk and dicom3tools (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # The packages' own service is never started here: policy-rc.d of the image, or it fails harmlessly.
    apt-get install -y -qq -o DPkg::Lock::Timeout=600 orthanc orthanc-dicomweb dcmtk dicom3tools >/dev/null
  fi
  local plugin=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
  [ -e "$plugin" ] || { echo "ci: Orthanc's DICOMweb plugin is missing ($plugin)" >&2; return 1; }
  orthanc_stop
  rm -rf "$ORTHANC_DIR"
  mkdir -p "$ORTHANC_DIR/db"
  chmod 700 "$ORTHANC_DIR"
  local port dicom_port user password
  port=$(orthanc_free_port)
  dicom_port=$(orthanc_free_port)
  user="zebra-ci"
  password=$("$(orthanc_python)" -c 'import secrets; print(secrets.token_urlsafe(18))')
  sed -e "s#@DIR@#$ORTHANC_DIR#g" -e "s#@PLUGINS@#$plugin#g" -e "s#@PORT@#$port#g" \
    -e "s#@DICOM_PORT@#$dicom_port#g" -e "s#@USER@#$user#g" -e "s#@PASSWORD@#$password#g" \
    "$ORTHANC_TEMPLATE" >"$ORTHANC_DIR/orthanc.json"
  chmod 600 "$ORTHANC_DIR/orthanc.json"
  Orthanc --logdir="$ORTHANC_DIR" "$ORTHANC_DIR/orthanc.json" >"$ORTHANC_DIR/stdout.log" 2>&1 &
  echo $! >"$ORTHANC_DIR/pid"
  local url="http://127.0.0.1:$port"
  local i
  for i in $(seq 1 120); do
    # The DICOMweb root answers only when the plugin is loaded and the credentials work.
    if curl -sf -u "$user:$password" "$url/dicom-web/studies" -o /dev/null; then
      export ZEBRA_TEST_DICOMWEB_URL="$url/dicom-web"
      export ZEBRA_TEST_DICOMWEB_USER="$user"
      export ZEBRA_TEST_DICOMWEB_PASSWORD="$password"
      echo "ci: Orthanc ready at $url (DICOMweb at /dicom-web, authentication on)"
      return 0
    fi
    if ! kill -0 "$(cat "$ORTHANC_DIR/pid")" 2>/dev/null; then
      break
    fi
    sleep 0.5
  done
  echo "ci: Orthanc did not start; its log:" >&2
  tail -n 40 "$ORTHANC_DIR"/*.log >&2 || true
  orthanc_stop
  return 1
}

orthanc_stop() {
  local pid
  [ -f "$ORTHANC_DIR/pid" ] || return 0
  pid=$(cat "$ORTHANC_DIR/pid")
  # Only the Orthanc this script started: a stale pid file must not stop whatever reuses that pid.
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "Orthanc.*$ORTHANC_DIR"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$ORTHANC_DIR/pid"
}
