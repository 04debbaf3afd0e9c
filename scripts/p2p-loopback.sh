#!/usr/bin/env bash
# p2p-loopback.sh: the remote-worker scenario as separate processes on
# loopback. It compiles a bundled model, splits its plan into two shards,
# starts three `ciphercut worker` processes (segment 1, segment 2, and a
# spare serving both), runs the plan from the data owner's side through the
# DHT, then kills the first worker and runs again: segment 1 fails over to
# the spare. See docs/p2p.md.
#
# Usage: scripts/p2p-loopback.sh [MODEL_DIR] [WORKDIR]
#   MODEL_DIR defaults to testsuite/models/cancer-mlp; WORKDIR to a fresh
#   temporary directory (kept, with the workers' logs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/testsuite/models/cancer-mlp}
work=${2:-$(mktemp -d -t ciphercut-p2p-XXXXXX)}
mkdir -p "$work"
bin=$work/ciphercut
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
}
trap cleanup EXIT

echo "== building into $work"
(cd "$root" && go build -o "$bin" ./cmd/ciphercut)
"$bin" compile "$model/model.onnx" -o "$work/model.plan" >/dev/null 2>&1
"$bin" shard "$work/model.plan" --segments 2 -o "$work/shards"
owner=$("$bin" identity "$work/owner.key")
echo "== data owner $owner"

# start_worker NAME ARGS...: starts a worker, waits for its address.
start_worker() {
	local name=$1
	shift
	"$bin" worker --identity "$work/$name.key" --allow "$owner" --cache-dir "$work/cache-$name" "$@" \
		>"$work/$name.out" 2>"$work/$name.log" &
	pids+=($!)
	eval "${name}_pid=$!"
	for _ in $(seq 100); do
		if grep -q '^listening on' "$work/$name.out" 2>/dev/null; then
			addr=$(grep -m1 '^listening on' "$work/$name.out" | cut -d' ' -f3)
			echo "== $name: $addr ($(grep '^serving' "$work/$name.out" | cut -d' ' -f2-3 | paste -sd, -))"
			return
		fi
		sleep 0.1
	done
	echo "$name did not start:" >&2
	cat "$work/$name.log" >&2
	exit 1
}

start_worker w1 --shard "$work/shards/shard-0.bin"
boot=$addr
start_worker w2 --shard "$work/shards/shard-1.bin" --bootstrap "$boot"
start_worker w3 --shard "$work/shards/shard-0.bin" --shard "$work/shards/shard-1.bin" --bootstrap "$boot"
sleep 1 # let the announcements spread

# The data owner bootstraps from the spare, which stays up throughout.
spare=$(grep -m1 '^listening on' "$work/w3.out" | cut -d' ' -f3)
run() {
	"$bin" run "$work/model.plan" -i "$model/inputs.npy" -o "$work/out.npy" --verify \
		--swarm "$spare" --manifest "$work/shards/manifest.json" --identity "$work/owner.key" --worker-timeout 60s "$@" 2>"$work/owner.log"
}
echo "== run 1: all workers up"
run
echo "== killing w1 (pid $w1_pid), run 2: segment 1 must fail over"
kill "$w1_pid"
run
echo "== worker logs: $work/w{1,2,3}.log"
tail -n 3 "$work"/w*.log
