#!/usr/bin/env bash
# A real mail stack for the mail intake tests: a private Postfix instance
# (SMTP with STARTTLS + SASL) delivering over LMTP to a private Dovecot
# (IMAPS and IMAP+STARTTLS), all on 127.0.0.1.
#
#   tests/services/mail.sh start|stop [DIR [PORT_BASE]]
#
# DIR defaults to $KXCA_TEST_RUN_DIR/mail, PORT_BASE to 26250 (SMTP on
# PORT_BASE, IMAPS on +1, IMAP/STARTTLS on +2, SMTPS on +3). A test that stops and
# restarts the servers runs its own instance with another DIR and base.
# Ports stay below Linux's ephemeral range (32768-60999): there, a test's own
# outgoing connections could hold the port a server is about to bind.
# Start writes DIR/mail.env (and, for the default DIR, $KXCA_TEST_RUN_DIR/mail.env)
# with the ports, the CA file and the users. `stop-imap`, `start-imap`,
# `stop-smtp`, `start-smtp` stop or start one server of an instance.
# Nothing can leave the machine: default_transport = error.
# Installs nothing: packages are in tests/deps/apt.txt.
set -euo pipefail
run=${KXCA_TEST_RUN_DIR:?KXCA_TEST_RUN_DIR must be set (tests/run sets it)}
cmd=${1:-}
dir=${2:-$run/mail}
base=${3:-26250}
smtp_port=$base
imaps_port=$((base + 1))
imap_port=$((base + 2))
smtps_port=$((base + 3))
users=(signup@kx.test applicant@office.test other@office.test)

log() { printf '== mail.sh: %s\n' "$*" >&2; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stops a master process and then the children it had: Dovecot's login
# processes keep proxying open connections after their master is gone, so
# without this a "stopped" server would go on serving a client mid-fetch.
stop_tree() {
  local pid=$1 children i
  children=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
  shift
  "$@" >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  for i in $children; do kill -KILL "$i" 2>/dev/null || true; done
}

wait_port() {
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

make_tls() {
  local t="$dir/tls"
  [[ -f "$t/server.pem" ]] && return 0
  mkdir -p "$t"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$t/ca.key" -out "$t/ca.pem" -days 30 -subj "/CN=kxca test mail CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$t/server.key" -out "$t/server.csr" -subj "/CN=localhost" 2>/dev/null
  # rustls refuses a CA:TRUE certificate as a server certificate.
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$t/server.ext"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
    -out "$t/server.pem" -days 30 -extfile "$t/server.ext" 2>/dev/null
  chmod 644 "$t/server.pem" "$t/ca.pem"
  chmod 600 "$t/server.key" "$t/ca.key"
}

write_dovecot_conf() {
  local d="$dir/dovecot"
  mkdir -p "$d/run" "$d/state" "$dir/maildirs"
  chown mail:mail "$dir/maildirs"
  : >"$d/users"
  local u
  for u in "${users[@]}"; do
    printf '%s:{PLAIN}%s\n' "$u" "pw-${u%%@*}" >>"$d/users"
  done
  chmod 640 "$d/users"; chgrp dovecot "$d/users"
  cat >"$d/dovecot.conf" <<CONF
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
info_log_path = $d/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = required
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server.key
disable_plaintext_auth = yes
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $d/users
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$dir/maildirs/%d/%n
}
lmtp_save_to_detail_mailbox = no
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
    ssl = yes
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@kx.test
}
CONF
}

write_postfix_conf() {
  local p="$dir/postfix"
  mkdir -p "$p/conf" "$p/queue" "$p/data"
  chown postfix "$p/data"
  cat >"$p/conf/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $p/queue
data_directory = $p/data
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = $dir
maillog_file = $p/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mail.kx.test
mydomain = kx.test
myorigin = kx.test
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = kx.test office.test
virtual_transport = lmtp:unix:$dir/dovecot/run/lmtp
default_transport = error:kxca tests deliver nothing outside
relay_transport = error:kxca tests deliver nothing outside
smtputf8_enable = no
biff = no
smtpd_tls_security_level = may
smtpd_tls_cert_file = $dir/tls/server.pem
smtpd_tls_key_file = $dir/tls/server.key
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $dir/dovecot/run/auth-postfix
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
CONF
  cat >"$p/conf/master.cf" <<CONF
127.0.0.1:$smtp_port inet n - n - - smtpd
127.0.0.1:$smtps_port inet n - n - - smtpd -o smtpd_tls_wrappermode=yes
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CONF
}

