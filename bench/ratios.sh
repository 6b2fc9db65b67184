#!/usr/bin/env bash
# Measures Warden against the anchors of issue "fast path", in one run, and
# prints the ratios it sets as goals. Builds the load generator, the anchors
# (bench/anchors: plain net/http, bare go-sdk, bare mcp-go) and Warden with
# the in-memory echo tool (bench/wardenecho, every default control on), then
# serves the same echo tool from each in turn on a free loopback port and
# drives it on every path:
#
#   stateless  Streamable HTTP, 2026-07-28, c=1 and c=32
#   session    Streamable HTTP, 2025-11-25 sessions (one per client), c=32
#   stdio      the server started by loadgen, one session, c=1
#
# It also times an fsync on the disk of Warden's state store, for the goal
# "c=1 median at most one fsync + 0.15 ms". Every run is bounded (-d, -w);
# the script stops every server it started, and exits by itself.
#
# Usage: bench/ratios.sh [-d DURATION] [-w WARMUP] [-r RETRIES]
#
# Environment (flags win):
#   BENCH_DURATION    measured time per run (default 10s)
#   BENCH_WARMUP      warmup per run, not counted (default 2s)
#   BENCH_RETRIES     repeat a run at most this many times when other processes
#                     used more than BENCH_MAX_OTHER cores during it (default 1)
#   BENCH_MAX_OTHER   cores other processes may use before a run counts as
#                     noisy (default 0.15); the quietest attempt is reported
#   BENCH_OUT         directory to keep each run's loadgen JSON and server logs
#   BENCH_PATHS       the paths measured, of "stateless session stdio" (the
#                     default, all three); the report shows what was measured
# Every server inherits GOGC, GOMEMLIMIT and GOMAXPROCS, which the report prints.
#
# Exit status: 0 when every run completed without a failed call, 1 otherwise,
# 2 for a usage error. Missing a goal is not a failure: the ratios are what
# the script reports.
set -euo pipefail

duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
retries=${BENCH_RETRIES:-1}
max_other=${BENCH_MAX_OTHER:-0.15}
paths=${BENCH_PATHS:-stateless session stdio}
while [ $# -gt 0 ]; do
	case $1 in
	-d) duration=$2; shift ;;
	-w) warmup=$2; shift ;;
	-r) retries=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "ratios.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case $retries in '' | *[!0-9]*) echo "ratios.sh: -r $retries: want a number" >&2; exit 2 ;; esac
