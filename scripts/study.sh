#!/bin/sh
# The reproduction study of the positional encodings: eight comparisons,
# each a sweep (scripts/sweep.sh) summarised over seeds
# (scripts/study_summary.sh), plotted (scripts/plot_study.sh) and written
# into a results file. Runs are shared where the comparisons allow: the
# Fashion-MNIST models of comparison 1 also serve 2, 5, 6, 7 and the
# block size 8 and data fraction 1.0 points of 4 and 8.
#
#   scripts/study.sh smoke | quick | full [--plan] [--threads N] [--measure]
#
# Every step can be interrupted and the same command started again: it
# skips what is finished and resumes what is not (see scripts/sweep.sh).
set -eu
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
usage: scripts/study.sh PROTOCOL [options]

PROTOCOL
  smoke   every step of the pipeline on a tiny scale (a Fashion-MNIST subset,
          2 encodings, 1 seed, a few dozen steps per run): a few minutes
  quick   all eight comparisons, reduced: 3 seeds, 1 epoch on Fashion-MNIST,
          the arrow task with 3 encodings; about 83 minutes on 2 quiet cores
  full    the same at the scale of configs/study/: 5 epochs, every encoding
          on the arrow task (10 epochs of 20000 images); about 14 hours

options
  --plan        print the runs and the expected time of each comparison, run
                nothing
  --measure     with --plan: measure this machine's training throughput
                (bench/pe_bench, about a minute) instead of the reference
  --threads N   threads of every run [0: all cores]
  --no-docs     quick/full: leave docs/RESULTS.md and docs/img/ alone (tables
                and plots still go to the runs folder)
  -h, --help    this text

OpenMP threads wait passively (OMP_WAIT_POLICY=passive, see scripts/sweep.sh):
on cores shared with other work spinning threads slow a run tenfold; on a
dedicated machine OMP_WAIT_POLICY=active may be a little faster.

Outputs: runs under runs/study-PROTOCOL/<comparison>/, tables under
runs/study-PROTOCOL/tables/, RESULTS.md (docs/RESULTS.md filled for quick
and full, runs/study-smoke/RESULTS.md for smoke) and plots (docs/img/study-*.png
for quick and full, runs/study-smoke/img/ for smoke; gnuplot needed:
scripts/install_deps.sh --study).
EOF
}

die() { echo "study: $*" >&2; exit 2; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
case $1 in -h | --help) usage; exit 0 ;; esac
PROTOCOL=$1
shift
PLAN=0 MEASURE=0 THREADS=0 DOCS=1
while [ $# -gt 0 ]; do
    case $1 in
    --plan) PLAN=1; shift ;;
    --measure) MEASURE=1; shift ;;
    --threads) [ $# -ge 2 ] || die "--threads needs a value"; THREADS=$2; shift 2 ;;
    --no-docs) DOCS=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

ALL_PES="absolute rope_axial rope_mixed spherical comrope_ap comrope_ld liere"
OUT=runs/study-$PROTOCOL
FMNIST=data/fashion-mnist

# ---- the protocols --------------------------------------------------------
# FM_*: Fashion-MNIST (comparisons 1, 2, 4-8); AR_*: the arrow task (3).
case $PROTOCOL in
smoke)
    SEEDS="0"
    FM_PES="absolute liere"
    FM_EPOCHS=2 FM_WARMUP=0.5 FM_TRAIN_PER_CLASS=200 FM_VAL_PER_CLASS=50
    FM_BATCH=64
    AR_PES="absolute liere" AR_TRAIN=512 AR_VAL=128 AR_EPOCHS=1 AR_WARMUP=0.5 AR_BATCH=64
    BLOCK_SIZES="4 64"
    SIGMA_PES="comrope_ap"
    FRACTION_PES="absolute"
    FRACTIONS="0.5"
    RESULTS=$OUT/RESULTS.md IMG=$OUT/img
    ;;
quick)
    SEEDS="0 1 2"
    FM_PES=$ALL_PES
    FM_EPOCHS=1 FM_WARMUP=0.2 FM_BATCH=128
    AR_PES="absolute rope_mixed liere" AR_TRAIN=10000 AR_VAL=1000 AR_EPOCHS=2 AR_WARMUP=0.2
    AR_BATCH=128
    BLOCK_SIZES="2 4 16 64"
    SIGMA_PES="comrope_ap comrope_ld"
    FRACTION_PES="absolute rope_mixed liere"
    FRACTIONS="0.2 0.4 0.6 0.8"
    RESULTS=docs/RESULTS.md IMG=docs/img
    ;;
