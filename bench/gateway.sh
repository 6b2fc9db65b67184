#!/usr/bin/env bash
# Measures what Warden's gateway adds over calling an upstream MCP server
# directly: the echo tool of an anchor server, first called directly, then
# through Warden serving it as an upstream with every default control on
# (API key, scope, validation, rate limits, risk gate, durable audit log,
# output guard, metrics; bench/gateway.yaml). Stateless 2026-07-28
# tools/call over loopback HTTP, driven by bench/loadgen. The row
# "gateway-os" is the same gateway with audit.durability: os (records
# handed to the OS, not fsync'd): the controls' cost apart from the disk.
#
# The upstream is the plain net/http anchor (bench/anchors/plain) unless
# -u names another: fast enough (some 28k calls/s) that it is not what
# limits the gateway at c=32, as the go-sdk anchor (-u gosdk, some 2k) is.
#
# Usage: bench/gateway.sh [-d DURATION] [-w WARMUP] [-c "1 32"] [-u plain|gosdk]
set -euo pipefail

duration=10s
warmup=3s
concurrency="1 32"
upstream=plain
while [ $# -gt 0 ]; do
	case $1 in
	-d) duration=$2; shift ;;
	-w) warmup=$2; shift ;;
	-c) concurrency=$2; shift ;;
	-u) upstream=$2; shift ;;
	*) echo "gateway.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

case $upstream in
plain | gosdk) ;;
*) echo "gateway.sh: -u is plain or gosdk, not $upstream" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/warden-gateway-bench.XXXXXX")
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

(cd "$root" && go build -o "$tmp/loadgen" ./bench/loadgen && go build -o "$tmp/upstream" "./bench/anchors/$upstream" && go build -o "$tmp/warden" ./cmd/warden)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

up=$(port)
"$tmp/upstream" -http "127.0.0.1:$up" >"$tmp/upstream.log" 2>&1 &
upid=$!
pids+=("$upid")
wait_port "$up"

export WARDEN_BENCH_DIR=$tmp WARDEN_BENCH_UPSTREAM="http://127.0.0.1:$up/mcp"
gw=$(port)
key=$("$tmp/warden" keys create --init --config "$root/bench/gateway.yaml" --name bench --tenant bench --scopes bench.echo 2>"$tmp/keys.log")
"$tmp/warden" serve --config "$root/bench/gateway.yaml" --http "127.0.0.1:$gw" >"$tmp/warden.log" 2>&1 &
wpid=$!
pids+=("$wpid")
wait_port "$gw"

# The same gateway with audit.durability: os, in a state directory of its
# own: what the controls cost apart from waiting for the disk.
mkdir -p "$tmp/os"
{ cat "$root/bench/gateway.yaml"; printf 'audit:\n  durability: os\n'; } >"$tmp/os/gateway.yaml"
gwos=$(port)
keyos=$(WARDEN_BENCH_DIR=$tmp/os "$tmp/warden" keys create --init --config "$tmp/os/gateway.yaml" --name bench --tenant bench --scopes bench.echo 2>"$tmp/os/keys.log")
WARDEN_BENCH_DIR=$tmp/os "$tmp/warden" serve --config "$tmp/os/gateway.yaml" --http "127.0.0.1:$gwos" >"$tmp/os/warden.log" 2>&1 &
wospid=$!
pids+=("$wospid")
wait_port "$gwos"

echo "upstream: bench/anchors/$upstream"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(go version | cut -d' ' -f3), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "| path | concurrency | req/s | p50 (ms) | p99 (ms) | errors |"
echo "|---|---:|---:|---:|---:|---:|"
for c in $concurrency; do
	for target in direct gateway gateway-os; do
		case $target in
		direct) args=(-url "http://127.0.0.1:$up/mcp" -tool echo -pid "$upid") ;;
		gateway) args=(-url "http://127.0.0.1:$gw/mcp" -tool echo__echo -pid "$wpid" -header "Authorization: Bearer $key") ;;
		gateway-os) args=(-url "http://127.0.0.1:$gwos/mcp" -tool echo__echo -pid "$wospid" -header "Authorization: Bearer $keyos") ;;
		esac
		"$tmp/loadgen" -mode stateless -args '{"message":"hello, gateway"}' -c "$c" -d "$duration" -warmup "$warmup" -json "${args[@]}" >"$tmp/$target-$c.json"
		python3 - "$tmp/$target-$c.json" "$target" "$c" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['requests_per_second']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
PY
	done
done