[ "$retries" -le 5 ] || { echo "ratios.sh: -r $retries: at most 5" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/warden-ratios.XXXXXX")
pids=()
cleanup() {
	for pid in "${pids[@]+"${pids[@]}"}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]+"${pids[@]}"}"; do
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

log() { echo "ratios.sh: $*" >&2; }
status=0
fail() { log "FAILED: $*"; status=1; }

# --- build -----------------------------------------------------------------
log "building loadgen, fsynctime, the anchors and wardenecho"
for p in loadgen fsynctime anchors/plain anchors/gosdk anchors/mcpgo wardenecho; do
	(cd "$root" && go build -o "$tmp/$(basename "$p")" "./bench/$p")
done
sdk=$(cd "$root" && go list -m -f '{{.Version}}' github.com/modelcontextprotocol/go-sdk)
mcpgo=$(cd "$root" && go list -m -f '{{.Version}}' github.com/mark3labs/mcp-go)

# Warden's state store (API keys, audit log) and the key it is called with.
export WARDEN_BENCH_DIR="$tmp/state"
mkdir -p "$WARDEN_BENCH_DIR"
wcfg="$root/bench/wardenecho/warden.yaml"
key=$("$tmp/wardenecho" keys create --init --config "$wcfg" --name bench --tenant bench --scopes bench.echo 2>"$tmp/keys.log")
[ -n "$key" ] || { cat "$tmp/keys.log" >&2; fail "wardenecho keys create printed no key"; exit 1; }

log "timing fsync on the state store's disk ($WARDEN_BENCH_DIR)"
"$tmp/fsynctime" -dir "$WARDEN_BENCH_DIR" -n 500 >"$tmp/fsync.txt"
fsync_p50=$(sed -n 's/^fsync_p50_ms //p' "$tmp/fsync.txt")
fsync_p90=$(sed -n 's/^fsync_p90_ms //p' "$tmp/fsync.txt")
append_p50=$(sed -n 's/^append_fsync_p50_ms //p' "$tmp/fsync.txt")
append_p90=$(sed -n 's/^append_fsync_p90_ms //p' "$tmp/fsync.txt")

# --- helpers ---------------------------------------------------------------

. "$root/bench/lib.sh"

# Results by "server|path|c".
declare -A rps p50 p99 rss
rows=()

# measure SERVER PATH C [loadgen args...] runs loadgen once per attempt and
# records the quietest valid attempt: a run during which other processes
# used more than $max_other cores is repeated, up to $retries times.
measure() {
	local server=$1 path=$2 c=$3 out try rc best="" best_other="" other k="$1|$2|$3"
	shift 3
	for try in $(seq 0 "$retries"); do
		out="$tmp/${server}-${path}-c$c-try$try.json"
		log "$server $path c=$c: ${warmup} warmup + ${duration}$([ "$try" = 0 ] || echo " (attempt $((try + 1)))")"
		rc=0
		"$tmp/loadgen" -mode "$path" -tool echo -args '{"message":"hello, anchors"}' -c "$c" \
			-d "$duration" -warmup "$warmup" -json "$@" >"$out" 2>>"$tmp/${server}-${path}-loadgen.log" || rc=$?
		if [ "$rc" -ge 2 ] || [ ! -s "$out" ]; then
			break
		fi
		other=$(other_cores "$out")
		if [ -z "$best" ] || awk -v a="$other" -v b="$best_other" 'BEGIN { exit !(a < b) }'; then
			best=$out best_other=$other
		fi
		if [ "$rc" -ne 0 ] || [ "$try" = "$retries" ] || awk -v a="$other" -v m="$max_other" 'BEGIN { exit !(a <= m) }'; then
			break
		fi
		log "$server $path c=$c: other processes used $other cores during the run; repeating it"
	done
	if [ -z "$best" ]; then
		fail "$server $path c=$c: loadgen could not run (exit $rc); see below"
		tail -n 20 "$tmp/${server}-${path}-loadgen.log" | sed 's/^/    /' >&2
		rows+=("| $server | $path | $c | — | — | — | — | — | — | — | — | loadgen failed |")
		return
	fi
	out=$best
	local errors calls note=""
	errors=$(field "$out" errors)
	calls=$(field "$out" calls)
	if [ "$(field "$out" valid)" != true ]; then
		fail "$server $path c=$c: $errors of $calls calls failed"
		sed -n '/"error_kinds"/,/^  }/p' "$out" >&2
		note=" INVALID: $errors/$calls calls failed"
	else
		rps[$k]=$(field "$out" requests_per_second)
		p50[$k]=$(field "$out" p50_ms)
		p99[$k]=$(field "$out" p99_ms)
		rss[$k]=$(field "$out" server_peak_rss_bytes)
	fi
	if awk -v a="$best_other" -v m="$max_other" 'BEGIN { exit !(a > m) }'; then
		note="$note (noisy)"
	fi
	rows+=("$(awk -v n="$server" -v path="$path" -v c="$c" -v rps="$(field "$out" requests_per_second)" \
		-v p50="$(field "$out" p50_ms)" -v p99="$(field "$out" p99_ms)" \
		-v rss="$(field "$out" server_peak_rss_bytes)" -v cpu="$(field "$out" server_cpu_seconds)" \
		-v lcpu="$(field "$out" loadgen_cpu_seconds)" -v d="$(field "$out" duration_seconds)" \
		-v other="$best_other" -v e="$errors" -v note="$note" \
		'BEGIN { printf "| %s | %s | %d | %.0f | %.2f | %.2f | %.1f | %.2f | %.0f | %.2f | %.2f | %d%s |", n, path, c, rps, p50, p99, rss/1048576, cpu/d, (cpu > 0 ? rps * d / cpu : 0), lcpu/d, other, e, note }')")
}

# http_server NAME PATH -- COMMAND... starts an HTTP server (its listen
# address is appended to COMMAND), measures PATH at the concurrencies the
# path is measured at, and stops it. A fresh process per path, so that peak
# RSS is that path's.
http_server() {
	local name=$1 path=$2 port pid c
	shift 3
	measured "$path" || return 0
	port=$(free_port)
	"$@" "127.0.0.1:$port" >"$tmp/$name-$path.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	if ! wait_ready "$pid" "$port" "$tmp/$name-$path.log"; then
		fail "$name ($path) did not start"
		stop_server "$pid"
		return
	fi
	local extra=()
	[ "$name" = warden ] && extra=(-header "Authorization: Bearer $key")
	local conc="1 32"
	[ "$path" = session ] && conc=32
	for c in $conc; do
		measure "$name" "$path" "$c" -url "http://127.0.0.1:$port/mcp" -pid "$pid" "${extra[@]+"${extra[@]}"}"
	done
	stop_server "$pid"
}

# --- the runs ----------------------------------------------------------------
# measured PATH reports whether PATH is one of $paths.
measured() { case " $paths " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

servers="warden gosdk mcpgo plain"
for s in $servers; do
	case $s in
	warden)
		http_server warden stateless -- "$tmp/wardenecho" serve --config "$wcfg" --http
		http_server warden session -- "$tmp/wardenecho" serve --config "$wcfg" --http
		measured stdio && WARDEN_API_KEY=$key measure warden stdio 1 -- "$tmp/wardenecho" serve --config "$wcfg" --stdio
		;;
	plain)
		http_server plain stateless -- "$tmp/plain" -http
		http_server plain session -- "$tmp/plain" -http
		measured stdio && measure plain stdio 1 -- "$tmp/plain" -stdio
		;;
	*)
		http_server "$s" stateless -- "$tmp/$s" -http
		http_server "$s" session -- "$tmp/$s" -session -http
		measured stdio && measure "$s" stdio 1 -- "$tmp/$s" -stdio
		;;
	esac
