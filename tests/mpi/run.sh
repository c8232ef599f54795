#!/bin/sh
# make test-mpi: data-parallel training against a single process.
#
#   tests/mpi/run.sh BUILD_DIR     (BUILD_DIR holds vitrain and tests/mpi/mpi_check,
#                                   built with make MPI=1)
#
# On a generated two-class folder of 12 x 12 images (80 train, 80 val), a
# 2-block ViT with drop path and random flips, global batch 8, 1 thread per
# rank:
#   1. `mpirun -np 2` and one process train 20 steps: the losses and gradient
#      norms of steps.csv agree within LOSS_TOL, the final parameters within
#      PARAM_TOL, and the ranks report bit-identical parameters;
#   2. 10 steps on 2 ranks, resumed on 1 rank to step 20, matches the
#      straight run;
#   3. a bad image on one rank's data stops both ranks with its path;
#   4. a batch that does not split over the ranks is refused;
#   5. a run folder rank 0 cannot create stops both ranks;
#   6. SIGTERM to one rank stops both at the same step with checkpoint-last,
#      and --resume continues;
#   7. a rank killed with SIGKILL ends the job instead of hanging it.
#
# Tolerances. The ranks and the single process compute every sample alike,
# but the sums over the batch (loss mean, weight gradients) are formed in
# another order: per rank over 4 samples, then averaged over 2 ranks,
# instead of over 8 at once. That changes float32 results by a few units in
# the last place (~1e-7 relative) per step, and 20 AdamW steps carry such
# differences along without amplifying them much: we measured at most 5e-8
# in the loss and 8e-7 (relative to the largest parameter) in the
# parameters. LOSS_TOL = 1e-5 and PARAM_TOL = 1e-5 relative leave a wide
# margin for another BLAS or CPU, while a wrong shard, a missing 1/N or an
# unsynchronised step shows up at 1e-2 or more.
set -eu

BUILD=${1:?usage: tests/mpi/run.sh BUILD_DIR}
VITRAIN=$BUILD/vitrain
CHECK=$BUILD/tests/mpi/mpi_check
LOSS_TOL=1e-5
PARAM_TOL=1e-5
TIMEOUT=120

# Root may run mpirun only when asked; several ranks may share one core here.
MPIRUN="mpirun --oversubscribe -x OMP_NUM_THREADS=1"
if [ "$(id -u)" -eq 0 ]; then
    MPIRUN="$MPIRUN --allow-run-as-root"
fi
export OMP_NUM_THREADS=1

