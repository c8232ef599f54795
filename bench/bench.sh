#!/bin/sh
# make bench: vitrain against the PyTorch peer on the same CPU, in one run.
#
# For every configuration (threads x model x input x encoding) the two
# implementations take turns, REPS times, and each number reported is the
# median over the repetitions; cblas_sgemm 1024^3 is measured in the same
# run at each thread count, as the yardstick for GFLOP/s. Results go to
# docs/PERFORMANCE.md (OUT overrides), the raw lines beside it.
#
# Knobs (environment): THREADS ("1 2"), MODELS ("tiny small"), INPUTS
# ("28x1 32x3": size x channels, patch 4; every model at every input),
# CONFIGS (model:input pairs instead of that cross product, e.g.
# "tiny:28x1 small:32x3"), ENCODINGS ("absolute rope_mixed
# spherical comrope_ld liere liere:dense"; ENC:recompute runs vitrain with
# train.recompute_attention, less memory for a slower step), BATCH (128), STEPS (timed steps
# per measurement, 3), REPS (3), OUT, TITLE (its heading), RAW_OUT (a file that keeps the raw
# lines as they come, so an interrupted run keeps what it measured; not
# kept by default), REPORT_FROM (a file of raw lines: measure nothing,
# write OUT from it), PEER (1; 0 measures vitrain alone, where PyTorch is
# not installed). The raw lines of a finished run are kept beside OUT
# (docs/PERFORMANCE.raw), so that REPORT_FROM can write it again. The full
# default run takes a few hours on 2 cores; QUICK=1 runs ViT-Tiny at 28 px
# with three encodings, once, in a few minutes, into
# runs/bench-quick/PERFORMANCE.md; SCALING=1 (make
# bench-scaling) measures ViT-S at 32 px with the absolute encoding at 1,
# 2, 4, ... threads up to the machine's cores, vitrain alone, into
# docs/SCALING.md. The analysis and the history of earlier runs are in
# docs/PERFORMANCE_HISTORY.md, which this script leaves alone.
set -eu

# Knobs come from the environment: --help prints the header above.
case ${1:-} in
'') ;;
-h | --help)
    sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "bench.sh: takes no arguments (knobs are environment variables; see --help)" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")/.."
BENCH=build/release/bench/vit_bench
PYTHON=${TORCH_PYTHON:-/usr/bin/python3}
if [ "${QUICK:-0}" = 1 ]; then
    : "${THREADS:=1 2}" "${MODELS:=tiny}" "${INPUTS:=28x1}" "${REPS:=1}"
    : "${ENCODINGS:=absolute rope_mixed liere}"
    : "${OUT:=runs/bench-quick/PERFORMANCE.md}" # a quick look leaves docs/ alone
fi
if [ "${SCALING:-0}" = 1 ]; then
    if [ -z "${THREADS:-}" ]; then
        THREADS=1
        for t in 2 4 8 16 32 64; do
            [ "$t" -le "$(nproc)" ] && THREADS="$THREADS $t"
        done
    fi
    : "${CONFIGS:=small:32x3}" "${ENCODINGS:=absolute}" "${PEER:=0}" "${OUT:=docs/SCALING.md}"
    : "${TITLE:=Thread scaling}"
fi
THREADS=${THREADS:-"1 2"}
for t in $THREADS; do
    case $t in
    '' | *[!0-9]* | 0)
        echo "bench.sh: THREADS: '$t' is not a positive thread count" >&2
        exit 2
        ;;
    esac
    if [ "$t" -gt "$(nproc)" ]; then
        echo "bench.sh: THREADS: $t is more than this machine's $(nproc) cores;" \
            "those rows measure oversubscription, not scaling" >&2
    fi
done
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
TITLE=${TITLE:-Performance}
PEER=${PEER:-1}
case $PEER in
0 | 1) ;;
*)
    echo "bench.sh: PEER must be 0 (vitrain alone) or 1 (and PyTorch), not '$PEER'" >&2
    exit 2
    ;;
esac

if [ "$PEER" = 1 ] && ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "bench.sh: PyTorch is missing for $PYTHON (./scripts/install_deps.sh python3-torch)" >&2
    exit 2