full)
    SEEDS="0 1 2"
    FM_PES=$ALL_PES
    FM_EPOCHS=5 FM_WARMUP=1 FM_BATCH=128
    AR_PES=$ALL_PES AR_TRAIN=20000 AR_VAL=2000 AR_EPOCHS=10 AR_WARMUP=1 AR_BATCH=128
    BLOCK_SIZES="2 4 16 64"
    SIGMA_PES="comrope_ap comrope_ld"
    FRACTION_PES=$ALL_PES
    FRACTIONS="0.2 0.4 0.6 0.8"
    RESULTS=docs/RESULTS.md IMG=docs/img
    ;;
*) die "unknown protocol '$PROTOCOL' (smoke, quick or full)" ;;
esac
if [ "$DOCS" = 0 ] && [ "$PROTOCOL" != smoke ]; then RESULTS=$OUT/RESULTS.md IMG=$OUT/img; fi
NSEEDS=$(echo "$SEEDS" | wc -w)
SIGMA_REF_PES="liere rope_axial rope_mixed"   # the references of comparison 6 (sigma is ComRoPE's)

# ---- the budget -----------------------------------------------------------
# Training throughput (img/s) of the study model with 2 threads on 2 cores,
# measured with bench/pe_bench (median of 5 rounds of 8 steps): at 28 px /
# patch 7 (16 tokens, batch 128) and at 108 px / patch 12 (81 tokens,
# batch 64). ComRoPE-LD needs one exponential per position and block, so it
# slows most with the token count. Evaluation (forward only) runs about 3
# times faster per token. Decoding Fashion-MNIST costs about DECODE_S
# seconds per 10000 images (measured: 70000 PNGs in 4 s on 2 busy cores),
# again for every evaluation.
TP28="absolute=1586 rope_axial=1581 rope_mixed=1569 spherical=1568 comrope_ap=1382 comrope_ld=1384 liere=1376"
TP108="absolute=220 rope_axial=211 rope_mixed=237 spherical=227 comrope_ap=204 comrope_ld=60 liere=179"
# Dense LieRE (block size 64 = Dh) trains 3.3 times slower than LieRE_8
# (measured at 28 px, batch 128): the 64 x 64 exponentials dominate.
DENSE_SLOWDOWN=3.3
DECODE_S=1

measure() {
    echo "study: measuring the training throughput (bench/pe_bench, 28 px, patch 7; 2 minutes) ..."
    make -s build/release/bench/pe_bench
    if [ "$THREADS" != 0 ]; then export OMP_NUM_THREADS="$THREADS"; fi
    measured=$(build/release/bench/pe_bench 128 6 2 28 7 128 |
        awk -F'|' '/^\| [a-z_]+ \| [0-9]/ { gsub(/ /, "", $2); gsub(/ /, "", $4); printf "%s=%s ", $2, $4 }')
    echo "study: measured img/s at 28 px: $measured"
    # 108 px: the reference scaled by this machine's speed at 28 px.
    TP108=$(printf '%s\n%s\n%s\n' "$TP28" "$measured" "$TP108" | awk '
        { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[NR, kv[1]] = kv[2] } }
        NR == 3 { for (i = 1; i <= NF; i++) { split($i, kv, "=")
                  printf "%s=%.0f ", kv[1], kv[2] * v[2, kv[1]] / v[1, kv[1]] } }')
    TP28=$measured
}

tp() { # PE SIZE: training img/s (PE liere_dense: LieRE with block size Dh)
    table=$TP28
    [ "$2" != 108 ] || table=$TP108
    echo "$table" | tr ' ' '\n' | awk -F= -v pe="$1" -v dense="$DENSE_SLOWDOWN" '
        $1 == pe || ($1 == "liere" && pe == "liere_dense") {
            print (pe == "liere_dense" ? $2 / dense : $2) }'
}

# seconds RUNS PE TRAIN_IMAGES EPOCHS SIZE VAL EVAL_IMAGE_TOKENS: expected
# seconds of RUNS runs, each training EPOCHS x TRAIN_IMAGES and evaluating
# VAL images per epoch, plus evaluations over EVAL_IMAGE_TOKENS (images x
# tokens / training tokens) after training.
seconds() {
    awk -v runs="$1" -v ips="$(tp "$2" "$5")" -v n="$3" -v ep="$4" -v val="$6" -v ev="$7" \
        -v dec="$DECODE_S" 'BEGIN {
        train = ep * n / ips; evals = (ep * val + ev) / (3 * ips)
        decode = (n + val) / 10000 * dec
        printf "%.0f", runs * (train + evals + decode + 3) }'
}

