#!/usr/bin/env bash
# Prepares this machine to build and test tether: installs the Debian packages it needs (only
# those that are missing), then the system state the tests share (see the end). Run it once before
# the tests; running it again changes nothing.
#   libtss2-dev, pkg-config  build the TPM provider (tss-esapi links libtss2)
#   swtpm                    software TPM that the tests start, one per test
#   openssl                  the tests check signatures with `openssl dgst -verify`
#   softhsm2, p11-kit, p11-kit-modules, opensc
#                            the isolated PKCS#11 token the tests start (and users may run,
#                            see scripts/isolated-token.sh); pkcs11-tool inspects it
#   bubblewrap               the Linux sandbox of agent commands (tether-exec) and its tests
#   git                      the turn-diff tests check diffs with `git apply`
#   procps, e2fsprogs, util-linux
#                            kill(1), chattr(1), runuser(1): the tests signal processes, make a
#                            file immutable (a read-only database even for root), drop users
# Idempotent and quiet when everything is present. Logs go to stderr.
set -euo pipefail

# Must match tether_testkit::{TOKEN_USER, TOKEN_BASE_DIR} (crates/testkit/src/token.rs).
token_user=tether-devkeyd
token_base_dir=/var/lib/tether-test-tokens

packages=(libtss2-dev pkg-config swtpm openssl softhsm2 p11-kit p11-kit-modules opensc procps e2fsprogs util-linux bubblewrap git)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Runs a command as root (through sudo when not root); `why` says what needs it.
as_root() {
  local why=$1; shift
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "setup: $why: run as root" >&2; exit 1
  fi
}

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  as_root "missing packages ${missing[*]}" apt-get update -qq >&2
  as_root "missing packages ${missing[*]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The isolated PKCS#11 tokens (tests, scripts/isolated-token.sh) run as their own system user.
# It is created here, once, never by the tests: concurrent `useradd`s of one name can each write
# an entry, renumbering the user under a token that is already chowned to it.
if ! id "$token_user" >/dev/null 2>&1; then
  echo "setup: creating the system user $token_user" >&2
  as_root "creating the system user $token_user" useradd --system --no-create-home \
    --home-dir /nonexistent --shell /usr/sbin/nologin "$token_user"
fi
# Each test token gets a private directory in here: root's, and traversable by the token user
# whatever TMPDIR is.
if [ "$(stat -c '%U %a' "$token_base_dir" 2>/dev/null)" != "root 755" ]; then
  as_root "creating $token_base_dir" install -d -o root -g root -m 0755 "$token_base_dir"
fi
