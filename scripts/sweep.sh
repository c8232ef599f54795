#!/bin/sh
# A grid of training runs: encodings x seeds x an optional extra axis (one
# config key and its values), each trained into its own run folder
#   <out>/<comparison>/<pe>[-<key><value>]-seed<k>
# and optionally evaluated afterwards (vitrain eval, one CSV per --eval tag
# in the run folder). Running the same sweep again skips finished runs
# (report.md exists), resumes interrupted ones from checkpoint-last, and
# skips evaluations whose CSV exists: a sweep can be stopped (Ctrl-C) and
# started again, or re-run with more --eval tags to evaluate finished runs.
set -eu
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
usage: scripts/sweep.sh --comparison NAME --config PATTERN [options]

Trains every (encoding, axis value, seed) of the grid with
  ./vitrain train --config PATTERN(pe) --set log.dir=OUT/NAME
                  --set log.name=RUN --set train.seed=K [--set KEY=VALUE] [--set ...]
and then evaluates it with each --eval.

  --comparison NAME   folder of the runs under OUT (e.g. fmnist)
  --config PATTERN    config file; {pe} is replaced by the encoding,
                      e.g. configs/study/fmnist_{pe}.ini
  --pe "LIST"         encodings [absolute rope_axial rope_mixed spherical
                      comrope_ap comrope_ld liere]
  --seeds "LIST"      seeds [0 1 2]
  --axis KEY          an extra axis: a config key (section.key) ...
  --values "LIST"     ... and its values; run names get -<key><value>
  --set S.K=V         an override for every run (repeatable)
  --eval TAG "ARGS"   after training: ./vitrain eval --checkpoint RUN ARGS
                      > RUN/eval-TAG.csv (repeatable), e.g.
                      --eval res "--img-size 28 --img-size 42 --img-size 56"
                      --eval shuffle "--shuffle-patches 0"
                      --eval 168 "--data data/arrows-168 --img-size 168"
  --out DIR           parent of the comparison folders [runs/study]
  --threads N         threads of every vitrain command [0: all cores]
  --dry-run           print the commands, run nothing
  -h, --help          this text

Each run's output goes to OUT/NAME/RUN.log. OpenMP threads wait passively
(OMP_WAIT_POLICY=passive unless set). A run folder without
checkpoint-last and without report.md (stopped before its first epoch
ended) is started afresh.
EOF
}

COMPARISON="" CONFIG="" OUT=runs/study THREADS=0 DRY=0 AXIS="" VALUES=""
PES="absolute rope_axial rope_mixed spherical comrope_ap comrope_ld liere"
SEEDS="0 1 2"
SETS=""    # newline-separated --set values
EVALS=""   # newline-separated "TAG<TAB>ARGS"
TAB=$(printf '\t')
NL='
'

die() { echo "sweep: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] || die "option $1 needs a value (see --help)"; }

while [ $# -gt 0 ]; do
    case $1 in
    --comparison) need "$@"; COMPARISON=$2; shift 2 ;;
    --config) need "$@"; CONFIG=$2; shift 2 ;;
    --pe) need "$@"; PES=$2; shift 2 ;;
    --seeds) need "$@"; SEEDS=$2; shift 2 ;;
    --axis) need "$@"; AXIS=$2; shift 2 ;;
    --values) need "$@"; VALUES=$2; shift 2 ;;
    --set) need "$@"; SETS="$SETS$2$NL"; shift 2 ;;
    --eval) [ $# -ge 3 ] || die "--eval needs TAG and \"ARGS\""
        case $2 in *[!A-Za-z0-9_]* | "") die "--eval tag '$2': letters, digits and _ only" ;; esac
        EVALS="$EVALS$2$TAB$3$NL"; shift 3 ;;
    --out) need "$@"; OUT=$2; shift 2 ;;
    --threads) need "$@"; THREADS=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
[ -n "$COMPARISON" ] || die "give --comparison NAME (see --help)"
[ -n "$CONFIG" ] || die "give --config PATTERN (see --help)"
if [ -n "$AXIS" ] && [ -z "$VALUES" ]; then die "--axis $AXIS needs --values"; fi
if [ -z "$AXIS" ] && [ -n "$VALUES" ]; then die "--values needs --axis"; fi
case $AXIS in "" | *.*) ;; *) die "--axis '$AXIS' is not section.key" ;; esac

