#!/usr/bin/env bash
# p2p-loopback.sh: the remote-worker scenario as separate processes on
# loopback. It compiles a bundled model, splits its plan into two shards
# under a manifest the model owner signs (vouching for workers w1, w2, w3),
# starts the three `ciphercut worker` processes (segment 1, segment 2, and a
# spare serving both) and a fourth, w4, that serves segment 1 without being
# vouched for, runs the data-owner plan (owner.plan: no worker weights) from
# the data owner's side through the DHT (w4 is never used; w2 admits the
# data owner by the model owner's token), then kills w1 and runs again:
# segment 1 fails over to the spare, and the data owner reads its keys from
# owner-keys instead of generating them. See docs/p2p.md.
#
# A split plan (CUT="--cut auto --client-aided activations", or PLAN=FILE
# of one) runs the same way: one shard per encrypted stage, w1 serving the
# first, w2 the others, w3 all; the data owner runs the plaintext stages
# (client-aided activations, prefix, suffix) itself between the workers'
# round trips.
#
# Usage: [CUT=FLAGS] [PLAN=FILE] [INPUT=X.npy] scripts/p2p-loopback.sh [MODEL_DIR] [WORKDIR]
#   MODEL_DIR defaults to testsuite/models/cancer-mlp; WORKDIR to a fresh
#   temporary directory (kept, with the workers' logs). PLAN=FILE uses that
#   plan of the model instead of compiling one (with the compile flags
#   CUT); INPUT the samples instead of MODEL_DIR/inputs.npy.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/testsuite/models/cancer-mlp}
input=${INPUT:-$model/inputs.npy}
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
if [ -n "${PLAN:-}" ]; then
	cp "$PLAN" "$work/model.plan" # a plan of the model compiled beforehand
else
	"$bin" compile "$model/model.onnx" -o "$work/model.plan" ${CUT:-} >/dev/null 2>&1
fi
for w in w1 w2 w3 w4; do
	eval "${w}_id=$("$bin" identity "$work/$w.key")"
done
model_owner=$("$bin" identity "$work/model-owner.key")
# A whole plan is cut in 2 segments, a split plan has one per encrypted
# stage: count them with an unsigned split first.
"$bin" shard "$work/model.plan" -o "$work/count" >/dev/null
nseg=$(ls "$work"/count/shard-*.bin | wc -l)
vouch=(--worker "0=$w1_id" --worker "0=$w3_id")
rest=()
for ((k = 1; k < nseg; k++)); do
	vouch+=(--worker "$k=$w2_id" --worker "$k=$w3_id")
	rest+=(--shard "$work/shards/shard-$k.bin")
done
if ((nseg == 1)); then # one encrypted stage: w2 serves it too
	vouch+=(--worker "0=$w2_id")
	rest=(--shard "$work/shards/shard-0.bin")
fi
"$bin" shard "$work/model.plan" -o "$work/shards" --sign "$work/model-owner.key" --reveal-reference "${vouch[@]}"
owner=$("$bin" identity "$work/owner.key")
echo "== data owner $owner, model owner $model_owner"
# w2 admits the data owner by the model owner's token rather than --allow.
"$bin" token --identity "$work/model-owner.key" --peer "$owner" --ttl 1h -o "$work/owner.token"

# start_worker NAME ARGS...: starts a worker, waits for its address. It
# allows the data owner with --allow, unless auth (set before the call)
# names another admission.
start_worker() {
	local name=$1
	shift
	"$bin" worker --identity "$work/$name.key" ${auth:---allow $owner} --cache-dir "$work/cache-$name" "$@" \
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
auth="--token-issuer $model_owner" start_worker w2 "${rest[@]}" --bootstrap "$boot"
start_worker w3 --shard "$work/shards/shard-0.bin" "${rest[@]}" --bootstrap "$boot"
start_worker w4 --shard "$work/shards/shard-0.bin" --bootstrap "$boot"
sleep 1 # let the announcements spread

# The data owner runs from the data-owner plan (no worker weights; the
# reference revealed for --verify), keeps its keys in owner-keys (run 2
# reads them) and bootstraps from the spare, which stays up throughout.
spare=$(grep -m1 '^listening on' "$work/w3.out" | cut -d' ' -f3)
run() {
	"$bin" run "$work/shards/owner.plan" -i "$input" -o "$work/out.npy" --verify \
		--swarm "$spare" --manifest "$work/shards/manifest.json" --trust "$model_owner" \
		--identity "$work/owner.key" --token "$work/owner.token" --keys "$work/owner-keys" \
		--worker-timeout 60s "$@" 2>"$work/owner.log"
}
echo "== run 1: all workers up"
run
echo "== killing w1 (pid $w1_pid), run 2: segment 1 must go to the spare w3 ($w3_id)"
kill "$w1_pid"
run
grep 'trying another provider' "$work/owner.log" || true
echo "== worker logs: $work/w{1,2,3,4}.log (w4, not vouched for, served nothing)"
tail -n 3 "$work"/w*.log