start_imap() {
  alive "$dir/dovecot.pid" && return 0
  # Dovecot keeps the stdio it was started with: a caller reading our
  # output through a pipe would wait for EOF forever.
  dovecot -c "$dir/dovecot/dovecot.conf" </dev/null >>"$dir/dovecot/start.log" 2>&1 \
    || { cat "$dir/dovecot/start.log" >&2; log "dovecot did not start"; exit 1; }
  local i
  for i in $(seq 50); do [[ -s "$dir/dovecot/run/master.pid" ]] && break; sleep 0.1; done
  cp "$dir/dovecot/run/master.pid" "$dir/dovecot.pid"
  wait_port "$imaps_port" && wait_port "$imap_port" \
    || { tail -20 "$dir/dovecot/dovecot.log" >&2; log "dovecot did not listen"; exit 1; }
}

stop_imap() {
  if alive "$dir/dovecot.pid"; then
    local pid; pid=$(cat "$dir/dovecot.pid")
    stop_tree "$pid" kill "$pid"
  fi
  rm -f "$dir/dovecot.pid"
}

start_smtp() {
  alive "$dir/postfix/queue/pid/master.pid" && return 0
  postfix -c "$dir/postfix/conf" start </dev/null >>"$dir/postfix/start.log" 2>&1 \
    || { cat "$dir/postfix/start.log" "$dir/postfix/maillog" >&2 2>/dev/null; log "postfix did not start"; exit 1; }
  wait_port "$smtp_port" && wait_port "$smtps_port" \
    || { tail -20 "$dir/postfix/maillog" >&2; log "postfix did not listen"; exit 1; }
}

stop_smtp() {
  if alive "$dir/postfix/queue/pid/master.pid"; then
    local pid; pid=$(sed 's/ //g' "$dir/postfix/queue/pid/master.pid")
    stop_tree "$pid" postfix -c "$dir/postfix/conf" stop
  fi
}

start() {
  mkdir -p "$dir"
  # Dovecot's mail processes run as `mail` and Postfix's as `postfix`: they
  # must be able to walk down to their directories.
  chmod a+x "$run" "$dir"
  make_tls
  write_dovecot_conf
  write_postfix_conf
  start_imap
  start_smtp
  {
    echo "MAIL_DIR=$dir"
    echo "MAIL_HOST=127.0.0.1"
    echo "MAIL_SMTP_PORT=$smtp_port"
    echo "MAIL_SMTPS_PORT=$smtps_port"
    echo "MAIL_IMAPS_PORT=$imaps_port"
    echo "MAIL_IMAP_PORT=$imap_port"
    echo "MAIL_CA_FILE=$dir/tls/ca.pem"
    local u
    for u in "${users[@]}"; do echo "MAIL_USER_${u%%@*}=$u:pw-${u%%@*}"; done
  } >"$dir/mail.env"
  [[ "$dir" == "$run/mail" ]] && cp "$dir/mail.env" "$run/mail.env"
  log "postfix smtp 127.0.0.1:$smtp_port smtps :$smtps_port, dovecot imaps :$imaps_port imap :$imap_port ($dir)"
}

stop() {
  stop_smtp
  stop_imap
  [[ "$dir" == "$run/mail" ]] && rm -f "$run/mail.env"
  rm -f "$dir/mail.env"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  start-imap) start_imap ;;
  stop-imap) stop_imap ;;
  start-smtp) start_smtp ;;
  stop-smtp) stop_smtp ;;
  *) echo "usage: $0 start|stop|start-imap|stop-imap|start-smtp|stop-smtp [DIR [PORT_BASE]]" >&2; exit 2 ;;
esac
