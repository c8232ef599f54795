#!/bin/sh
# make bench-mpi: training throughput of 1 and 2 MPI ranks, and the share of
# a step spent averaging gradients.
#
#   bench/mpi_bench.sh BUILD_DIR   (BUILD_DIR holds vitrain and tests/mpi/mpi_check,
#                                   built with make MPI=1)
#
# One model (dim 128, depth 4, 37 tokens, ~0.8 M parameters, global batch
# 64) trains STEPS steps on a generated folder in three set-ups: one process
# with one thread, one process with two threads, and two ranks with one
# thread each. img/s is the median over the steps after the first five
# (timing.csv); the allreduce share is what report.md measured: the time in
# the gradient averaging (waiting for the slower rank included) over the
# time of the training steps. The set-ups take turns for ROUNDS rounds and
# each reports its best round, so that a burst of other work on the machine
# does not decide the comparison.
set -eu

BUILD=${1:?usage: bench/mpi_bench.sh BUILD_DIR}
VITRAIN=$BUILD/vitrain
STEPS=${STEPS:-40}
ROUNDS=${ROUNDS:-3}
MPIRUN="mpirun --bind-to none"
if [ "$(id -u)" -eq 0 ]; then
    MPIRUN="$MPIRUN --allow-run-as-root"
fi

WORK=$(mktemp -d /tmp/vitrain-mpi-bench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$BUILD/tests/mpi/mpi_check" folder "$WORK/data" 160
CONFIG=$WORK/bench.ini
cat > "$CONFIG" <<EOF
[data]
root = $WORK/data
img_size = 24
channels = 1
[model]
dim = 128
depth = 4
heads = 4
mlp_dim = 256
patch_size = 4
[optim]
warmup_epochs = 1
[train]
batch_size = 64
epochs = 100
max_steps = $STEPS
eval_every = 100
[log]
dir = $WORK/runs
EOF

# median img/s of timing.csv after the first five steps
median_rate() {
    awk -F, 'NR > 6 { print $3 }' "$1" | sort -g |
        awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }'
}

share() {
    sed -n 's/^| gradient averaging | \([0-9.]*\) % .*/\1/p' "$1"
}

# run NAME RANKS THREADS
run() {
    if [ "$2" -eq 1 ]; then
        OMP_NUM_THREADS=$3 "$VITRAIN" --config "$CONFIG" --set log.name="$1" > "$WORK/$1.log" 2>&1
    else
        $MPIRUN -np "$2" -x OMP_NUM_THREADS="$3" "$VITRAIN" --config "$CONFIG" \
            --set log.name="$1" > "$WORK/$1.log" 2>&1
    fi || { cat "$WORK/$1.log" >&2; exit 1; }
}

# best NAME: "img/s share" of the set-up's fastest round
best() {
    for k in $(seq "$ROUNDS"); do
        echo "$(median_rate "$WORK/runs/$1-$k/timing.csv") $(share "$WORK/runs/$1-$k/report.md")"
    done | sort -g | tail -n 1
}

for k in $(seq "$ROUNDS"); do
    run r1t1-$k 1 1
    run r1t2-$k 1 2
    run r2t1-$k 2 1
done
base=$(best r1t1 | cut -d' ' -f1)

echo "| set-up | ranks x threads | img/s | vs 1 x 1 | allreduce share of a step |"
echo "|---|---|---|---|---|"
for r in "r1t1 1 1 one process" "r1t2 1 2 one process" "r2t1 2 1 mpirun -np 2"; do
    set -- $r
    result=$(best "$1")
    rate=${result% *}
    name=$(echo "$r" | cut -d' ' -f4-)
    printf '| %s | %s x %s | %.0f | %.2f | %s %% |\n' "$name" "$2" "$3" "$rate" \
        "$(echo "$rate $base" | awk '{ print $1 / $2 }')" "${result#* }"
done
echo
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $STEPS steps of global" \
    "batch 64 per run, best of $ROUNDS rounds; $(grep -m1 '^model:' "$WORK/r1t1-1.log")"
