#!/usr/bin/env bash
# OCSP responder benchmark: `kxca serve` against OpenSSL's own responder
# (`openssl ocsp -port -index -rsigner -CA`) on the same CA data, the same
# responder key and certificate, both driven by the same load generator
# (oha, a hyper-based HTTP client that also reads OpenSSL's HTTP/1.0
# close-delimited replies) over loopback with the same POST bodies:
#   - cached: a request without nonce (kxca answers from its pre-signed
#     responses; OpenSSL signs every response);
#   - nonce:  a request with a nonce (both sign per request).
# at 1 and 64 connections. Prints requests/s and p50/p99 side by side with
# ratios, and for every run the HTTP status counts, client errors and body
# bytes per response, so that a responder that fails fast cannot look fast.
#
# A "flood" section then times kxca's cached answers alone and again while a
# second generator (wrk, a Lua script) POSTs random unknown serials, with
# the default live-signing budget: ratios from the same run.
#
# Usage: benches/ocsp.sh [SECONDS_PER_RUN] [OPENSSL_PROCESSES]
# Environment:
#   SECTIONS="compare flood"  which sections to run (compare = against OpenSSL,
#                     then nginx; flood = the random-serial flood, needs only wrk)
#   FLOOD_CONNS=8 FLOOD_DELAY_MS=0  the flood: connections, pause between its
#                     requests on each (0: as fast as the server answers)
#   KXCA_BIN=path     time this kxca binary instead of building target/release/kxca
#   KXCA_WORKERS=n    [serve] workers for kxca (default: the config's default)
#   OHA_THREADS=n     oha worker threads (default 1: the other core serves)
#   WAIT_LOAD=0.7     first wait (up to 10 min) until the 1-min load is below this
#   OHA=path          oha binary; else $OHA_ROOT/bin/oha, installed there with
#                     `cargo install` if missing (OHA_ROOT default /work/tools)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
multi=${2:-1}
sections=" ${SECTIONS:-compare flood} "
compare=0; [[ "$sections" == *" compare "* ]] && compare=1
flood=0; [[ "$sections" == *" flood "* ]] && flood=1
oha_threads=${OHA_THREADS:-1}
oha_root=${OHA_ROOT:-/work/tools}
oha=${OHA:-$oha_root/bin/oha}
work=$(mktemp -d)
pids=()
cleanup() {
  # openssl ocsp -multi forks workers: stop them by their parent's PID too.
  for pid in "${pids[@]}"; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  sleep 0.5
  # The -multi parent was seen to outlive SIGTERM: make sure.
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then pkill -9 -P "$pid" 2>/dev/null || true; kill -9 "$pid" 2>/dev/null || true; fi
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for tool in openssl python3 curl; do
  command -v "$tool" >/dev/null || { echo "benches/ocsp.sh needs $tool (tests/deps/apt.txt)" >&2; exit 1; }
done
if ((flood)); then
  command -v wrk >/dev/null || { echo "the flood section needs wrk (apt install wrk)" >&2; exit 1; }
fi
if ((compare)) && [[ ! -x "$oha" ]]; then
  # 1.16.0 builds on rustc 1.95; its default rustls backend pulls aws-lc
  # (a long C build), and loopback HTTP needs no TLS, so native-tls it is.
  echo "installing oha into $oha_root (once)" >&2
  cargo install oha --version 1.16.0 --locked --no-default-features --features native-tls \
    --root "$oha_root" >&2
fi
if [[ -n "${KXCA_BIN:-}" ]]; then
  kxca=$(realpath "$KXCA_BIN")
else
  cargo build --release --bin kxca >/dev/null 2>&1
  kxca="$(pwd)/target/release/kxca"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kport=$(free_port)
oport=$(free_port)

export KXCA_HOME="$work/home" KXCA_ACTOR=bench
echo "bench-passphrase-$$" > "$work/pass"
"$kxca" init --key-secret-file "$work/pass" --base-url "http://127.0.0.1:$kport" >/dev/null
if [[ -n "${KXCA_WORKERS:-}" ]]; then
  sed -i "/^\[serve\]/a workers = $KXCA_WORKERS" "$KXCA_HOME/kxca.toml"
fi
cp "$KXCA_HOME/kxca.toml" "$work/kxca.toml.default"
# The comparison times signing itself (the nonce rows): lift the live-signing
# budget there, or kxca would answer most nonce requests with the pre-signed
# response without the nonce. The flood section restores the default.
sed -i -e 's/^live_signatures_per_second = .*/live_signatures_per_second = 100000/' \
  -e 's/^live_signature_burst = .*/live_signature_burst = 100000/' \
  -e 's/^max_queued_signatures = .*/max_queued_signatures = 100000/' "$KXCA_HOME/kxca.toml"
issue_json=$("$kxca" issue --json --centre JC --union-code 26276 --branch-code 00 --contract-unit 2627600 \
  --office-code 1234567 --contact-code 001 --office-name ベンチ --contact-name 試験 --email bench@example.jp)
cert=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["certificate"])' "$issue_json")
serial=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["serial"].upper())' "$issue_json")

