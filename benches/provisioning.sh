#!/usr/bin/env bash
# Provisioning benchmark (issue 12): approving one application of ROWS rows
# (`kxca applications approve`: accounts, pickups, mail 1 + mail 2 queued,
# one transaction) in rows/s, then delivering its 2 x ROWS mails to a local
# SMTP sink (`kxca outbox send`: each mail 2 mints a pickup code and a KX
# password and stores both Argon2id hashes when it is sent) in mails/s.
# Baselines in the same run: `kxca intake check` of the same form (reading
# and validating the rows, nothing written) for rows/s, and Python's
# smtplib submitting the same number of messages of the same size over one
# STARTTLS + AUTH connection to the same sink (the sink's ceiling, no
# store, no secrets) for mails/s.
#
# The sink is a private Postfix (tests/services/mail.sh, PORT_BASE) that
# accepts into its queue and delivers to Dovecot; its delivery runs beside
# the measurement on the same cores.
#
# Usage: benches/provisioning.sh [ROWS] [SEND_ROWS] [PORT_BASE]
#   SEND_ROWS: deliver the mails of this many rows (default: all ROWS).
# Environment: KXCA_BIN=path  time this kxca binary (default target/debug/kxca,
#              built here; dependencies are optimised in the dev profile).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-10000}
send_rows=${2:-$rows}
base=${3:-27450}
work=$(mktemp -d)
# Postfix and Dovecot run as their own users: they must reach their directories.
chmod 755 "$work"
export KXCA_TEST_RUN_DIR=$work/run
mkdir -p "$KXCA_TEST_RUN_DIR"
cleanup() {
  tests/services/mail.sh stop "$work/mail" "$base" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
for tool in python3 postfix dovecot; do
  command -v "$tool" >/dev/null || { echo "benches/provisioning.sh needs $tool" >&2; exit 1; }
done

cargo build -q --bin kxca
cargo build -q -p kxca-provisioner --example bench_form
out=${CARGO_TARGET_DIR:-target}/debug
bin=${KXCA_BIN:-$out/kxca}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); kxca: $bin; rows: $rows, mails of $send_rows rows sent"

tests/services/mail.sh start "$work/mail" "$base" >"$work/mail.log" 2>&1 || { cat "$work/mail.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/mail/mail.env"
pw() { printf '%s' "${1#*:}"; }
signup_pw=$(pw "$MAIL_USER_signup")

home=$work/home
printf 'bench-passphrase-%s\n' "$RANDOM$RANDOM" > "$work/pass"
export KXCA_HOME=$home KXCA_ACTOR=bench
"$bin" init --key-secret-file "$work/pass" >/dev/null
printf '%s\n' "$signup_pw" > "$work/smtp-password"
mkdir -p "$work/Maildir/new" "$work/Maildir/cur" "$work/Maildir/tmp"
cat >> "$home/kxca.toml" <<CFG

[mail]
maildir = "$work/Maildir"
interval_seconds = 0

[mail.smtp]
host = "localhost"
port = $MAIL_SMTP_PORT
tls = "starttls"
user = "signup@kx.test"
password_file = "$work/smtp-password"
from = "signup@kx.test"
from_name = "全国設計事務所健康保険組合"
ca_file = "$MAIL_CA_FILE"
CFG

"$out/examples/bench_form" "$work/form.xlsx" "$rows" applicant@office.test other@office.test
{
  printf 'From: other@office.test\r\nTo: signup@kx.test\r\nSubject: apply\r\nMessage-ID: <bench@office.test>\r\n'
  printf 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
  printf 'Content-Type: text/plain; charset=UTF-8\r\n\r\nform\r\n--XX\r\n'
  printf 'Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; name="form.xlsx"\r\n'
  printf 'Content-Transfer-Encoding: base64\r\n\r\n'
  base64 -w 76 "$work/form.xlsx" | sed 's/$/\r/'
  printf -- '--XX--\r\n'
} > "$work/Maildir/new/1.bench"
"$bin" intake fetch --no-send >/dev/null

secs() { python3 -c "import sys; print(f'{float(sys.argv[1]):.2f}')" "$1"; }
now() { date +%s.%N; }
rate() { python3 -c "import sys; n,t=float(sys.argv[1]),float(sys.argv[2]); print(f'{n/t:.0f}' if n/t>=100 else f'{n/t:.1f}')" "$1" "$2"; }

t0=$(now)
"$bin" intake check "$work/form.xlsx" --json > /dev/null || true
t1=$(now)
check_s=$(python3 -c "print($t1-$t0)")

t0=$(now)
"$bin" applications approve 1 --json > "$work/approve.json"
t1=$(now)
approve_s=$(python3 -c "print($t1-$t0)")
approved=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['approved']))" "$work/approve.json")
[[ $approved == "$rows" ]] || { echo "approved $approved of $rows rows" >&2; exit 1; }