FM_TRAIN=60000 FM_VAL=10000
if [ "$PROTOCOL" = smoke ]; then FM_TRAIN=$((FM_TRAIN_PER_CLASS * 10)) FM_VAL=$((FM_VAL_PER_CLASS * 10)); fi
TOTAL=0
plan_line() { # COMPARISON RUNS SECONDS
    TOTAL=$((TOTAL + $3))
    printf '  %-34s %4d runs  %6.1f min\n' "$1" "$2" "$(awk -v s="$3" 'BEGIN { print s / 60 }')"
}

plan() {
    echo "study $PROTOCOL: $NSEEDS seed(s): $SEEDS; threads ${THREADS}; expected times on 2 quiet cores"
    s=0 r=0
    # Evaluations after training, in images x tokens / training tokens:
    # Fashion-MNIST at 42 and 56 px and shuffled at 28 px (36, 64, 16 tokens),
    # the arrows at 168 and 276 px (196 and 529 tokens against 81).
    fm_ev=$(awk -v v="$FM_VAL" 'BEGIN { print v * (36 + 64 + 16) / 16 }')
    ar_ev=$(awk -v v="$AR_VAL" 'BEGIN { print v * (196 + 529) / 81 }')
    for pe in $FM_PES; do
        s=$((s + $(seconds "$NSEEDS" "$pe" "$FM_TRAIN" "$FM_EPOCHS" 28 "$FM_VAL" "$fm_ev")))
        r=$((r + NSEEDS))
    done
    plan_line "1,2,5,7 Fashion-MNIST models" $r $s
    s=0 r=0
    for pe in $AR_PES; do
        s=$((s + $(seconds "$NSEEDS" "$pe" "$AR_TRAIN" "$AR_EPOCHS" 108 "$AR_VAL" "$ar_ev")))
        r=$((r + NSEEDS))
    done
    plan_line "3 arrows 108/168/276 px" $r $s
    s=0 r=0
    for b in $BLOCK_SIZES; do
        pe=liere
        [ "$b" != 64 ] || pe=liere_dense
        s=$((s + $(seconds "$NSEEDS" $pe "$FM_TRAIN" "$FM_EPOCHS" 28 "$FM_VAL" 0)))
        r=$((r + NSEEDS))
    done
    plan_line "4 LieRE block sizes" $r $s
    s=0 r=0
    for pe in $SIGMA_PES; do
        s=$((s + $(seconds "$NSEEDS" "$pe" "$FM_TRAIN" "$FM_EPOCHS" 28 "$FM_VAL" "$fm_ev")))
        r=$((r + NSEEDS))
    done
    plan_line "6 ComRoPE sigma 1" $r $s
    s=0 r=0
    for pe in $FRACTION_PES; do
        for f in $FRACTIONS; do
            n=$(awk -v f="$f" -v n="$FM_TRAIN" 'BEGIN { printf "%d", f * n }')
            s=$((s + $(seconds "$NSEEDS" "$pe" "$n" "$FM_EPOCHS" 28 "$FM_VAL" 0)))
            r=$((r + NSEEDS))
        done
    done
    plan_line "8 data fractions" $r $s
    printf '  %-34s            %6.1f min\n' "total" "$(awk -v s="$TOTAL" 'BEGIN { print s / 60 }')"
}

if [ "$PLAN" = 1 ]; then
    [ "$MEASURE" = 0 ] || measure
    plan
    exit 0
fi

# ---- data -----------------------------------------------------------------

# smoke: a small Fashion-MNIST of links to the first images of each class.
subset_fmnist() { # DEST PER_CLASS_TRAIN PER_CLASS_VAL
    [ -d "$1/val" ] && return 0
    rm -rf "$1.partial"
    for split in train val; do
        n=$2
        [ $split = train ] || n=$3
        for cls in "$FMNIST/$split"/*/; do
            cls=${cls%/}
            dest=$1.partial/$split/${cls##*/}
            mkdir -p "$dest"
            find "$cls" -maxdepth 1 -type f | sort | head -n "$n" |
                while read -r f; do ln -s "$(cd "${f%/*}" && pwd)/${f##*/}" "$dest/"; done
        done
    done
    mv "$1.partial" "$1"
}

