#!/usr/bin/env bash
# Reproduces the Warden vs bare go-sdk comparison end to end: builds Warden,
# the baseline server and the load generator, serves the same get_customer
# tool over stateless Streamable HTTP (2026-07-28) from each in turn, on a free
# loopback port and against the same SQLite file, drives it at each
# concurrency, and prints a markdown table with the machine it ran on.
#
# Usage: bench/run.sh [--baseline-only] [-d DURATION] [-w WARMUP] [-c "1 32"]
#
# Environment (flags win):
#   BENCH_DURATION      measured time per run (default 15s)
#   BENCH_WARMUP        warmup per run, not counted (default 3s)
#   BENCH_CONCURRENCY   space-separated concurrencies (default "1 32")
#   BENCH_RETRIES       repeat a run at most this many times when other processes
#                       used more than BENCH_MAX_OTHER cores during it (default 1)
#   BENCH_MAX_OTHER     cores other processes may use before a run counts as
#                       noisy (default 0.15); the quietest attempt is reported
#   BENCH_OUT           directory to keep each run's loadgen JSON and server logs
#   WARDEN_BIN          a Warden binary to use instead of building ./cmd/warden
#   WARDEN_DEMO_DB      the demo's SQLite file, if it cannot be found by itself
#   WARDEN_MCP_PATH     Warden's MCP endpoint path (default /mcp)
#   WARDEN_LOADGEN_FLAGS  extra loadgen flags for Warden only, e.g.
#                       "-header 'Authorization: Bearer …'"
# Both servers inherit GOGC, GOMEMLIMIT and GOMAXPROCS, which the report
# prints: they move these numbers a lot, as garbage collection is a large share
# of the cost of a call.
#
# Exit status: 0 when every run completed without a single failed call, 1
# otherwise (including when Warden could not be built or started, unless
# --baseline-only was given), 2 for a usage error.
set -euo pipefail

