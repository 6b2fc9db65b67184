#!/usr/bin/env bash
# Runs every test Warden has, installing what the tests need on the way:
#   1. go vet and the Go tests (race detector on; PostgreSQL tests when
#      WARDEN_TEST_POSTGRES_URL is set, skipped with a message otherwise);
#   2. end-to-end tests with real MCP clients from npm (e2e/clients);
#   3. the cluster tests: three instances on PostgreSQL and Redis behind
#      HAProxy (e2e/cluster, which installs haproxy when missing);
#   4. the official MCP conformance suite, both protocol versions
#      (e2e/conformance), directly and through the gateway.
# It ends with one line that totals them: "total: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
status=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# count FILE PASS_REGEX FAIL_REGEX: add the numbers a suite printed.
count() {
	local p f
	p=$(grep -Eo "$2" "$1" | grep -Eo '[0-9]+' | tail -1)
	f=$(grep -Eo "$3" "$1" | grep -Eo '[0-9]+' | tail -1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
}

# The command-tool examples (examples/commands) run real programs: jq, git
# and curl. Install the Debian packages once when one is missing; a host
# that has them all is left alone.
if ! command -v jq >/dev/null || ! command -v git >/dev/null || ! command -v curl >/dev/null; then
	echo "== installing jq, git and curl for the command-tool tests"
	(apt-get update && apt-get install -y jq git curl) || echo "could not install jq, git and curl: their tests will be skipped"
fi

# The gateway's Go tests run real MCP servers from npm (server-everything,
# server-filesystem, server-postgres), pinned in e2e/clients: install them
# first and tell the tests where they are.
echo "== installing the npm packages the tests use"
if (cd e2e/clients && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
	export WARDEN_TEST_NPM_DIR="$PWD/e2e/clients/node_modules"
else
	echo "npm ci failed: the tests with real upstreams will be skipped"
fi

# Packaging (deploy/): the image test builds with buildah and runs with
# podman and runc; install them once when one is missing. Then warm the
# caches of the release build and of the pinned Helm (go tool, in its own
# module), so that the deploy tests do not compile them under go test's
# timeout while every other package compiles too.
if ! command -v buildah >/dev/null || ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
	echo "== installing buildah, podman and runc for the image test"
	(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y buildah podman runc) || echo "could not install buildah, podman and runc: the image test will be skipped"
fi
echo "== release build and Helm"
scripts/build.sh -o "$tmp/warden" || echo "scripts/build.sh failed: the deploy tests will say why"
(cd deploy/tools && go tool helm version >/dev/null) || echo "could not build Helm: the chart tests will say why"

echo "== go vet"
if ! go vet ./...; then
	echo "go vet failed"
	status=1
	failed=$((failed + 1))
fi

echo "== go test"
go tool gotestsum --format testname --jsonfile "$tmp/go.json" -- -race -count=1 ./... || status=1
touch "$tmp/go.json" # gotestsum that could not start wrote none: counted below as a failure
go_pass=$(grep -c '"Action":"pass","Package":"[^"]*","Test"' "$tmp/go.json" || true)
go_fail=$(grep -c '"Action":"fail","Package":"[^"]*","Test"' "$tmp/go.json" || true)
# A package that fails to build has no test events of its own.
go_build=$(grep -c '"Action":"fail","Package":"[^"]*","Elapsed"' "$tmp/go.json" || true)
if [ "$go_fail" -eq 0 ] && [ "$go_build" -gt 0 ]; then go_fail=$go_build; fi
if [ "$go_pass" -eq 0 ] && [ "$go_fail" -eq 0 ]; then
	echo "the Go tests did not run"
	go_fail=1
	status=1
fi
passed=$((passed + go_pass))
failed=$((failed + go_fail))

echo "== end-to-end: real MCP clients"
bash e2e/clients/run.sh 2>&1 | tee "$tmp/clients.out"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
count "$tmp/clients.out" '^# pass [0-9]+' '^# fail [0-9]+'

echo "== cluster: three instances behind HAProxy"
bash e2e/cluster/run.sh 2>&1 | tee "$tmp/cluster.out"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
c_pass=$(grep -c '^    --- PASS\|^--- PASS' "$tmp/cluster.out" || true)
c_fail=$(grep -c '^    --- FAIL\|^--- FAIL' "$tmp/cluster.out" || true)
passed=$((passed + c_pass))
failed=$((failed + c_fail))

echo "== conformance suite"
bash e2e/conformance/run.sh 2>&1 | tee "$tmp/conformance.out"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
count "$tmp/conformance.out" '^conformance: [0-9]+ passed' 'passed, [0-9]+ failed$'

echo "== conformance suite through the gateway"
bash e2e/conformance/gateway.sh 2>&1 | tee "$tmp/gateway-conformance.out"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
count "$tmp/gateway-conformance.out" '^gateway conformance: [0-9]+ passed' 'passed, [0-9]+ failed$'

if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
	failed=1 # a suite failed without counting its failure
fi
echo
echo "total: $passed passed, $failed failed"
exit "$status"
