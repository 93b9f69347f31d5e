#!/usr/bin/env bash
# Installs the Debian packages tether needs to build and test, only those that are missing.
#   libtss2-dev, pkg-config  build the TPM provider (tss-esapi links libtss2)
#   swtpm                    software TPM that the tests start, one per test
#   openssl                  the tests check signatures with `openssl dgst -verify`
#   softhsm2, p11-kit, p11-kit-modules, opensc
#                            the isolated PKCS#11 token the tests start (and users may run,
#                            see scripts/isolated-token.sh); pkcs11-tool inspects it
#   bubblewrap               the Linux sandbox of agent commands (tether-exec) and its tests
#   procps, e2fsprogs, util-linux
#                            kill(1), chattr(1), runuser(1): the tests signal processes, make a
#                            file immutable (a read-only database even for root), drop users
# Idempotent and quiet when everything is present. Logs go to stderr.
set -euo pipefail

packages=(libtss2-dev pkg-config swtpm openssl softhsm2 p11-kit p11-kit-modules opensc procps e2fsprogs util-linux bubblewrap)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then as_root=(sudo); else
    echo "setup: missing packages ${missing[*]}: run as root or install them" >&2; exit 1
  fi
else
  as_root=()
fi
echo "setup: installing ${missing[*]}" >&2
"${as_root[@]}" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
