#!/usr/bin/env bash
# A virtual YubiKey for the `yubikey` backend tests: pcscd with the
# vsmartcard vpcd reader, and our piv-authenticator card (tests/virtual-piv).
#
#   tests/services/piv.sh start|stop
#
# Builds the card, starts pcscd and the card by PID under $KXCA_TEST_RUN_DIR
# and writes $KXCA_TEST_RUN_DIR/piv.env (PIV_READER, PIV_SERIAL, ...) for
# the tests. pcscd listens on /run/pcscd/pcscd.comm whatever we ask, so a
# pcscd we did not start makes `start` fail loudly rather than share or kill
# it. vpcd listens on every interface; both daemons run in a private network
# namespace (when unshare allows it) so the card port is not reachable.
# Installs nothing: packages are in tests/deps/apt.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
run=${KXCA_TEST_RUN_DIR:?KXCA_TEST_RUN_DIR must be set (tests/run sets it)}
dir="$run/piv"
reader="Yubico YubiKey virtual PIV"
port=35963

log() { printf '== piv.sh: %s\n' "$*" >&2; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  mkdir -p "$dir/reader.conf.d"
  if pgrep -x pcscd >/dev/null && ! alive "$dir/pcscd.pid"; then
    log "a pcscd not started by this script is running (pid $(pgrep -x pcscd | tr '\n' ' '))."
    log "it owns /run/pcscd/pcscd.comm; stop it (systemctl stop pcscd.socket pcscd) and retry."
    exit 1
  fi
  log "building the virtual card"
  cargo build --quiet --release --locked --manifest-path "$root/tests/virtual-piv/Cargo.toml"
  local card="$root/tests/virtual-piv/target/release/virtual-piv"
  local vpcd
  vpcd=$(ls /usr/lib/pcsc/drivers/serial/libifdvpcd.so* 2>/dev/null | head -1)
  [[ -n "$vpcd" ]] || { log "libifdvpcd.so not found (Debian package vsmartcard-vpcd)"; exit 1; }
  # ykcs11 lists only readers whose name contains "Yubico".
  cat >"$dir/reader.conf.d/vpcd" <<CONF
FRIENDLYNAME "$reader"
DEVICENAME   /dev/null:$(printf '0x%X' "$port")
LIBPATH      $vpcd
CHANNELID    $(printf '0x%X' "$port")
CONF
  local netns=()
  if unshare --net true 2>/dev/null; then
    netns=(unshare --net -- sh -c 'ip link set lo up && exec "$0" "$@"')
  else
    log "unshare --net not permitted: vpcd port $port is open on all interfaces"
  fi
  "${netns[@]}" pcscd --foreground --config "$dir/reader.conf.d" >"$dir/pcscd.log" 2>&1 &
  echo $! >"$dir/pcscd.pid"
  local i
  for i in $(seq 50); do [[ -S /run/pcscd/pcscd.comm ]] && break; sleep 0.1; done
  sleep 0.5
  if ((${#netns[@]})); then
    nsenter --net="/proc/$(cat "$dir/pcscd.pid")/ns/net" "$card" "$port" >"$dir/card.log" 2>&1 &
  else
    "$card" "$port" >"$dir/card.log" 2>&1 &
  fi
  echo $! >"$dir/card.pid"
  for i in $(seq 50); do
    if yubico-piv-tool -r Yubico -a status >"$dir/status.txt" 2>&1; then break; fi
    sleep 0.2
  done
  grep -q "Serial Number" "$dir/status.txt" || { cat "$dir/status.txt" "$dir/card.log" >&2; log "the virtual card did not answer"; stop; exit 1; }
  local serial
  serial=$(awk -F'\t' '/Serial Number/ {print $2}' "$dir/status.txt" | tr -d ' \t')
  cat >"$run/piv.env" <<ENV
PIV_READER=$reader
PIV_SERIAL=$serial
PIV_RUN_DIR=$dir
ENV
  log "virtual PIV card serial $serial in reader \"$reader\""
}

stop() {
  local f
  for f in card pcscd; do
    if alive "$dir/$f.pid"; then
      kill "$(cat "$dir/$f.pid")" 2>/dev/null || true
      for _ in $(seq 30); do alive "$dir/$f.pid" || break; sleep 0.1; done
    fi
    rm -f "$dir/$f.pid"
  done
  rm -f "$run/piv.env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
