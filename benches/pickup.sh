#!/usr/bin/env bash
# Pickup benchmark (issue 12): pickups per second through `POST /pickup`
# of `kxca serve` (public role: Argon2id check of the code, key generation,
# the claim, waiting for `kxca daemon` to sign, PKCS#12 packaging) for
# P-256 and RSA-2048 client keys, driven by benches/pickup_load.py at
# CONCURRENCY requests at a time; against, in the same run and at the same
# concurrency (xargs -P), a shell pipeline doing the same per row with
# openssl: `openssl req` (new key + CSR), `openssl x509 -req` (signed by
# the same issuing CA key, decrypted once beforehand) and `openssl pkcs12
# -export` (the same PBES2/AES-256/SHA-256 parameters and iterations).
# The pipeline does no code check, no database, no audit, no second
# process: it is the cost floor of "a key, a certificate, a PKCS#12".
#
# Usage: benches/pickup.sh [N_P256] [N_RSA] [CONCURRENCY]
# Environment: KXCA_BIN=path  time this kxca binary (default: target/debug/kxca,
#              built here; dependencies are optimised in the dev profile).
set -euo pipefail
cd "$(dirname "$0")/.."
n_p256=${1:-100}
n_rsa=${2:-40}
conc=${3:-4}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
for tool in openssl python3 xargs; do
  command -v "$tool" >/dev/null || { echo "benches/pickup.sh needs $tool" >&2; exit 1; }
done

cargo build -q --bin kxca --example pickup_enrol
bin=${KXCA_BIN:-target/debug/kxca}
enrol=target/debug/examples/pickup_enrol
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); kxca: $bin"

home=$work/home
printf 'bench-passphrase-%s\n' "$RANDOM$RANDOM" > "$work/pass"
export KXCA_HOME=$home KXCA_ACTOR=bench
"$bin" init --key-secret-file "$work/pass" >/dev/null
iter=$(sed -n 's/^iterations = \([0-9]*\).*/\1/p' "$home/policies/profiles/office-client.toml")

"$bin" daemon >"$work/daemon.out" 2>"$work/daemon.log" &
pids+=($!)
"$bin" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do
  grep -q "listening on" "$work/serve.out" 2>/dev/null && grep -q ready "$work/daemon.out" 2>/dev/null && break
  sleep 0.2
done
url="$(sed -n 's/^listening on //p' "$work/serve.out")/pickup"

# The baseline's CA: the same issuing certificate and key, decrypted once.
openssl pkey -in "$home/keys/issuing-1.p8" -passin "file:$work/pass" -out "$work/issuing.key"
cat "$home/ca/issuing-1.pem" "$home/ca/root.pem" > "$work/chain.pem"
cat > "$work/ext.cnf" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = email:bench@example.jp
crlDistributionPoints = URI:http://127.0.0.1/crl/issuing-1.crl
authorityInfoAccess = OCSP;URI:http://127.0.0.1/ocsp, caIssuers;URI:http://127.0.0.1/ca/issuing-1.cer
EXT
mkdir -p "$work/rows"
cat > "$work/row.sh" <<ROW
#!/usr/bin/env bash
# One row: key + CSR, certificate, PKCS#12.
set -euo pipefail
i=\$1; d=$work/rows
if [ "\$2" = rsa-2048 ]; then nk=(-newkey rsa:2048); else nk=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); fi
openssl req -new "\${nk[@]}" -nodes -keyout "\$d/\$i.key" -subj "/C=JP/O=Bench/OU=2627600/OU=\$i/CN=TI2627600\$i" -out "\$d/\$i.csr" 2>/dev/null
openssl x509 -req -in "\$d/\$i.csr" -CA "$home/ca/issuing-1.pem" -CAkey "$work/issuing.key" -set_serial "0x\$(openssl rand -hex 16)" -days 1095 -sha256 -extfile "$work/ext.cnf" -out "\$d/\$i.crt" 2>/dev/null
openssl pkcs12 -export -inkey "\$d/\$i.key" -in "\$d/\$i.crt" -certfile "$work/chain.pem" -name "TI2627600\$i" -passout "pass:Bench\${i}x1" -keypbe AES-256-CBC -certpbe AES-256-CBC -macalg sha256 -iter $iter -out "\$d/\$i.p12"
rm -f "\$d/\$i.key" "\$d/\$i.csr"
ROW
chmod +x "$work/row.sh"

printf '\n%-10s %6s %12s %10s %10s %14s %9s\n' key rows "kxca /s" "p50 ms" "p99 ms" "openssl /s" "ratio"
for key in ecdsa-p256 rsa-2048; do
  if [ "$key" = ecdsa-p256 ]; then n=$n_p256; else n=$n_rsa; fi
  "$enrol" "$home" "$n" "$key" "$work/bodies-$key"
  result=$(python3 benches/pickup_load.py "$url" "$work/bodies-$key" "$conc")
  rm -f "$work/bodies-$key"
  read -r rate p50 p99 ok <<<"$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["per_second"], r["p50_ms"], r["p99_ms"], r["pkcs12"])' "$result")"
  if [ "$ok" != "$n" ]; then echo "kxca answered $ok PKCS#12 of $n: $result" >&2; exit 1; fi
  start=$(date +%s.%N)
  seq 1 "$n" | xargs -P "$conc" -I{} "$work/row.sh" {} "$key"
  end=$(date +%s.%N)
  made=$(ls "$work/rows"/*.p12 2>/dev/null | wc -l)
  if [ "$made" != "$n" ]; then echo "the openssl pipeline made $made PKCS#12 of $n" >&2; exit 1; fi
  rm -f "$work/rows"/*
  base=$(python3 -c "print(round($n / ($end - $start), 2))")
  ratio=$(python3 -c "print(round($rate / $base, 2))")
  printf '%-10s %6s %12s %10s %10s %14s %8sx\n' "$key" "$n" "$rate" "$p50" "$p99" "$base" "$ratio"
  echo "  kxca: $result"
done