# Only the mails of SEND_ROWS rows are due: the rest wait (a later due time).
if (( send_rows < rows )); then
  python3 - "$home/kxca.db" "$send_rows" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE outbox SET next_attempt_at = next_attempt_at + 10000000 WHERE id IN (SELECT id FROM outbox WHERE kind IN ('certificate-ready','initial-passwords') ORDER BY id LIMIT -1 OFFSET ?)", (2 * int(sys.argv[2]),))
c.commit()
PY
fi
conns() { grep -c 'smtpd.*: connect from' "$work/mail/postfix/maillog" 2>/dev/null || true; }
c0=$(conns)
t0=$(now)
"$bin" outbox send --json > "$work/send.json"
t1=$(now)
c1=$(conns)
send_s=$(python3 -c "print($t1-$t0)")
# The 2 x SEND_ROWS delivery mails, and the intake's reply to the form.
mails=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['sent'])" "$work/send.json")
(( mails == 2 * send_rows + 1 )) || { echo "sent $mails mails, expected $((2 * send_rows + 1)): $(cat "$work/send.json")" >&2; exit 1; }
size=$(python3 - "$home/kxca.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(int(c.execute("SELECT AVG(length(body) + length(subject)) FROM outbox WHERE kind IN ('certificate-ready','initial-passwords')").fetchone()[0]))
PY
)

t0=$(now)
python3 - "$MAIL_SMTP_PORT" "$MAIL_CA_FILE" "$signup_pw" "$mails" "$size" <<'PY'
import smtplib, ssl, sys
port, cafile, pw, n, size = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ctx = ssl.create_default_context(cafile=cafile)
s = smtplib.SMTP("localhost", port)
s.starttls(context=ctx)
s.login("signup@kx.test", pw)
body = ("x" * 75 + "\r\n") * (size // 77 + 1)
for i in range(n):
    to = "applicant@office.test" if i % 2 == 0 else "other@office.test"
    msg = f"From: signup@kx.test\r\nTo: {to}\r\nSubject: baseline {i}\r\nMessage-ID: <b{i}@kx.test>\r\n\r\n{body}"
    s.sendmail("signup@kx.test", [to], msg)
s.quit()
PY
t1=$(now)
base_s=$(python3 -c "print($t1-$t0)")

echo
echo "| step | count | seconds | per second |"
echo "|---|---:|---:|---:|"
echo "| baseline: \`kxca intake check\` of the form (read + validate) | $rows rows | $(secs "$check_s") | $(rate "$rows" "$check_s") rows/s |"
echo "| \`kxca applications approve\` (one transaction) | $rows rows | $(secs "$approve_s") | $(rate "$rows" "$approve_s") rows/s |"
echo "| baseline: smtplib, one connection, ${size}-byte messages | $mails mails | $(secs "$base_s") | $(rate "$mails" "$base_s") mails/s |"
echo "| \`kxca outbox send\` (mail 1 + mail 2, secrets minted) | $mails mails | $(secs "$send_s") | $(rate "$mails" "$send_s") mails/s |"
echo "SMTP connections kxca opened: $((c1 - c0))"
python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:]); print(f'\napprove vs check: {b/a:.2f}x the rows/s; outbox send vs smtplib: {c/d:.2f}x the mails/s')" "$approve_s" "$check_s" "$base_s" "$send_s"