# The private role pre-signs the answers kxca serve hands out.
"$kxca" daemon >"$work/daemon.out" 2>"$work/daemon.log" &
pids+=($!)
until grep -q ready "$work/daemon.out" 2>/dev/null; do
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "kxca daemon failed:" >&2; cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.2
done

# The access log stays on (one line per request, as in production), into a file.
"$kxca" serve --listen "127.0.0.1:$kport" >"$work/kxca.out" 2>"$work/kxca.log" &
pids+=($!)
kxca_pid=$!
until grep -q listening "$work/kxca.out" 2>/dev/null; do
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "kxca serve failed:" >&2; cat "$work/kxca.log" >&2; exit 1; }
  sleep 0.2
done

issuer="$KXCA_HOME/ca/issuing-1.pem"
if ((compare)); then
# The same responder key and certificate for OpenSSL, from the kxca home.
openssl pkcs8 -inform DER -in "$KXCA_HOME/ocsp/responder.p8" -passin "file:$KXCA_HOME/ocsp/responder.secret" -out "$work/rkey.pem"
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
  -rkey "$work/rkey.pem" -CA "$KXCA_HOME/ca/issuing-1.pem" -ndays 4 \
  $( ((multi > 1)) && echo "-multi $multi") >/dev/null 2>"$work/openssl.log" &
pids+=($!)
sleep 1
kill -0 "${pids[-1]}" 2>/dev/null || { echo "openssl ocsp responder failed:" >&2; cat "$work/openssl.log" >&2; exit 1; }

fi
openssl ocsp -issuer "$issuer" -cert "$cert" -no_nonce -reqout "$work/cached.der" >/dev/null
openssl ocsp -issuer "$issuer" -cert "$cert" -reqout "$work/nonce.der" >/dev/null
# Both responders must give a verifiable answer before they are timed, and
# the body sizes they send are what every timed response must carry.
declare -A size
((compare)) || oport=
for who in kxca:$kport ${oport:+openssl:$oport}; do
  name=${who%%:*} port=${who#*:}
  timeout 20 openssl ocsp -timeout 10 -issuer "$issuer" -cert "$cert" -url "http://127.0.0.1:$port/" -CAfile "$KXCA_HOME/ca/root.pem" 2>&1 \
    | grep -q "Response verify OK" || { echo "$name on port $port does not answer correctly" >&2; exit 1; }
  for kind in cached nonce; do
    size[$name.$kind]=$(curl -s --max-time 10 -H 'Content-Type: application/ocsp-request' \
      --data-binary "@$work/$kind.der" "http://127.0.0.1:$port/" | wc -c)
  done
done

wait_quiet() {
  [[ -n "${WAIT_LOAD:-}" ]] || return 0
  local i
  for ((i = 0; i < 120; i++)); do
    awk -v max="$WAIT_LOAD" '{ exit !($1 < max) }' /proc/loadavg && return 0
    sleep 5
  done
  echo "load still $(cut -d' ' -f1 /proc/loadavg) after 10 min; measuring anyway" >&2
}

# -w lets requests in flight at the deadline finish: without it oha drops
# those connections half-way, which it counts as errors and which left
# OpenSSL's responder spinning at 100% CPU on the aborted connection.
run() { # name port kind conns [GET-path] -> "rps p50 p99 check"
  local json req=(-m POST -T application/ocsp-request -D "$work/$3.der") url="http://127.0.0.1:$2/"
  if [[ -n "${5:-}" ]]; then req=(); url="http://127.0.0.1:$2$5"; fi
  json=$(timeout $((secs + 60)) "$oha" --no-tui --output-format json --worker-threads "$oha_threads" \
    -z "${secs}s" -w -c "$4" "${req[@]}" "$url" 2>/dev/null) || { echo "0 - - oha-failed"; return; }
  python3 - "$json" "${size[$1.$3]}" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); want = int(sys.argv[2])
s = r["summary"]; lat = r["latencyPercentiles"]
codes = r["statusCodeDistribution"]; errors = r["errorDistribution"]
ok = codes.get("200", 0)
body = s["totalData"] / ok if ok else 0
# ECDSA signatures vary by a byte or two between responses.
check = "ok" if ok and not errors and set(codes) == {"200"} and abs(body - want) <= 3 else "BAD"
detail = f"{check}:200x{ok},other={sum(codes.values()) - ok},errors={sum(errors.values())},body={body:.0f}B/{want}B"
if errors:
    detail += "," + ";".join(f"{k}x{v}" for k, v in errors.items()).replace(" ", "_")
rps = ok / s["total"]
ms = lambda v: f"{v * 1000:.3f}" if v is not None else "-"
print(f"{rps:.0f} {ms(lat['p50'])} {ms(lat['p99'])} {detail}")
PY
}

