#!/usr/bin/env bash
# Installs the real Codex clients that tether's end-to-end tests drive, into a cache directory:
#   npm  @openai/codex@0.169.0   the Codex TUI (its native executable ships inside the package)
#   pip  openai-codex==0.163.0   the official Python SDK, in a virtualenv of its own
# Layout of ${TETHER_CLIENTS_DIR:-$HOME/.cache/tether-clients}:
#   codex             symlink to the native codex executable under npm/node_modules
#   venv/bin/python   the virtualenv's python, with the SDK installed
#   versions          stamp written last: when it matches, nothing is done
# Idempotent; prints nothing on success. --print-paths prints `codex=PATH` and `python=PATH`.
# A failed download is an error with a message, never a skip. Logs go to stderr.
set -euo pipefail

codex_version=0.169.0
sdk_version=0.163.0
stamp_text="codex=$codex_version openai-codex=$sdk_version"
dir="${TETHER_CLIENTS_DIR:-$HOME/.cache/tether-clients}"

print_paths=false
for arg in "$@"; do
  case "$arg" in
    --print-paths) print_paths=true ;;
    *) echo "setup-clients: unknown argument $arg (usage: $0 [--print-paths])" >&2; exit 2 ;;
  esac
done

fail() { echo "setup-clients: $*" >&2; exit 1; }

report() {
  if $print_paths; then
    echo "codex=$dir/codex"
    echo "python=$dir/venv/bin/python"
  fi
}

if [ "$(cat "$dir/versions" 2>/dev/null)" = "$stamp_text" ] && [ -x "$dir/codex" ] && [ -x "$dir/venv/bin/python" ]; then
  report
  exit 0
fi

command -v npm >/dev/null 2>&1 || fail "npm is missing: install Debian's npm (apt-get install npm)"
mkdir -p "$dir"
rm -f "$dir/versions"

echo "setup-clients: installing @openai/codex@$codex_version into $dir/npm" >&2
mkdir -p "$dir/npm"
npm install --prefix "$dir/npm" --no-save --no-audit --no-fund --loglevel=error \
  "@openai/codex@$codex_version" >&2 \
  || fail "npm install @openai/codex@$codex_version failed (is the npm registry reachable?)"

# The package's bin is a node launcher; the tests run the native executable it would start, which
# ships in a platform package (@openai/codex-linux-x64 and the like) under vendor/<target>/.
native=""
while IFS= read -r candidate; do
  if [ -x "$candidate" ] && "$candidate" --version 2>/dev/null | grep -q "$codex_version"; then
    native="$candidate"
    break
  fi
done < <(find "$dir/npm/node_modules/@openai" -path '*/vendor/*' -type f -name codex 2>/dev/null | sort)
[ -n "$native" ] || fail "no native codex $codex_version executable under $dir/npm/node_modules/@openai/*/vendor"
ln -sfn "$native" "$dir/codex"

python="${TETHER_CLIENTS_PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || fail "$python is missing: install Debian's python3"
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  [ "$(id -u)" = 0 ] || fail "$python has no venv module: install python3-venv as root"
  echo "setup-clients: installing python3-venv" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2 \
    || fail "apt-get install python3-venv failed"
fi

echo "setup-clients: creating a virtualenv with openai-codex==$sdk_version in $dir/venv" >&2
rm -rf "$dir/venv"
"$python" -m venv "$dir/venv" >&2 || fail "$python -m venv $dir/venv failed"
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check "openai-codex==$sdk_version" >&2 \
  || fail "pip install openai-codex==$sdk_version failed (is PyPI reachable?)"
"$dir/venv/bin/python" -c 'import openai_codex' 2>/dev/null \
  || fail "openai-codex==$sdk_version installed but 'import openai_codex' fails"

echo "$stamp_text" >"$dir/versions"
report