DIR=$OUT/$COMPARISON
# Idle OpenMP threads sleep instead of spinning: on cores shared with other
# work, spinning threads slowed the study model from 767 to 55 img/s
# (2 threads, a test suite running beside). Set OMP_WAIT_POLICY to override.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
THREAD_ARGS=""
case $THREADS in
0) ;;
*[!0-9]* | "") die "bad --threads '$THREADS'" ;;
*) THREAD_ARGS="--threads $THREADS" ;;
esac

# Runs a command, or prints it under --dry-run. The output goes to $LOG.
run_logged() {
    if [ "$DRY" = 1 ]; then
        echo "  $*"
        return 0
    fi
    echo "\$ $*" >>"$LOG"
    "$@" >>"$LOG" 2>&1
}

# Why a command failed: the end of its log, and the exit status.
failed() {
    echo "sweep: $1 failed (status $2); the end of $LOG:" >&2
    tail -n 15 "$LOG" >&2
    exit "$2"
}

train_one() { # RUN_NAME CONFIG_FILE SEED [AXIS_SET]
    run=$1 cfg=$2 seed=$3 axis_set=${4:-}
    rdir=$DIR/$run
    if [ -f "$rdir/report.md" ]; then
        echo "sweep: $COMPARISON/$run: finished"
        return 0
    fi
    if [ -f "$rdir/checkpoint-last" ]; then
        echo "sweep: $COMPARISON/$run: resuming"
        # shellcheck disable=SC2086  # THREAD_ARGS is empty or two words
        set -- ./vitrain train --resume "$rdir" $THREAD_ARGS
    else
        if [ -d "$rdir" ] && [ "$DRY" = 0 ]; then
            echo "sweep: $COMPARISON/$run: no checkpoint yet, starting afresh"
            rm -r -- "$rdir"
        fi
        echo "sweep: $COMPARISON/$run: training"
        [ -f "$cfg" ] || die "no config $cfg"
        # shellcheck disable=SC2086
        set -- ./vitrain train --config "$cfg" $THREAD_ARGS \
            --set "log.dir=$DIR" --set "log.name=$run" --set "train.seed=$seed"
        # The common overrides, one per line; the axis value comes last and wins.
        old_ifs=$IFS
        IFS=$NL
        for s in $SETS; do set -- "$@" --set "$s"; done
        IFS=$old_ifs
        [ -z "$axis_set" ] || set -- "$@" --set "$axis_set"
    fi
    start=$(date +%s)
    run_logged "$@" || failed "training $COMPARISON/$run" $?
    [ "$DRY" = 1 ] || echo "sweep: $COMPARISON/$run: trained in $(($(date +%s) - start)) s"
}

eval_one() { # RUN_NAME
    run=$1
    old_ifs=$IFS
    IFS=$NL
    for spec in $EVALS; do
        IFS=$old_ifs
        tag=${spec%%"$TAB"*} args=${spec#*"$TAB"}
        csv=$DIR/$run/eval-$tag.csv
        if [ -f "$csv" ]; then
            continue
        fi
        if [ "$DRY" = 1 ]; then
            # shellcheck disable=SC2086  # ARGS are words by design
            echo "  ./vitrain eval --checkpoint $DIR/$run $THREAD_ARGS $args > $csv"
            continue
        fi
        echo "\$ ./vitrain eval --checkpoint $DIR/$run $args" >>"$LOG"
        # shellcheck disable=SC2086
        if ./vitrain eval --checkpoint "$DIR/$run" $THREAD_ARGS $args \
            >"$csv.tmp" 2>>"$LOG"; then
            mv "$csv.tmp" "$csv"
            echo "sweep: $COMPARISON/$run: eval-$tag.csv"
        else
            status=$?
            rm -f "$csv.tmp"
            failed "evaluating $COMPARISON/$run ($tag)" $status
        fi
    done
    IFS=$old_ifs
}

[ "$DRY" = 1 ] || { make -s vitrain; mkdir -p "$DIR"; }
for pe in $PES; do
    cfg=$(printf '%s' "$CONFIG" | sed "s/{pe}/$pe/g")
    for value in ${VALUES:-"-"}; do
        name=$pe axis_set=""
        if [ -n "$AXIS" ]; then
            name=$pe-${AXIS#*.}$value
            axis_set=$AXIS=$value
        fi
        for seed in $SEEDS; do
            run=$name-seed$seed
            LOG=$DIR/$run.log
            train_one "$run" "$cfg" "$seed" "$axis_set"
            eval_one "$run"
        done
    done
done