# Only before the first run: the runs themselves raise the load average.
wait_quiet
if ((compare)); then
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "oha $("$oha" --version | awk '{print $2}') with $oha_threads worker thread(s), ${secs}s per run, over loopback;"
echo "kxca serve [serve] workers=${KXCA_WORKERS:-default}, access log on; openssl ocsp $( ((multi > 1)) && echo "-multi $multi" || echo "in one process (its default)");"
echo "both sign with the same P-256 responder key. Keep-alive is the client's choice (oha keeps"
echo "connections open): kxca keeps them, OpenSSL's responder closes every connection, so"
echo "its figures include a TCP connect per request -- that is part of what is measured."
echo "rps counts 200 responses only; 'check' = status codes, client errors, body bytes vs a curl fetch."
echo
printf '%-7s %5s | %9s %8s %8s | %9s %8s %8s | %7s %7s\n' request conns "kxca rps" "p50 ms" "p99 ms" "ossl rps" "p50 ms" "p99 ms" "rps x" "p99 x"
checks=()
for kind in cached nonce; do
  for conns in 1 64; do
    l1=$(cut -d' ' -f1 /proc/loadavg)
    read -r krps kp50 kp99 kcheck <<<"$(run kxca "$kport" "$kind" "$conns")"
    l2=$(cut -d' ' -f1 /proc/loadavg)
    read -r orps op50 op99 ocheck <<<"$(run openssl "$oport" "$kind" "$conns")"
    rx=$(awk -v a="$krps" -v b="$orps" 'BEGIN { if (b > 0) printf "%.1f", a/b; else print "n/a" }')
    px=$(awk -v a="$kp99" -v b="$op99" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1f", b/a; else print "n/a" }')
    printf '%-7s %5s | %9s %8s %8s | %9s %8s %8s | %7s %7s\n' "$kind" "$conns" "$krps" "$kp50" "$kp99" "$orps" "$op50" "$op99" "$rx" "$px"
    checks+=("$kind/$conns kxca $kcheck (load $l1) | openssl $ocheck (load $l2)")
    [[ "$kind/$conns" == cached/64 ]] && ocached64=$orps
  done
done
echo
echo "'rps x' = kxca/OpenSSL requests per second; 'p99 x' = OpenSSL p99 / kxca p99."
printf '%s\n' "${checks[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kxca access log: $(wc -l <"$work/kxca.log") lines; dropped: $(curl -s "http://127.0.0.1:$kport/metrics" | awk '/^kxca_access_log_dropped_total/ {print $2}')"

# The machine's ceiling: Debian's nginx (one worker, access log on, as
# kxca) serving the file `kxca publish` wrote for the same request, GET
# over keep-alive, beside kxca answering the same GET. No OCSP responder
# on this machine can beat a static file server by much: if nginx stays
# far below 20x OpenSSL, that goal is out of reach of any server here.
if command -v nginx >/dev/null; then
  "$kxca" publish "$work/pub" >/dev/null
  b64=$(base64 -w0 "$work/cached.der")
  [[ -f "$work/pub/ocsp/$b64" ]] || { echo "published file for the request not found" >&2; exit 1; }
  nport=$(free_port)
  mkdir -p "$work/nginx/tmp"
  cat >"$work/nginx/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
user root;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
    access_log $work/nginx/access.log;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$nport;
        merge_slashes off;
        location /ocsp/ {
            root $work/pub;
            default_type application/ocsp-response;
            add_header Cache-Control "max-age=3600, public, no-transform, must-revalidate";
        }
    }
}
NGINX
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>"$work/nginx/stderr" &
  pids+=($!)
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$nport/ocsp/$b64" && break; sleep 0.1; done
  size[nginx.cached]=$(curl -s "http://127.0.0.1:$nport/ocsp/$b64" | wc -c)
  size[kxca.cached]=$(curl -s "http://127.0.0.1:$kport/ocsp/$b64" | wc -c)
  [[ "${size[nginx.cached]}" -gt 0 ]] || { echo "nginx did not serve the published file:" >&2; cat "$work/nginx/stderr" "$work/nginx/error.log" >&2; exit 1; }
  echo
  echo "== ceiling: the same cached answer by GET (RFC 5019 path), 64 connections"
  read -r nrps np50 np99 ncheck <<<"$(run nginx "$nport" cached 64 "/ocsp/$b64")"
  read -r grps gp50 gp99 gcheck <<<"$(run kxca "$kport" cached 64 "/ocsp/$b64")"
  printf '%-32s %9s %8s %8s  %s\n' server rps "p50 ms" "p99 ms" check
  printf '%-32s %9s %8s %8s  %s\n' "nginx static file (1 worker)" "$nrps" "$np50" "$np99" "$ncheck"
  printf '%-32s %9s %8s %8s  %s\n' "kxca serve GET" "$grps" "$gp50" "$gp99" "$gcheck"
  echo "kxca / nginx: $(awk -v a="$grps" -v b="$nrps" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }');" \
    "nginx / OpenSSL responder (cached, 64): $(awk -v a="$nrps" -v b="$ocached64" 'BEGIN { if (b > 0) printf "%.1f", a/b; else print "n/a" }')x"
