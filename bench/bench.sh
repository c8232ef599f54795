#!/bin/sh
# make bench: vitrain against the PyTorch peer on the same CPU, in one run.
#
# For every configuration (threads x model x input x encoding) the two
# implementations take turns, REPS times, and each number reported is the
# median over the repetitions; cblas_sgemm 1024^3 is measured in the same
# run at each thread count, as the yardstick for GFLOP/s. Results go to
# docs/PERFORMANCE.md (OUT overrides); the raw lines to RAW_OUT if set.
#
# Knobs (environment): THREADS ("1 2"), MODELS ("tiny small"), INPUTS
# ("28x1 32x3": size x channels, patch 4; every model at every input),
# CONFIGS (model:input pairs instead of that cross product, e.g.
# "tiny:28x1 small:32x3"), ENCODINGS ("absolute rope_mixed
# spherical comrope_ld liere liere:dense"; ENC:recompute runs vitrain with
# train.recompute_attention, less memory for a slower step), BATCH (128), STEPS (timed steps
# per measurement, 3), REPS (3), OUT, RAW_OUT (a file that keeps the raw
# lines as they come, so an interrupted run keeps what it measured; not
# kept by default), REPORT_FROM (a file of raw lines: measure nothing,
# write OUT from it). The full default run takes a few hours on 2 cores;
# QUICK=1 runs ViT-Tiny at 28 px with three encodings, once, in a few
# minutes. The analysis and the history of earlier runs are in
# docs/PERFORMANCE_HISTORY.md, which this script leaves alone.
set -eu

cd "$(dirname "$0")/.."
BENCH=build/release/bench/vit_bench
PYTHON=${TORCH_PYTHON:-/usr/bin/python3}
if [ "${QUICK:-0}" = 1 ]; then
    : "${THREADS:=1 2}" "${MODELS:=tiny}" "${INPUTS:=28x1}" "${REPS:=1}"
    : "${ENCODINGS:=absolute rope_mixed liere}"
fi
THREADS=${THREADS:-"1 2"}
MODELS=${MODELS:-"tiny small"}
INPUTS=${INPUTS:-"28x1 32x3"}
if [ -z "${CONFIGS:-}" ]; then
    CONFIGS=
    for m in $MODELS; do for i in $INPUTS; do
        CONFIGS="${CONFIGS:+$CONFIGS }$m:$i"
    done; done
fi
for c in $CONFIGS; do
    case $c in
    ?*:?*x?*) ;;
    *)
        echo "bench.sh: CONFIGS: '$c' is not MODEL:SIZExCHANNELS (e.g. tiny:28x1)" >&2
        exit 2
        ;;
    esac
done
ENCODINGS=${ENCODINGS:-"absolute rope_mixed spherical comrope_ld liere liere:dense"}
BATCH=${BATCH:-128}
STEPS=${STEPS:-3}
REPS=${REPS:-3}
OUT=${OUT:-docs/PERFORMANCE.md}

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "bench.sh: PyTorch is missing for $PYTHON (./scripts/install_deps.sh python3-torch)" >&2
    exit 2