done

# --- report ------------------------------------------------------------------

# ratio A B prints A/B to two places, or — if either is missing.
ratio() {
	if [ -z "${1:-}" ] || [ -z "${2:-}" ]; then echo "—"; return; fi
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "—" }'
}
# verdict VALUE GOAL OP prints "met" or "not met".
verdict() {
	if [ "$1" = "—" ]; then echo "—"; return; fi
	awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { ok = (op == ">=" ? v >= g : v <= g); print (ok ? "met" : "not met") }'
}
mib() { [ -n "${1:-}" ] && awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }' || echo "—"; }

budget=$(awk -v f="$fsync_p50" 'BEGIN { printf "%.3f", f + 0.15 }')
peak=0
for k in "${!rss[@]}"; do
	case $k in warden\|*) peak=$(awk -v a="$peak" -v b="${rss[$k]}" 'BEGIN { print (b > a ? b : a) }') ;; esac
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
cat <<EOF

## Warden against the anchors: the echo tool, every path

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, $(go version | cut -d' ' -f3-)
- anchors: plain net/http (bench/anchors/plain), go-sdk $sdk, mcp-go $mcpgo; Warden $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo "?") with every default control on (bench/wardenecho)
- each run: ${warmup} warmup, then ${duration} measured; load generator on the same machine (loopback); up to $retries repeat(s) of a noisy run
- Go runtime settings of every server (inherited): GOGC=${GOGC:-unset} GOMEMLIMIT=${GOMEMLIMIT:-unset} GOMAXPROCS=${GOMAXPROCS:-unset}
- fsync on the state store's disk ($(stat -f -c %T "$WARDEN_BENCH_DIR"), $(df -P "$WARDEN_BENCH_DIR" | awk 'NR == 2 { print $1 }'); 4 KiB write + fsync, 500 times): in place p50 ${fsync_p50} ms, p90 ${fsync_p90} ms; growing the file p50 ${append_p50} ms, p90 ${append_p90} ms. The latency goal uses the first, a WAL's steady state
- load average before the report: $(cut -d' ' -f1-3 /proc/loadavg)