arrows_sets() { # ROOT TRAIN VAL
    # Each split by itself: an interrupted run may have finished train alone.
    [ -d "$1/train" ] || ./vitrain arrows --out "$1" --grid 9 --train "$2" --val 0
    [ -d "$1/val" ] || ./vitrain arrows --out "$1" --grid 9 --train 0 --val "$3"
    [ -d "$1-168/val" ] || ./vitrain arrows --out "$1-168" --grid 14 --train 0 --val "$3"
    [ -d "$1-276/val" ] || ./vitrain arrows --out "$1-276" --grid 23 --train 0 --val "$3"
}

make -s vitrain
[ -d "$FMNIST/train" ] || die "no $FMNIST/train: run 'make data' first"
mkdir -p "$OUT/tables"
case $PROTOCOL in
smoke)
    subset_fmnist "$OUT/data/fashion-mnist" "$FM_TRAIN_PER_CLASS" "$FM_VAL_PER_CLASS"
    FMNIST=$OUT/data/fashion-mnist
    ARROWS=$OUT/data/arrows
    ;;
quick) ARROWS=data/arrows-quick ;;
full) ARROWS=data/arrows ;;
esac
arrows_sets "$ARROWS" "$AR_TRAIN" "$AR_VAL"

START=$(date +%s)
plan

# ---- the sweeps -------------------------------------------------------------

FM_SETS="--set data.root=$FMNIST --set train.epochs=$FM_EPOCHS --set optim.warmup_epochs=$FM_WARMUP"
FM_SETS="$FM_SETS --set train.batch_size=$FM_BATCH --set log.every=100"
RES_EVALS='--eval 42 "--img-size 42" --eval 56 "--img-size 56"'

sweep() { # COMPARISON ARGS...: scripts/sweep.sh with the protocol's seeds and threads
    c=$1
    shift
    echo "study: [$(($(date +%s) - START)) s] sweep $c"
    ./scripts/sweep.sh --comparison "$c" --out "$OUT" --seeds "$SEEDS" --threads "$THREADS" "$@"
}

# 1, 2, 5, 7: every encoding, evaluated at 42 and 56 px and with shuffled patches.
eval "sweep fmnist --config 'configs/study/fmnist_{pe}.ini' --pe '$FM_PES' $FM_SETS $RES_EVALS \
    --eval shuffle '--shuffle-patches 0'"

# 3: the arrow task at 108 px, evaluated at 168 and 276 px.
eval "sweep arrows --config 'configs/study/arrows_{pe}.ini' --pe '$AR_PES' \
    --set data.root=$ARROWS --set train.epochs=$AR_EPOCHS --set optim.warmup_epochs=$AR_WARMUP \
    --set train.batch_size=$AR_BATCH --set log.every=20 \
    --eval 168 '--data $ARROWS-168 --img-size 168' --eval 276 '--data $ARROWS-276 --img-size 276'"

# 4: LieRE block sizes (8 is comparison 1's liere; 64 = Dh, dense LieRE).
eval "sweep liere_block --config 'configs/study/fmnist_{pe}.ini' --pe liere \
    --axis pe.block_size --values '$BLOCK_SIZES' $FM_SETS"

# 6: ComRoPE with sigma 1 (sigma 0 is comparison 1), across resolutions.
eval "sweep sigma --config 'configs/study/fmnist_{pe}.ini' --pe '$SIGMA_PES' \
    --axis pe.sigma --values 1 $FM_SETS $RES_EVALS"

# 8: data fractions (1.0 is comparison 1).
eval "sweep fraction --config 'configs/study/fmnist_{pe}.ini' --pe '$FRACTION_PES' \
    --axis data.train_fraction --values '$FRACTIONS' $FM_SETS"

# ---- tables -------------------------------------------------------------------

T=$OUT/tables
runs_of() { # COMPARISON PES: the run folders of those encodings
    for pe in $2; do
        for seed in $SEEDS; do echo "$OUT/$1/$pe-seed$seed"; done
    done
}
summary() { # NAME ARGS... (run folders last)
    name=$1
    shift
    rm -f "$T/$name.csv" "$T/${name}_means.csv"
    ./scripts/study_summary.sh --label pe.type=encoding --csv "$T/$name.csv" \
        --means "$T/${name}_means.csv" --md "$T/$name.md" \
        --empty "Not measured by the \`$PROTOCOL\` protocol." "$@"
}
fm_pes_in() { # keep the encodings of $1 that comparison 1 trained
    for pe in $1; do case " $FM_PES " in *" $pe "*) printf '%s ' "$pe" ;; esac; done
}