duration=${BENCH_DURATION:-15s}
warmup=${BENCH_WARMUP:-3s}
concurrency=${BENCH_CONCURRENCY:-"1 32"}
retries=${BENCH_RETRIES:-1}
max_other=${BENCH_MAX_OTHER:-0.15}
baseline_only=0
while [ $# -gt 0 ]; do
	case $1 in
	--baseline-only) baseline_only=1 ;;
	-d) duration=$2; shift ;;
	-w) warmup=$2; shift ;;
	-c) concurrency=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/warden-bench.XXXXXX")
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "${BENCH_OUT:-}" ]; then
		mkdir -p "$BENCH_OUT"
		cp "$tmp"/*.json "$tmp"/*.log "$BENCH_OUT"/ 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "run.sh: $*" >&2; }
status=0
fail() { log "FAILED: $*"; status=1; }

# --- build -----------------------------------------------------------------
log "building loadgen and baseline"
(cd "$root" && go build -o "$tmp/loadgen" ./bench/loadgen)
(cd "$root/bench/baseline" && go build -o "$tmp/baseline" . && go build -o "$tmp/seeddb" ./seeddb)

warden_err=""
if [ "$baseline_only" = 1 ]; then
	warden_err="skipped (--baseline-only)"
elif [ -n "${WARDEN_BIN:-}" ]; then
	cp "$WARDEN_BIN" "$tmp/warden" || warden_err="WARDEN_BIN=$WARDEN_BIN cannot be copied"
elif ! compgen -G "$root/cmd/warden/*.go" >/dev/null; then
	warden_err="./cmd/warden has no Go files yet: there is no Warden binary to benchmark"
else
	log "building ./cmd/warden"
	if ! (cd "$root" && go build -o "$tmp/warden" ./cmd/warden) 2>"$tmp/warden-build.log"; then
		warden_err="go build ./cmd/warden failed: $(head -c 2000 "$tmp/warden-build.log")"
	fi
fi

sdk_warden=$(cd "$root" && go list -m -f '{{.Version}}' github.com/modelcontextprotocol/go-sdk)
sdk_baseline=$sdk_warden # one module: the baseline builds against the same go-sdk

# --- helpers ---------------------------------------------------------------

. "$root/bench/lib.sh"

rows=()
# bench NAME URL PID [loadgen flags...] runs loadgen at every concurrency and
# adds one table row per run. A run during which other processes used more
# than $max_other cores is repeated, up to $retries times, and the quietest
# attempt is kept: these machines are shared.
bench() {
	local name=$1 url=$2 pid=$3 c out try rc best best_other other
	shift 3
	for c in $concurrency; do
		best="" best_other=""
		for try in $(seq 0 "$retries"); do
			out="$tmp/${name// /-}-c$c-try$try.json"
			log "$name: c=$c, ${warmup} warmup + ${duration}$([ "$try" = 0 ] || echo " (attempt $((try + 1)))")"
			rc=0
			"$tmp/loadgen" -url "$url" -tool get_customer -args '{"customer_id":"C-1001"}' \
				-c "$c" -d "$duration" -warmup "$warmup" -pid "$pid" -json "$@" >"$out" || rc=$?
			if [ "$rc" -ge 2 ] || [ ! -s "$out" ]; then
				break
			fi
			other=$(other_cores "$out")
			if [ -z "$best" ] || awk -v a="$other" -v b="$best_other" 'BEGIN { exit !(a < b) }'; then
				best=$out best_other=$other
			fi
			if [ "$rc" -ne 0 ] || awk -v a="$other" -v m="$max_other" 'BEGIN { exit !(a <= m) }'; then
				break
			fi
			log "$name: c=$c: other processes used $other cores during the run; repeating it"
		done
		if [ -z "$best" ]; then
			fail "$name c=$c: loadgen could not run (exit $rc)"
			rows+=("| $name | $c | — | — | — | — | — | — | — | loadgen failed |")
			continue
		fi
		out=$best
		local errors calls note=""
		errors=$(field "$out" errors)
		calls=$(field "$out" calls)
		if [ "$(field "$out" valid)" != true ]; then
			fail "$name c=$c: $errors of $calls calls failed; see the error kinds below"
			sed -n '/"error_kinds"/,/^  }/p' "$out" >&2
			note=" INVALID: $errors/$calls calls failed"
		fi
		if awk -v a="$best_other" -v m="$max_other" 'BEGIN { exit !(a > m) }'; then
			note="$note (noisy)"
		fi
		rows+=("$(awk -v n="$name" -v c="$c" -v rps="$(field "$out" requests_per_second)" \
			-v p50="$(field "$out" p50_ms)" -v p99="$(field "$out" p99_ms)" \
			-v rss="$(field "$out" server_peak_rss_bytes)" -v cpu="$(field "$out" server_cpu_seconds)" \
			-v lcpu="$(field "$out" loadgen_cpu_seconds)" -v d="$(field "$out" duration_seconds)" \
			-v other="$best_other" -v e="$errors" -v note="$note" \
			'BEGIN { printf "| %s | %d | %.0f | %.2f | %.2f | %.1f | %.2f | %.2f | %.2f | %d%s |", n, c, rps, p50, p99, rss/1048576, cpu/d, lcpu/d, other, e, note }')")
	done
}

# --- Warden ------------------------------------------------------------------
db=""
db_note=""
if [ -z "$warden_err" ]; then
	port=$(free_port)
	xdg="$tmp/xdg"
	mkdir -p "$xdg"
	log "starting warden demo on 127.0.0.1:$port (XDG_DATA_HOME=$xdg)"
	XDG_DATA_HOME="$xdg" "$tmp/warden" demo --http "127.0.0.1:$port" >"$tmp/warden.log" 2>&1 &
	wpid=$!
	pids+=("$wpid")
	if wait_ready "$wpid" "$port" "$tmp/warden.log"; then
		# The demo prints where its database is; failing that, it is a SQLite
		# file under the fresh data dir. The first candidate with the customers
		# table wins.
		db=""
		for f in ${WARDEN_DEMO_DB:-} \
			$(grep -oE "$xdg/[^ \"'\`]+" "$tmp/warden.log" || true) \
			$(find "$xdg" -type f \( -name '*.db' -o -name '*.sqlite' -o -name '*.sqlite3' \) || true); do
			if [ -f "$f" ] && "$tmp/baseline" -check -db "$f" 2>/dev/null; then
				db=$f
				break
			fi
		done
		if [ -z "$db" ]; then
			warden_err="found no SQLite file with a customers table under $xdg (set WARDEN_DEMO_DB)"
		fi
		# The demo has created its API keys; the benchmark calls as acme-support.
		key=$(grep -oE '"key": *"wdn_[A-Za-z0-9_-]+"' "$xdg/warden/demo/demo-keys.json" | head -1 | grep -oE 'wdn_[A-Za-z0-9_-]+' || true)
		[ -n "$key" ] || warden_err="the demo printed no API key"
	else
		warden_err="warden demo did not start (its output is above)"
	fi
	stop_server "$wpid"
	if [ -z "$warden_err" ]; then
		# The same demo configuration, with every control on, and rate limits
		# raised so that they are checked on every call but never refuse one:
		# the benchmark measures their cost, not their effect.
		sed '/^rate_limits:/,/^$/d' "$root/examples/demo/warden.yaml" >"$tmp/bench.yaml"
		cat >>"$tmp/bench.yaml" <<-'YAML'
		rate_limits:
		  per_principal: {rate: 1000000/s, burst: 1000000000}
		  per_tool: {rate: 1000000/s, burst: 1000000000}
		  per_principal_tool: {rate: 1000000/s, burst: 1000000000}
		  max_concurrent_per_principal: 1024
		YAML
		port=$(free_port)
		log "starting warden serve (the demo, limits raised) on 127.0.0.1:$port"
		WARDEN_DEMO_DIR="$xdg/warden/demo" "$tmp/warden" serve --config "$tmp/bench.yaml" --http "127.0.0.1:$port" >"$tmp/warden.log" 2>&1 &
		wpid=$!
		pids+=("$wpid")
		if wait_ready "$wpid" "$port" "$tmp/warden.log"; then
			extra=(-header "Authorization: Bearer $key")
			eval "extra+=(${WARDEN_LOADGEN_FLAGS:-})"
			bench warden "http://127.0.0.1:$port${WARDEN_MCP_PATH:-/mcp}" "$wpid" "${extra[@]}"
			if [ -n "$db" ]; then
				db_note="the demo's own file, $(basename "$db"), opened after Warden stopped"
			fi
		else
			warden_err="warden serve did not start (its output is above)"
		fi
		stop_server "$wpid"
	fi
fi
if [ -n "$warden_err" ]; then
	if [ "$baseline_only" = 1 ]; then
		log "Warden: $warden_err"
	else
		fail "Warden: $warden_err"
	fi
fi

# --- baseline ----------------------------------------------------------------
if [ -z "$db" ]; then
	db="$tmp/seeded.db"
	"$tmp/seeddb" -db "$db"
	db_note="a seeded test database (bench/baseline/seeddb), not the demo's"
fi
port=$(free_port)
log "starting baseline on 127.0.0.1:$port"
"$tmp/baseline" -http "127.0.0.1:$port" -db "$db" >"$tmp/baseline.log" 2>&1 &
bpid=$!
pids+=("$bpid")
if wait_ready "$bpid" "$port" "$tmp/baseline.log"; then
	bench "bare go-sdk" "http://127.0.0.1:$port/mcp" "$bpid"
else
	fail "baseline did not start"
fi
stop_server "$bpid"

# --- report ------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
cat <<EOF

## get_customer over stateless Streamable HTTP (2026-07-28), Warden vs bare go-sdk

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $(go version | cut -d' ' -f3-)
- go-sdk: Warden $sdk_warden, baseline $sdk_baseline
- each run: ${warmup} warmup, then ${duration} measured; load generator on the same machine (loopback)
- tool call: get_customer {"customer_id":"C-1001"}; database: ${db_note}
- Go runtime settings of both servers (inherited): GOGC=${GOGC:-unset} GOMEMLIMIT=${GOMEMLIMIT:-unset} GOMAXPROCS=${GOMAXPROCS:-unset}
- load average before the report: $(cut -d' ' -f1-3 /proc/loadavg)

| server | concurrency | req/s | p50 (ms) | p99 (ms) | peak RSS (MiB) | server CPU (cores) | loadgen CPU (cores) | other processes (cores) | errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for r in "${rows[@]+"${rows[@]}"}"; do echo "$r"; done
if [ -n "$warden_err" ]; then
	echo
	echo "Warden: $warden_err"
fi
echo
echo "peak RSS is the server's VmHWM after the run (its whole life so far); CPU is user+system time over the measured run,"
echo "in cores used on average. Other processes share the $(nproc) CPUs; a row marked (noisy) had them use more than $max_other cores"
echo "on every attempt: rerun it on a quiet machine before quoting it."
exit "$status"