| server | path | clients | req/s | p50 (ms) | p99 (ms) | peak RSS (MiB) | server CPU (cores) | calls per server CPU-second | loadgen CPU (cores) | other processes (cores) | errors |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
for r in "${rows[@]+"${rows[@]}"}"; do echo "$r"; done

r_sdk_sl=$(ratio "${rps[warden|stateless|32]:-}" "${rps[gosdk|stateless|32]:-}")
r_sdk_se=$(ratio "${rps[warden|session|32]:-}" "${rps[gosdk|session|32]:-}")
r_mg_sl=$(ratio "${rps[warden|stateless|32]:-}" "${rps[mcpgo|stateless|32]:-}")
r_mg_se=$(ratio "${rps[warden|session|32]:-}" "${rps[mcpgo|session|32]:-}")
r_pl_sl=$(ratio "${rps[warden|stateless|32]:-}" "${rps[plain|stateless|32]:-}")
r_pl_se=$(ratio "${rps[warden|session|32]:-}" "${rps[plain|session|32]:-}")
two() { [ -n "${1:-}" ] && awk -v v="$1" 'BEGIN { printf "%.2f", v }' || echo "—"; }
w50_sl=$(two "${p50[warden|stateless|1]:-}")
w50_io=$(two "${p50[warden|stdio|1]:-}")
lat() { [ "$1" = "—" ] && echo "—" || awk -v v="$1" -v b="$budget" 'BEGIN { print (v <= b ? "met" : "not met") }'; }
cat <<EOF

Goals of the issue (req/s ratios at 32 clients; Warden's median at 1 client; Warden's peak RSS over every run):

| goal | stateless | session | stdio |
|---|---:|---:|---:|
| Warden / go-sdk ≥ 3.5 | $r_sdk_sl ($(verdict "$r_sdk_sl" 3.5 ">=")) | $r_sdk_se ($(verdict "$r_sdk_se" 3.5 ">=")) | |
| Warden / mcp-go ≥ 1.1 | $r_mg_sl ($(verdict "$r_mg_sl" 1.1 ">=")) | $r_mg_se ($(verdict "$r_mg_se" 1.1 ">=")) | |
| Warden / plain ≥ 0.3 | $r_pl_sl ($(verdict "$r_pl_sl" 0.3 ">=")) | $r_pl_se ($(verdict "$r_pl_se" 0.3 ">=")) | |
| Warden p50 at c=1 ≤ fsync p50 + 0.15 ms = $budget ms | $w50_sl ms ($(lat "$w50_sl")) | | $w50_io ms ($(lat "$w50_io")) |
| Warden peak RSS < 30 MiB | $(mib "$peak") MiB over all its runs ($([ "$peak" -gt 0 ] && verdict "$(mib "$peak")" 30 "<=" || echo "—")) | | |

peak RSS is the server's VmHWM after the run (a fresh process per path, so stateless c=32 includes its c=1 run); CPU is
user+system time over the measured run, in cores used on average; calls per server CPU-second is req/s over that, which
moves less than req/s when other processes take CPU from the server (but hides time spent waiting, such as for fsync).
Other processes share the $(nproc) CPUs: a row marked (noisy) had them use more than $max_other cores on every attempt;
rerun it on a quiet machine before quoting it.
EOF
exit "$status"
