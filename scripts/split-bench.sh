#!/bin/sh
# Split cut (issue 7): compile a model with several splits, show the
# predicted costs, and measure each split plan end to end in process.
#
#   scripts/split-bench.sh MODEL_DIR [SAMPLES] [CUT_NODE...]
#
# MODEL_DIR is a testsuite/models folder (digits-cnn, resnet20); SAMPLES the
# number of held-out samples each run takes (default 2); each CUT_NODE gives
# one more plan with --cut after=CUT_NODE (--reveal-prefix 99, so the policy
# allows it). Plans are compiled twice over: with the default link (the
# table `report` prints) and with --rtt 0 --bandwidth 1000Gbit/s, whose
# predictions are compute only, comparable with the in-process measurements
# (`eval` moves no bytes over a network) for the ranking of the cuts.
# Runs with --memory-limit ${MEM:-16GiB}; 128-bit resnet20 with bootstraps
# stays within 16 GiB (BENCHMARKS.md, issue 5); run it on a quiet machine.
set -eu
dir=$1
samples=${2:-2}
shift; [ $# -gt 0 ] && shift
out=${OUT:-/tmp/split-bench}
mkdir -p "$out"
go build -o "$out/cc" ./cmd/ciphercut
cc=$out/cc
name=$(basename "$dir")
plan() { # plan NAME ARGS...: compile, report, eval
	p=$1; shift
	"$cc" compile "$dir/model.onnx" -o "$out/$name-$p.plan" "$@" --rtt 0 --bandwidth 1000Gbit/s >"$out/$name-$p.compile.log" 2>&1
	"$cc" report "$out/$name-$p.plan" --plot "$out/$name-$p.svg" >"$out/$name-$p.report.txt" 2>&1 || true
	/usr/bin/time -v "$cc" eval "$out/$name-$p.plan" --data "$dir" --limit "$samples" --memory-limit "${MEM:-16GiB}" >"$out/$name-$p.eval.txt" 2>&1
	printf '%s\t%s\n' "$p" "$(grep -E 'end to end|samples in' "$out/$name-$p.eval.txt" | tail -1)"
}
plan none --cut none
plan auto --cut auto
plan ca --cut none --client-aided activations
plan auto-ca --cut auto --client-aided activations
for node in "$@"; do
	plan "after-$(echo "$node" | tr '/.' '__')" --cut "after=$node" --reveal-prefix 99
done
echo "predicted (compute only): grep 'chosen, final stages' $out/$name-*.report.txt; measured: $out/$name-*.eval.txt"