fi
WORK=$(mktemp -d /tmp/vitrain-bench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# measure THREADS MODEL SIZE CHANNELS ENCODING: one vitrain and one PyTorch
# measurement, appended to $RAW as "key=value ..." lines.
measure() {
    t=$1 model=$2 size=$3 ch=$4 enc=$5
    pe=$enc block=8
    if [ "$enc" = "liere:dense" ]; then
        pe=liere block=64 # the head size of ViT-Tiny and ViT-S
    fi
    tag="threads=$t model=$model size=$size channels=$ch encoding=$enc"
    line=$(OMP_NUM_THREADS=$t $BENCH train "$model" "$size" "$ch" 4 "$pe" "$block" "$BATCH" \
        "$STEPS" "$t" "$WORK/model.safetensors")
    echo "impl=vitrain $tag $line" >>"$RAW"
    line=$(OMP_NUM_THREADS=$t "$PYTHON" bench/torch_peer.py "$WORK/model.safetensors" "$BATCH" \
        "$STEPS" "$t")
    echo "impl=pytorch $tag $line" >>"$RAW"
}

# ", about N min left" once a round has been measured (the rounds are
# alike; within the first, configurations differ too much to tell).
time_left() {
    if [ "$done_count" -gt "$total" ]; then
        elapsed=$(($(date +%s) - started))
        left=$((elapsed * (total * REPS - done_count + 1) / (done_count - 1)))
        echo ", about $(((left + 59) / 60)) min left"
    fi
}

# Every configuration REPS times, the two implementations taking turns.
# sgemm 1024^3 runs before every measurement: the yardstick, and a gauge
# of how much the machine's own speed moves during the run (report.awk
# gives its spread).
measure_all() {
    # The version measured (a "+" marks uncommitted changes), for the report.
    version=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        version="$version+"
    fi
    echo "impl=meta version=$version" >"$RAW"
    total=0
    for t in $THREADS; do for c in $CONFIGS; do for e in $ENCODINGS; do
        total=$((total + 1))
    done; done; done
    done_count=0
    started=$(date +%s)
    for rep in $(seq "$REPS"); do
        for t in $THREADS; do
            # The FMA limit: the ceiling of every GFLOP/s figure (a few seconds).
            echo "impl=fma threads=$t $(OMP_NUM_THREADS=$t $BENCH fma "$t")" >>"$RAW"
            for c in $CONFIGS; do for e in $ENCODINGS; do
                m=${c%%:*} i=${c#*:}
                done_count=$((done_count + 1))
                printf 'bench: round %s/%s, %s/%s: %s threads, %s, %s, %s%s\n' "$rep" "$REPS" \
                    "$done_count" "$((total * REPS))" "$t" "$m" "$i" "$e" "$(time_left)" >&2
                echo "impl=sgemm threads=$t $(OMP_NUM_THREADS=$t $BENCH sgemm 1024 "$t")" >>"$RAW"
                measure "$t" "$m" "${i%x*}" "${i#*x}" "$e"
            done; done
        done
    done
}

if [ -n "${REPORT_FROM:-}" ]; then
    RAW=$REPORT_FROM
    if [ ! -s "$RAW" ]; then
        echo "bench.sh: REPORT_FROM=$RAW: no such file, or it is empty" >&2
        exit 2
    fi
else
    RAW=${RAW_OUT:-$WORK/results.txt}
    measure_all
fi

# ---- report ---------------------------------------------------------------
# One awk program reads every line, takes medians per (impl, config, key)
# and prints the markdown.
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
version=$(sed -n 's/^impl=meta version=\([^ ]*\).*/\1/p' "$RAW" | head -n 1)
{
    echo "# Performance"
    echo
    echo "Written by \`make bench\` (bench/bench.sh) on $(date -u +%Y-%m-%d), of version ${version:-unknown}: $cpu,"
    echo "$(nproc) cores; Debian's OpenBLAS (OpenMP build) for both sides, PyTorch"
    echo "$("$PYTHON" -c 'import torch; print(torch.__version__)') as the peer (bench/torch_peer.py). Batch $BATCH, AdamW,"
    echo "label smoothing 0.1, patch 4; every number is the median of $REPS repetitions"
    echo "(each the median of $STEPS steps after 2 warm-up steps), the two"
    echo "implementations taking turns. GFLOP/s counts the matrix products only"
    echo "(3 forward passes per training step), those vitrain runs (its last block"
    echo "takes the CLS token alone past the attention); \"of sgemm\" compares it with"
    echo "\`cblas_sgemm\` 1024^3 at the same thread count in the same run. The"
    echo "analysis of these numbers, what limits them and the history of earlier"
    echo "runs are in [PERFORMANCE_HISTORY.md](PERFORMANCE_HISTORY.md)."
    echo
    awk -v steps="$STEPS" -f bench/report.awk "$RAW"
    echo
    echo "## How to reproduce"
    echo
    echo '```sh'
    echo "THREADS=\"$THREADS\" CONFIGS=\"$CONFIGS\" \\"
    echo "  ENCODINGS=\"$ENCODINGS\" BATCH=$BATCH STEPS=$STEPS REPS=$REPS make bench   # this file"
    echo "make bench                      # every configuration, batch 128; a few hours on 2 cores"
    echo "QUICK=1 make bench              # ViT-Tiny, 28 px, three encodings, once"
    echo "THREADS=2 MODELS=small ENCODINGS=absolute make bench"
    echo '```'
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "bench.sh: wrote $OUT" >&2
if [ -n "${RAW_OUT:-}" ] && [ -z "${REPORT_FROM:-}" ]; then
    echo "bench.sh: wrote $RAW_OUT" >&2
fi
