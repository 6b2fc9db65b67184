# judge.sh is sourced by run.sh and gateway.sh: it runs the pinned suites
# against $url and judges their verdicts against the baseline file
# $baseline_file. It needs $here, $work and $node set; with
# baseline_scored=true (the gateway's) the baseline may also excuse scored
# scenarios, each with its reason, where a Warden control or a gateway
# limit conflicts with what the scenario expects.
baseline_scored=${baseline_scored:-false}

declare -A baseline=() seen=()
while read -r name _; do
	if [[ -n $name && $name != \#* ]]; then
		baseline[$name]=1
	fi
done <"$baseline_file"

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
		elif $baseline_scored || grep -qxF "$name" <<<"$extensions"; then
			expected+=("$name")
		else
			unexpected+=("$name (in $(basename "$baseline_file"), but the suite scores it)")
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
		echo "   PASSES   $name is in $(basename "$baseline_file") but passed: remove it"
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
		echo "conformance: $name is in $(basename "$baseline_file") but neither suite ran it: remove it"
		stale=$((stale + 1))
	fi
done