fi
fi # compare

# == flood: cached answers alone, then beside random unknown serials
if ((flood)); then
  cp "$KXCA_HOME/kxca.toml" "$work/kxca.toml.lifted"
  flood_server() { # config: a fresh kxca serve on a new port ($fport, $kxca_pid)
    kill "$kxca_pid" 2>/dev/null || true
    wait "$kxca_pid" 2>/dev/null || true
    cp "$work/kxca.toml.$1" "$KXCA_HOME/kxca.toml"
    fport=$(free_port)
    "$kxca" serve --listen "127.0.0.1:$fport" >"$work/flood.out" 2>"$work/flood.log" &
    kxca_pid=$!
    pids+=($!)
    until grep -q listening "$work/flood.out" 2>/dev/null; do
      kill -0 "$kxca_pid" 2>/dev/null || { echo "kxca serve failed:" >&2; cat "$work/flood.log" >&2; exit 1; }
      sleep 0.2
    done
  }
  # The default live-signing budget (the comparison lifted it).
  flood_server default
  openssl ocsp -issuer "$issuer" -serial 0x0123456789abcdef -no_nonce -reqout "$work/unknown.der" >/dev/null
  # 1-based offset of the serial's 8 bytes in the request, for Lua.
  at=$(python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); print(d.index(bytes.fromhex("0123456789abcdef")) + 1)' "$work/unknown.der")
  cat >"$work/cached.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY"), "rb")); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body
wrk.headers["Content-Type"] = "application/ocsp-request"
done = function(s, lat)
  local e = s.errors
  io.write(string.format("RESULT %d %d %.3f %.3f %d %d %d\n", s.requests, s.duration,
    lat:percentile(50) / 1000, lat:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status, s.bytes))
end
LUA
  cat >"$work/flood.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY"), "rb")); local t = f:read("*a"); f:close()
local at = tonumber(os.getenv("AT"))
local pre, post = t:sub(1, at - 1), t:sub(at + 8)
local pause = tonumber(os.getenv("FLOOD_DELAY_MS"))
local hdr = { ["Content-Type"] = "application/ocsp-request" }
math.randomseed(os.time())
request = function()
  -- First byte 1..127: a positive INTEGER of the same length.
  local s = { string.char(math.random(1, 127)) }
  for i = 2, 8 do s[i] = string.char(math.random(0, 255)) end
  return wrk.format("POST", "/ocsp", hdr, pre .. table.concat(s) .. post)
end
if pause > 0 then delay = function() return pause end end
done = function(s, lat)
  local e = s.errors
  io.write(string.format("RESULT %d %d %.3f %.3f %d %d %d\n", s.requests, s.duration,
    lat:percentile(50) / 1000, lat:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status, s.bytes))
