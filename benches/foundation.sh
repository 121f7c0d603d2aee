#!/usr/bin/env bash
# Foundation benchmarks, with baselines run in the same command:
#  - certificates + PKCS#12 issued per second (P-256 and RSA-2048 client keys),
#    against bare client-key generation;
#  - building and signing a CRL of 100,000 and 1,000,000 entries (time and peak
#    memory), against `openssl ca -gencrl` on the same number of entries.
# Usage: benches/foundation.sh [N_ISSUE]
set -euo pipefail
cd "$(dirname "$0")/.."
n_issue=${1:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo bench -p kxca-ca --bench foundation --no-run >/dev/null 2>&1
bin=$(ls -t target/release/deps/foundation-* | grep -v '\.d$' | head -1)

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
"$bin" issue "$n_issue"
echo

# OpenSSL baseline CA for CRL generation, P-256 like kxca's issuing key.
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -subj "/CN=Bench CA" -days 30 -out "$work/ca.pem" 2>/dev/null
cat > "$work/ca.cnf" <<CNF
[ ca ]
default_ca = bench
[ bench ]
database = $work/index.txt
crlnumber = $work/crlnumber
default_md = sha256
default_crl_days = 7
certificate = $work/ca.pem
private_key = $work/ca.key
CNF

printf '%-10s %12s %12s %14s %14s %8s\n' entries "kxca s" "openssl s" "kxca MiB" "openssl MiB" speedup
for n in 100000 1000000; do
  kx=$( { /usr/bin/time -f 'RSS %M' "$bin" crl "$n"; } 2>&1 )
  kx_s=$(sed -n 's/.* in \([0-9.]*\) s.*/\1/p' <<<"$kx")
  kx_mib=$(awk '/^RSS/ {printf "%.1f", $2/1024}' <<<"$kx")
  awk -v n="$n" 'BEGIN { for (i = 1; i <= n; i++) printf "R\t351231000000Z\t251126000000Z,keyCompromise\t%032X\tunknown\t/CN=c%d\n", i, i }' > "$work/index.txt"
  echo 01 > "$work/crlnumber"
  start=$(date +%s.%N)
  os=$( { /usr/bin/time -f 'RSS %M' openssl ca -config "$work/ca.cnf" -gencrl -out "$work/openssl.crl" -batch; } 2>&1 )
  end=$(date +%s.%N)
  os_s=$(echo "$end - $start" | bc -l)
  os_mib=$(awk '/^RSS/ {printf "%.1f", $2/1024}' <<<"$os")
  printf '%-10s %12.3f %12.3f %14s %14s %7.1fx\n' "$n" "$kx_s" "$os_s" "$kx_mib" "$os_mib" "$(echo "$os_s / $kx_s" | bc -l)"
done