WORK=$(mktemp -d /tmp/vitrain-mpi-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
FAILED=0

fail() {
    echo "FAIL: $*" >&2
    FAILED=1
}

pass() {
    echo "ok: $*"
}

"$CHECK" folder "$WORK/data" 40
"$CHECK" folder "$WORK/bad" 40 bad
CONFIG=$WORK/tiny.ini
cat > "$CONFIG" <<EOF
[data]
root = $WORK/data
img_size = 12
channels = 1
mean = 0.5
std = 0.25
hflip = 0.5
[model]
dim = 16
depth = 2
heads = 2
mlp_dim = 32
patch_size = 4
drop_path = 0.2
[optim]
warmup_epochs = 1
[train]
batch_size = 8
epochs = 2
[log]
dir = $WORK/runs
EOF

# train NAME NP [vitrain options...]: one run, its output in $WORK/NAME.log.
train() {
    name=$1 np=$2
    shift 2
    if [ "$np" -eq 0 ]; then
        timeout $TIMEOUT "$VITRAIN" "$@" > "$WORK/$name.log" 2>&1
    else
        timeout $TIMEOUT $MPIRUN -np "$np" "$VITRAIN" "$@" > "$WORK/$name.log" 2>&1
    fi
}

# compare_steps A B: the largest relative difference of loss and grad_norm
# between two steps.csv files with the same steps; fails above LOSS_TOL.
compare_steps() {
    awk -F, -v tol=$LOSS_TOL -v what="$3" '
        FNR == 1 { next }
        NR == FNR { loss[$1] = $3; norm[$1] = $5; next }
        {
            n++
            if (!($1 in loss)) { missing++; next }
            for (k = 0; k < 2; k++) {
                a = k ? norm[$1] : loss[$1]; b = k ? $5 : $3
                d = a - b; if (d < 0) d = -d
                m = a < 0 ? -a : a
                r = m > 0 ? d / m : d
                if (r > worst[k]) worst[k] = r
            }
        }
        END {
            printf "%s: %d steps, max relative difference: loss %.2g, grad_norm %.2g (tolerance %g)\n",
                   what, n, worst[0], worst[1], tol
            exit (n == 20 && !missing && worst[0] <= tol && worst[1] <= tol) ? 0 : 1
        }' "$1" "$2"
}

# 1. one process against two ranks, 20 steps
train single 0 --config "$CONFIG" --set log.name=single || fail "single process run (see below)"
train ranks2 2 --config "$CONFIG" --set log.name=ranks2 || fail "2-rank run"
if compare_steps "$WORK/runs/single/steps.csv" "$WORK/runs/ranks2/steps.csv" "1 vs 2 ranks"; then
    pass "losses of 1 process and 2 ranks agree"
else
    fail "losses of 1 process and 2 ranks differ"
fi
if "$CHECK" compare "$WORK/runs/single/checkpoint-last" "$WORK/runs/ranks2/checkpoint-last" \
    $PARAM_TOL; then
    pass "final parameters of 1 process and 2 ranks agree"
else
    fail "final parameters of 1 process and 2 ranks differ"
fi
if grep -q "parameters identical on all 2 ranks" "$WORK/ranks2.log"; then
    pass "the 2 ranks hold bit-identical parameters"
else
    fail "no parameter identity report from the 2 ranks"
fi
if [ "$(ls "$WORK/runs/ranks2" | tr '\n' ' ')" = \
     "checkpoint-best checkpoint-last config.ini model.safetensors report.md steps.csv summary.csv timing.csv " ]
then
    pass "the run folder holds rank 0's files only"
else
    fail "unexpected files in the run folder: $(ls "$WORK/runs/ranks2" | tr '\n' ' ')"
fi

# 2. 10 steps on 2 ranks, then resumed on 1 rank to the end
train part 2 --config "$CONFIG" --set log.name=part --set train.max_steps=10 || fail "2-rank part"
train resumed 0 --resume "$WORK/runs/part" --set train.max_steps=0 || fail "1-rank resume"
if compare_steps "$WORK/runs/single/steps.csv" "$WORK/runs/part/steps.csv" \
    "2 ranks to step 10, resumed on 1 rank" &&
    "$CHECK" compare "$WORK/runs/single/checkpoint-last" "$WORK/runs/part/checkpoint-last" \
        $PARAM_TOL; then
    pass "a run resumed with another rank count continues the straight run"
else
    fail "the resumed run departs from the straight run"
fi

# 3. a bad image on the second rank's copy of the data (MPMD launch)
rc=0
timeout $TIMEOUT $MPIRUN -np 1 "$VITRAIN" --config "$CONFIG" --set log.name=bad : \
    -np 1 "$VITRAIN" --config "$CONFIG" --set log.name=bad --set "data.root=$WORK/bad" \
    > "$WORK/bad.log" 2>&1 || rc=$?
if [ $rc -eq 3 ] && grep -q "rank 1: .*broken.pgm" "$WORK/bad.log"; then
    pass "a data error on rank 1 stops both ranks (exit 3) naming the file"
else
    fail "data error on one rank: exit $rc (want 3), message: $(grep vitrain "$WORK/bad.log")"
fi

# 4. a global batch that does not split over the ranks
rc=0
train odd 3 --config "$CONFIG" --set log.name=odd || rc=$?
if [ $rc -eq 2 ] && grep -q "not a multiple of the 3 ranks" "$WORK/odd.log"; then
    pass "batch 8 on 3 ranks is refused (exit 2)"
else
    fail "batch 8 on 3 ranks: exit $rc (want 2): $(grep vitrain "$WORK/odd.log")"
fi
# mixup pairs neighbours: batch 6 on 2 ranks (3 each) would pair across them
rc=0
train oddmix 2 --config "$CONFIG" --set log.name=oddmix --set train.batch_size=6 \
    --set train.mixup=0.8 || rc=$?
if [ $rc -eq 2 ] && grep -q "needs an even share of train.batch_size 6" "$WORK/oddmix.log"; then
    pass "mixup with batch 6 on 2 ranks is refused (exit 2)"
else
    fail "mixup with batch 6 on 2 ranks: exit $rc (want 2): $(grep vitrain "$WORK/oddmix.log")"
fi

# 5. a run folder rank 0 cannot create (its parent is a file)
rc=0
train nodir 2 --config "$CONFIG" --set log.dir="$CONFIG" --set log.name=x || rc=$?
if [ $rc -eq 4 ] && grep -q "rank 0: cannot create the run folder" "$WORK/nodir.log"; then
    pass "a run folder rank 0 cannot create stops both ranks (exit 4)"
else
    fail "unwritable run folder: exit $rc (want 4): $(grep vitrain "$WORK/nodir.log")"
fi

# rank_pid MPIRUN_PID RANK: the process id of one rank (a child of mpirun).
rank_pid() {
    for child in $(ps -o pid= --ppid "$1"); do
        if tr '\0' '\n' < "/proc/$child/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"
        then
            echo "$child"
            return 0
        fi
    done
    return 1
}

# long_run NAME: a 2-rank run long enough to be caught mid-way; sets PID
# (mpirun's) and RANK1 once training has logged a few steps.
long_run() {
    $MPIRUN -np 2 "$VITRAIN" --config "$CONFIG" --set log.name="$1" --set train.epochs=5000 \
        > "$WORK/$1.log" 2>&1 &
    PID=$!
    i=0
    while [ $i -lt 600 ]; do
        lines=$(cat "$WORK/runs/$1/steps.csv" 2>/dev/null | wc -l)
        [ "$lines" -gt 20 ] && break
        sleep 0.1
        i=$((i + 1))
    done
    RANK1=$(rank_pid $PID 1) || RANK1=""
}

# wait_for PID: its exit status, or 124 after TIMEOUT seconds (then killed).
wait_for() {
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt $((TIMEOUT * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -9 "$1"
        wait "$1" 2>/dev/null || true
        return 124
    fi
    wait "$1"
}

# 6. SIGTERM to rank 1 alone: both ranks stop after the same step
long_run term
if [ -n "$RANK1" ]; then
    kill -TERM "$RANK1"
    rc=0
    wait_for $PID || rc=$?
    if [ $rc -eq 130 ] && grep -q "stopped by a signal to another rank after step" "$WORK/term.log" &&
        [ -f "$WORK/runs/term/checkpoint-last" ]; then
        pass "SIGTERM to one rank stops both (exit 130) with checkpoint-last"
        step=$(sed -n 's/.*after step \([0-9]*\);.*/\1/p' "$WORK/term.log" | head -n 1)
        if train term_resumed 2 --resume "$WORK/runs/term" --set train.max_steps=$((step + 4)) &&
            [ "$(tail -n 1 "$WORK/runs/term/steps.csv" | cut -d, -f1)" -eq $((step + 3)) ]; then
            pass "and --resume continues it from step $step"
        else
            fail "resuming the stopped run: $(grep vitrain "$WORK/term_resumed.log")"
        fi
    else
        fail "SIGTERM to rank 1: exit $rc (want 130): $(grep vitrain "$WORK/term.log")"
    fi
else
    kill -9 $PID 2>/dev/null || true
    fail "could not find rank 1 of the SIGTERM run"
fi

# 7. rank 1 killed: mpirun ends rank 0 too
long_run killed
if [ -n "$RANK1" ]; then
    kill -KILL "$RANK1"
    rc=0
    wait_for $PID || rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 124 ]; then
        pass "a killed rank ends the job (mpirun exit $rc): $(grep -m1 'exited on signal' "$WORK/killed.log")"
    else
        fail "a killed rank: mpirun exit $rc"
    fi
else
    kill -9 $PID 2>/dev/null || true
    fail "could not find rank 1 of the kill run"
fi

if [ $FAILED -ne 0 ]; then
    for log in "$WORK"/*.log; do
        echo "---- $log" >&2
        grep -v "^decoding" "$log" | tail -20 >&2
    done
    echo "test-mpi: FAILED" >&2
    exit 1
fi
echo "test-mpi: all passed"