fi
WORK=$(mktemp -d /tmp/vitrain-bench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# measure THREADS MODEL SIZE CHANNELS ENCODING: one vitrain and (PEER=1)
# one PyTorch measurement, appended to $RAW as "key=value ..." lines.
measure() {
    t=$1 model=$2 size=$3 ch=$4 enc=$5
    pe=$enc block=8
    if [ "$enc" = "liere:dense" ]; then
        pe=liere block=64 # the head size of ViT-Tiny and ViT-S
    fi
    tag="threads=$t model=$model size=$size channels=$ch encoding=$enc"
    export_to=
    [ "$PEER" = 0 ] || export_to=$WORK/model.safetensors # the weights the peer starts from
    # shellcheck disable=SC2086 # export_to: one argument or none
    line=$(OMP_NUM_THREADS=$t $BENCH train "$model" "$size" "$ch" 4 "$pe" "$block" "$BATCH" \
        "$STEPS" "$t" $export_to)
    echo "impl=vitrain $tag $line" >>"$RAW"
    [ "$PEER" = 1 ] || return 0
    line=$(OMP_NUM_THREADS=$t "$PYTHON" bench/torch_peer.py "$WORK/model.safetensors" "$BATCH" \
        "$STEPS" "$t")
    echo "impl=pytorch $tag $line" >>"$RAW"
}

# The words of $1 joined by commas.
commas() {
    echo "$1" | awk '{ $1 = $1; gsub(/ /, ","); print }'
}

# The value of KEY in $RAW's meta line, its commas turned back into spaces;
# empty where the line (of an older run) has none.
meta() {
    sed -n "s/^impl=meta.*[[:space:]]$1=\([^ ]*\).*/\1/p" "$RAW" | head -n 1 | tr , ' '
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
    # What the report's header says, so that REPORT_FROM writes it again
    # (lists joined by commas: the line's fields are split at spaces).
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    torch=none
    [ "$PEER" = 0 ] || torch=$("$PYTHON" -c 'import torch; print(torch.__version__)')
    echo "impl=meta version=$version date=$(date -u +%Y-%m-%d) cores=$(nproc) batch=$BATCH" \
        "steps=$STEPS reps=$REPS" \
        "torch=$torch threads=$(commas "$THREADS") configs=$(commas "$CONFIGS")" \
        "encodings=$(commas "$ENCODINGS") cpu=$(commas "$cpu") title=$(commas "$TITLE")" >"$RAW"
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
# and prints the markdown; the header comes from the meta line.
# (An older run's raw lines name only the version: the rest is this call's.)
version=$(meta version) measured=$(meta date) cores=$(meta cores) cpu=$(meta cpu) torch=$(meta torch)
reps=$(meta reps) steps=$(meta steps) batch=$(meta batch)
threads=$(meta threads) configs=$(meta configs) encodings=$(meta encodings)
: "${reps:=$REPS}" "${steps:=$STEPS}" "${batch:=$BATCH}" "${threads:=$THREADS}"
: "${configs:=$CONFIGS}" "${encodings:=$ENCODINGS}"
if ! grep -q '^impl=pytorch ' "$RAW"; then
    peer="PyTorch not measured (PEER=0)"
    turns='' peer_flag=0
else
    peer="PyTorch ${torch:-(version not recorded)} as the peer (bench/torch_peer.py)"
    turns=", the two implementations taking turns" peer_flag=1
fi
title=$(meta title)
mkdir -p "$(dirname "$OUT")"
{
    echo "# ${title:-Performance}"
    echo
    echo "Written by \`make bench\` (bench/bench.sh) on ${measured:-$(date -u +%Y-%m-%d)}, of version"
    echo "${version:-unknown}: ${cpu:-unknown CPU}, ${cores:-?} cores; Debian's OpenBLAS (OpenMP build);"
    echo "$peer."
    echo "Batch $batch, AdamW, label smoothing 0.1, patch 4; every number is the"
    echo "median of $reps repetitions (each the median of $steps steps after 2"
    echo "warm-up steps)$turns."
    echo "GFLOP/s counts the matrix products only (3 forward passes per training"
    echo "step), those vitrain runs (its last block takes the CLS token alone past"
    echo "the attention); \"of sgemm\" compares it with \`cblas_sgemm\` 1024^3 at the"
    echo "same thread count in the same run. The analysis of these numbers, what"
    echo "limits them and the history of earlier runs are in"
    echo "[PERFORMANCE_HISTORY.md](PERFORMANCE_HISTORY.md)."
    echo
    awk -f bench/report.awk "$RAW"
    echo
    echo "## How to reproduce"
    echo
    echo "The raw lines of this run are in [$(basename "${OUT%.md}").raw]($(basename "${OUT%.md}").raw);"
    echo "\`REPORT_FROM=$(dirname "$OUT")/$(basename "${OUT%.md}").raw OUT=$OUT make bench\` writes this file again from them."
    echo
    echo '```sh'
    echo "THREADS=\"$threads\" CONFIGS=\"$configs\" \\"
    echo "  ENCODINGS=\"$encodings\" BATCH=$batch STEPS=$steps REPS=$reps PEER=$peer_flag \\"
    echo "  OUT=$OUT make bench   # this file"
    echo "make bench                      # every configuration, batch 128; a few hours on 2 cores"
    echo "QUICK=1 make bench              # ViT-Tiny, 28 px, three encodings, once (runs/bench-quick/)"
    echo "make bench-scaling              # ViT-S, 1, 2, 4, ... threads up to the cores, vitrain alone"
    echo '```'
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "bench.sh: wrote $OUT" >&2
if [ "$(realpath "$RAW")" != "$(realpath -m "${OUT%.md}.raw")" ]; then
    cp "$RAW" "${OUT%.md}.raw.tmp"
    mv "${OUT%.md}.raw.tmp" "${OUT%.md}.raw"
    echo "bench.sh: wrote ${OUT%.md}.raw" >&2
fi
