# Helpers the benchmark scripts share (run.sh, ratios.sh): sourced after
# they define log and the array pids of the servers they started.

# free_port prints a loopback TCP port nobody is listening on, below the
# kernel's ephemeral range (32768 and up), where outgoing connections would
# take ports between the probe and the server's bind.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((10000 + RANDOM % 22000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	log "no free port found"
	return 1
}

# wait_ready PID PORT LOG waits up to 30s for PID to accept connections on PORT.
wait_ready() {
	local pid=$1 port=$2 logfile=$3 i
	for i in $(seq 1 300); do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "server exited before listening on port $port; its output:"
			sed 's/^/    /' "$logfile" >&2
			return 1
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	log "server did not listen on port $port within 30s; its output:"
	sed 's/^/    /' "$logfile" >&2
	return 1
}

# stop_server PID stops a server this script started and waits for it.
stop_server() {
	local pid=$1 i p
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local keep=()
	for p in "${pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
	pids=("${keep[@]+"${keep[@]}"}")
}

# field FILE NAME prints a number or boolean field of loadgen's JSON report.
field() { sed -n "s/^ *\"$2\": *\([^,]*\),\{0,1\}$/\1/p" "$1" | head -n 1; }

# other_cores FILE prints the CPU other processes used during a run, in cores.
other_cores() {
	awk -v busy="$(field "$1" machine_busy_cpu_seconds)" -v cpu="$(field "$1" server_cpu_seconds)" \
		-v lcpu="$(field "$1" loadgen_cpu_seconds)" -v d="$(field "$1" duration_seconds)" \
		'BEGIN { o = (busy - cpu - lcpu) / d; printf "%.2f", (o < 0 ? 0 : o) }'
}
