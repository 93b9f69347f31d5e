#!/usr/bin/env bash
# Starts (or stops) an isolated PKCS#11 token for tether's os_protected_nonextractable class:
# SoftHSM2 behind `p11-kit server`, running as its own system user, token files in a 0700
# directory that tether's user cannot read. tether reaches it through p11-kit-client.so.
#
#   eval "$(sudo scripts/isolated-token.sh start)"   # prints the settings to use
#   sudo scripts/isolated-token.sh stop
#
# Knobs: TOKEN_DIR (default /var/lib/tether-token), TOKEN_USER (tether-devkeyd),
# TOKEN_LABEL (tether), CLIENT_USER (the user tether runs as; default: $SUDO_USER or root).
# The user PIN is generated once into $TOKEN_DIR/pin (0600, owned by CLIENT_USER).
set -euo pipefail

TOKEN_DIR="${TOKEN_DIR:-/var/lib/tether-token}"
TOKEN_USER="${TOKEN_USER:-tether-devkeyd}"
TOKEN_LABEL="${TOKEN_LABEL:-tether}"
CLIENT_USER="${CLIENT_USER:-${SUDO_USER:-root}}"
conf="$TOKEN_DIR/softhsm2.conf"
tokens="$TOKEN_DIR/tokens"
socket="$TOKEN_DIR/run/pkcs11.sock"
pidfile="$TOKEN_DIR/server.pid"

die() { echo "isolated-token: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: it creates a system user and drops to it"
[ "$CLIENT_USER" != "$TOKEN_USER" ] || die "the client and the token must be different users"

module() { dpkg -L "$1" 2>/dev/null | grep "/$2\$" | head -n1; }

running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  "$(dirname "$0")/setup.sh"
  # setup.sh creates the default user; another name is created here.
  id "$TOKEN_USER" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$TOKEN_USER"
  mkdir -p "$tokens" "$TOKEN_DIR/run"
  chmod 755 "$TOKEN_DIR"
  chown "$TOKEN_USER:" "$tokens" "$TOKEN_DIR/run"
  chmod 700 "$tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$tokens" >"$conf"
  if [ ! -s "$TOKEN_DIR/pin" ]; then
    (umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$TOKEN_DIR/pin")
  fi
  chown "$CLIENT_USER" "$TOKEN_DIR/pin"
  chmod 600 "$TOKEN_DIR/pin"
  if ! runuser -u "$TOKEN_USER" -- env SOFTHSM2_CONF="$conf" softhsm2-util --show-slots 2>/dev/null \
      | grep -q "Label:[[:space:]]*$TOKEN_LABEL[[:space:]]*$"; then
    runuser -u "$TOKEN_USER" -- env SOFTHSM2_CONF="$conf" softhsm2-util --init-token --free \
      --label "$TOKEN_LABEL" --so-pin "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" \
      --pin "$(cat "$TOKEN_DIR/pin")" >&2
  fi
  if ! running; then
    rm -f "$socket"
    SOFTHSM2_CONF="$conf" setsid /usr/libexec/p11-kit/p11-kit-server --foreground \
      --provider "$(module libsofthsm2 libsofthsm2.so)" \
      --run-as-user "$TOKEN_USER" --run-as-group "$TOKEN_USER" --user "$CLIENT_USER" \
      --name "$socket" "pkcs11:token=$TOKEN_LABEL" >"$TOKEN_DIR/server.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 1 50); do [ -S "$socket" ] && break; sleep 0.1; done
    [ -S "$socket" ] || die "the server did not start; see $TOKEN_DIR/server.log"
  fi
  chown "$CLIENT_USER" "$socket"
  chmod 600 "$socket"
  echo "export P11_KIT_SERVER_ADDRESS='unix:path=$socket'"
  echo "# in tether's config.toml:"
  echo "#   [device_keys]"
  echo "#   pkcs11_module = \"$(module p11-kit-modules p11-kit-client.so)\""
  echo "#   pkcs11_token_label = \"$TOKEN_LABEL\""
  echo "#   pkcs11_pin_file = \"$TOKEN_DIR/pin\""
}

stop() {
  if running; then kill "$(cat "$pidfile")"; fi
  rm -f "$pidfile" "$socket"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