# shellcheck disable=SC2046  # run folder lists are words
summary fmnist --metrics "top1 best_top1 train_loss img_s train_s" \
    --titles "top-1_% best_top-1_% train_loss train_img/s train_s" $(runs_of fmnist "$FM_PES")
# shellcheck disable=SC2046
summary resolution --metrics "top1 42 56" --titles "28_px 42_px 56_px" $(runs_of fmnist "$FM_PES")
# shellcheck disable=SC2046
summary arrows --metrics "top1 168 276 train_s" --titles "108_px 168_px 276_px train_s" \
    $(runs_of arrows "$AR_PES")
# shellcheck disable=SC2046
summary liere_block --group pe.block_size --label pe.block_size=block_size --metrics "top1 train_s" \
    --titles "top-1_% train_s" $(runs_of fmnist "$(fm_pes_in liere)") "$OUT"/liere_block/*-seed*[0-9]
# shellcheck disable=SC2046
summary spherical --metrics "top1 42 56" --titles "28_px 42_px 56_px" \
    $(runs_of fmnist "$(fm_pes_in "rope_axial rope_mixed spherical")")
# shellcheck disable=SC2046
summary sigma --group pe.type --group pe.sigma --metrics "top1 42 56" --titles "28_px 42_px 56_px" \
    $(runs_of fmnist "$(fm_pes_in "$SIGMA_PES $SIGMA_REF_PES")") "$OUT"/sigma/*-seed*[0-9]
# shellcheck disable=SC2046
summary shuffle --diff drop=top1-shuffle_28 --metrics "top1 shuffle_28 drop" \
    --titles "top-1_% shuffled_top-1_% drop" $(runs_of fmnist "$FM_PES")
# shellcheck disable=SC2046
summary fraction --group pe.type --group data.train_fraction --label data.train_fraction=fraction \
    --metrics "top1" --titles "top-1_%" $(runs_of fmnist "$(fm_pes_in "$FRACTION_PES")") \
    "$OUT"/fraction/*-seed*[0-9]

# Every run of the study in one CSV (and one table): grouped by data set
# and by every key a comparison varies.
# shellcheck disable=SC2046
summary all --group data.root --group pe.type --group pe.block_size --group pe.sigma \
    --group data.train_fraction --label data.train_fraction=fraction \
    $(find "$OUT" -mindepth 2 -maxdepth 2 -type d -name '*-seed[0-9]*' | sort)

# The "_" in titles keeps them one word for the summary; show spaces.
for f in "$T"/*.md; do sed -i '1s/_/ /g' "$f"; done

{
    echo "Protocol \`$PROTOCOL\` (\`scripts/study.sh $PROTOCOL\`), $(date -u +%Y-%m-%d),"
    echo "$(nproc) cores ($(uname -m)), threads: $THREADS (0 = all); seeds: $SEEDS;"
    echo "Fashion-MNIST: $FM_EPOCHS epoch(s) of $FM_TRAIN images;"
    echo "arrows: $AR_EPOCHS epoch(s) of $AR_TRAIN images, $AR_VAL per test set."
    echo "Wall time of the whole study: $((($(date +%s) - START) / 60)) min."
} >"$T/protocol.md"

# ---- results and plots ---------------------------------------------------------

# The template, where the results go elsewhere than docs/ (smoke, --no-docs).
if [ ! -f "$RESULTS" ]; then cp docs/RESULTS.md "$RESULTS"; fi
# Each "<!-- study:NAME -->" ... "<!-- /study:NAME -->" block gets tables/NAME.md.
awk -v dir="$T" '
    match($0, /^<!-- study:[a-z_]+ -->$/) { print; name = substr($0, 12, length($0) - 15)
        file = dir "/" name ".md"; while ((getline line < file) > 0) print line; close(file)
        skip = 1; next }
    /^<!-- \/study:[a-z_]+ -->$/ { skip = 0 }
    !skip { print }
' "$RESULTS" >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
echo "study: tables in $T/, results in $RESULTS"

if command -v gnuplot >/dev/null 2>&1; then
    ./scripts/plot_study.sh "$OUT" "$IMG"
else
    echo "study: gnuplot not found: no plots (scripts/install_deps.sh --study installs it)" >&2
fi
echo "study: $PROTOCOL done in $((($(date +%s) - START) / 60)) min"