end
LUA
  wrk_run() { # script conns secs -> "rps p50 p99 errors non2xx bytes/response"
    local r
    r=$(BODY="$4" AT="$at" FLOOD_DELAY_MS="${FLOOD_DELAY_MS:-0}" timeout $(($3 + 60)) \
      wrk -t1 -c"$2" -d"$3s" -s "$work/$1.lua" "http://127.0.0.1:$fport/ocsp" 2>/dev/null | grep '^RESULT') \
      || { echo "0 - - wrk-failed - -"; return; }
    awk '{ printf "%.0f %s %s %d %d %.0f\n", $2 / ($3 / 1e6), $4, $5, $6, $7, ($2 ? $8 / $2 : 0) }' <<<"$r"
  }
  metric() { curl -s "http://127.0.0.1:$fport/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
  budget=$(awk -F' = ' '/^live_signatures_per_second/ { r = $2 } /^live_signature_burst/ { b = $2 } END { print r " per second, burst " b }' "$KXCA_HOME/kxca.toml")
  fconns=${FLOOD_CONNS:-8}
  echo
  echo "== flood: cached answers (POST, 64 connections, wrk) alone, then while a second wrk"
  echo "   POSTs random unknown serials on $fconns connections (${FLOOD_DELAY_MS:-0} ms pause between requests"
  echo "   on each); live-signing budget as configured by default: $budget"
  read -r arps ap50 ap99 aerr anon abytes <<<"$(wrk_run cached 64 "$secs" "$work/cached.der")"
  fsecs=$((secs + 2))
  with_flood() { # -> "rps p50 p99 errors non200 bytes | flood rps p50 p99 errors non200 bytes | signatures tryLater"
    local s0 t0 s1 t1 floodpid c f
    s0=$(metric kxca_ocsp_live_signatures_total); t0=$(metric kxca_ocsp_try_later_total)
    BODY="$work/unknown.der" AT="$at" FLOOD_DELAY_MS="${FLOOD_DELAY_MS:-0}" timeout $((secs + 70)) \
      wrk -t1 -c"$fconns" -d"${fsecs}s" -s "$work/flood.lua" "http://127.0.0.1:$fport/ocsp" \
      >"$work/flood-wrk.out" 2>&1 &
    floodpid=$!
    sleep 1
    c=$(wrk_run cached 64 "$secs" "$work/cached.der")
    wait "$floodpid" || true
    f=$(grep '^RESULT' "$work/flood-wrk.out" \
      | awk '{ printf "%.0f %s %s %d %d %.0f\n", $2 / ($3 / 1e6), $4, $5, $6, $7, ($2 ? $8 / $2 : 0) }')
    s1=$(metric kxca_ocsp_live_signatures_total); t1=$(metric kxca_ocsp_try_later_total)
    echo "${c:-0 - - - - -} ${f:-0 - - - - -} $((s1 - s0)) $((t1 - t0))"
  }
  read -r brps bp50 bp99 berr bnon bbytes frps fp50 fp99 ferr fnon fbytes fsig ftry <<<"$(with_flood)"
  # The same flood without a budget (as before it existed): what the budget buys.
  flood_server lifted
  read -r urps up50 up99 uerr unon ubytes grps gp50 gp99 gerr gnon gbytes usig utry <<<"$(with_flood)"
  row() { printf '%-40s %9s %8s %8s %7s %7s %9s\n' "$@"; }
  row run rps "p50 ms" "p99 ms" errors non-200 "B/resp"
  row "cached, alone" "$arps" "$ap50" "$ap99" "$aerr" "$anon" "$abytes"
  row "cached, during the flood" "$brps" "$bp50" "$bp99" "$berr" "$bnon" "$bbytes"
  row "  the flood (random serials)" "$frps" "$fp50" "$fp99" "$ferr" "$fnon" "$fbytes"
  row "cached, during the flood, budget lifted" "$urps" "$up50" "$up99" "$uerr" "$unon" "$ubytes"
  row "  the flood (random serials)" "$grps" "$gp50" "$gp99" "$gerr" "$gnon" "$gbytes"
  persec() { awk -v n="$1" -v t="$fsecs" 'BEGIN { printf "%.0f", n / t }'; }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
  echo "flood with the budget: $fsig live signatures ($(persec "$fsig")/s over ${fsecs} s), $ftry tryLater answers"
  echo "flood, budget lifted:  $usig live signatures ($(persec "$usig")/s over ${fsecs} s), $utry tryLater answers"
  echo "ratios (during the flood / alone): with the budget rps $(ratio "$brps" "$arps"), p99 $(ratio "$bp99" "$ap99");" \
    "budget lifted rps $(ratio "$urps" "$arps"), p99 $(ratio "$up99" "$ap99")"
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
