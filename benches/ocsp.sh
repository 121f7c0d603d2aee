#!/usr/bin/env bash
# OCSP responder benchmark: `kxca serve` against OpenSSL's own responder
# (`openssl ocsp -port -index -rsigner -CA`) on the same CA data, the same
# responder key and certificate, both driven by wrk over loopback with the
# same POST bodies:
#   - cached: a request without nonce (kxca answers from its pre-signed
#     responses; OpenSSL signs every response);
#   - nonce:  a request with a nonce (both sign per request).
# at 1 and 64 connections. Prints requests/s and p50/p99 side by side with ratios.
# Usage: benches/ocsp.sh [SECONDS_PER_RUN] [OPENSSL_PROCESSES]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
multi=${2:-1}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for tool in ab wrk openssl python3; do
  command -v "$tool" >/dev/null || { echo "benches/ocsp.sh needs $tool (tests/deps/apt.txt)" >&2; exit 1; }
done
cargo build --release --bin kxca >/dev/null 2>&1
kxca="$(pwd)/target/release/kxca"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kport=$(free_port)
oport=$(free_port)

export KXCA_HOME="$work/home" KXCA_ACTOR=bench
echo "bench-passphrase-$$" > "$work/pass"
"$kxca" init --key-secret-file "$work/pass" --base-url "http://127.0.0.1:$kport" >/dev/null
issue_json=$("$kxca" issue --json --centre JC --union-code 26276 --branch-code 00 --contract-unit 2627600 \
  --office-code 1234567 --contact-code 001 --office-name ベンチ --contact-name 試験 --email bench@example.jp)
cert=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["certificate"])' "$issue_json")
serial=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["serial"].upper())' "$issue_json")

"$kxca" serve --listen "127.0.0.1:$kport" >"$work/kxca.out" 2>"$work/kxca.log" &
pids+=($!)
until grep -q listening "$work/kxca.out" 2>/dev/null; do
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "kxca serve failed:" >&2; cat "$work/kxca.log" >&2; exit 1; }
  sleep 0.2
done

# The same responder key and certificate for OpenSSL, from the kxca home.
openssl pkcs8 -inform DER -in "$KXCA_HOME/keys/ocsp-responder.p8" -passin "file:$work/pass" -out "$work/rkey.pem"
python3 - "$KXCA_HOME/kxca.db" "$work/rsigner.der" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
der, = db.execute("SELECT certificate FROM ocsp_responder_certs ORDER BY id DESC LIMIT 1").fetchone()
open(sys.argv[2], "wb").write(der)
PY
openssl x509 -inform DER -in "$work/rsigner.der" -out "$work/rsigner.pem"
enddate=$(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)
expiry=$(date -u -d "$enddate" +%y%m%d%H%M%SZ)
printf 'V\t%s\t\t%s\tunknown\t/CN=bench\n' "$expiry" "$serial" > "$work/index.txt"
openssl ocsp -index "$work/index.txt" -port "$oport" -rsigner "$work/rsigner.pem" \
  -rkey "$work/rkey.pem" -CA "$KXCA_HOME/ca/issuing-1.pem" -ndays 4 -multi "$multi" >/dev/null 2>"$work/openssl.log" &
pids+=($!)
sleep 1
kill -0 "${pids[-1]}" 2>/dev/null || { echo "openssl ocsp responder failed:" >&2; cat "$work/openssl.log" >&2; exit 1; }

issuer="$KXCA_HOME/ca/issuing-1.pem"
openssl ocsp -issuer "$issuer" -cert "$cert" -no_nonce -reqout "$work/cached.der" >/dev/null
openssl ocsp -issuer "$issuer" -cert "$cert" -reqout "$work/nonce.der" >/dev/null
# Both responders must give a verifiable answer before they are timed.
for port in "$kport" "$oport"; do
  timeout 20 openssl ocsp -timeout 10 -issuer "$issuer" -cert "$cert" -url "http://127.0.0.1:$port/" -CAfile "$KXCA_HOME/ca/root.pem" 2>&1 \
    | grep -q "Response verify OK" || { echo "responder on port $port does not answer correctly" >&2; exit 1; }
done

for kind in cached nonce; do
  cat > "$work/$kind.lua" <<LUA
local f = assert(io.open("$work/$kind.der", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/ocsp-request"
LUA
done

# wrk prints latencies as 123.45us / 1.23ms / 1.02s: normalise to ms.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }

# OpenSSL's responder answers HTTP/1.0 and closes the connection without a
# Content-Length, which wrk cannot count; ab (apache2-utils) reads such
# responses, so the side-by-side table drives both responders with ab.
# ab counts responses whose length differs from the first as "failed"
# (ECDSA signatures vary by a byte): only non-2xx and exceptions are errors.
run_ab() { # port kind conns -> "rps p50 p99 errors"
  local out; out=$(timeout $((secs + 30)) ab -q -t "$secs" -n 10000000 -c "$3" -p "$work/$2.der" \
    -T application/ocsp-request "http://127.0.0.1:$1/" 2>&1)
  local rps p50 p99 errs
  rps=$(awk '/Requests per second/ {printf "%.0f", $4}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/^Non-2xx/ {print}' <<<"$out" | tr -s ' ' | paste -sd';' -)
  echo "${rps:-0} ${p50:-?} ${p99:-?} ${errs:-none}"
}

run() { # port kind conns -> "rps p50 p99 errors"
  local threads=1; (( $3 > 1 )) && threads=2
  local out; out=$(timeout $((secs + 30)) wrk -t"$threads" --timeout 5s -c"$3" -d"${secs}s" --latency -s "$work/$2.lua" "http://127.0.0.1:$1/" 2>&1)
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr -s ' ' | paste -sd';' -)
  echo "$rps $p50 $p99 ${errs:-none}"
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "${secs}s per run over loopback; openssl ocsp -multi $multi; both sign with the same P-256 responder key"
echo
echo "== ab (apache2-utils) against both responders; latencies in whole ms (ab's resolution)"
printf '%-7s %5s | %10s %7s %7s | %10s %7s %7s | %8s\n' request conns "kxca rps" "p50" "p99" "ossl rps" "p50" "p99" "rps ratio"
for kind in cached nonce; do
  for conns in 1 64; do
    read -r krps kp50 kp99 kerr <<<"$(run_ab "$kport" "$kind" "$conns")"
    read -r orps op50 op99 oerr <<<"$(run_ab "$oport" "$kind" "$conns")"
    ratio=$(awk -v a="$krps" -v b="$orps" 'BEGIN { if (b > 0) printf "%.1fx", a/b; else print "n/a" }')
    printf '%-7s %5s | %10s %7s %7s | %10s %7s %7s | %8s\n' "$kind" "$conns" "$krps" "$kp50" "$kp99" "$orps" "$op50" "$op99" "$ratio"
    [[ "$kerr" == none ]] || echo "  kxca: $kerr"
    [[ "$oerr" == none ]] || echo "  openssl: $oerr"
  done
done
echo
echo "== wrk against kxca only (keep-alive, finer latency; wrk cannot read OpenSSL's close-delimited replies)"
printf '%-7s %5s | %10s %9s %9s\n' request conns "kxca rps" "p50 ms" "p99 ms"
for kind in cached nonce; do
  for conns in 1 64; do
    read -r krps kp50 kp99 kerr <<<"$(run "$kport" "$kind" "$conns")"
    printf '%-7s %5s | %10s %9s %9s\n' "$kind" "$conns" "$krps" "$kp50" "$kp99"
    [[ "$kerr" == none ]] || echo "  kxca: $kerr"
  done
done
