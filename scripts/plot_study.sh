#!/bin/sh
# Plots of the study (gnuplot, PNG): training curves per encoding,
# accuracy against the evaluation resolution (Fashion-MNIST and the arrow
# task), accuracy against the training data fraction. Reads the run folders
# and the tables scripts/study.sh writes under STUDY_DIR.
#
#   scripts/plot_study.sh STUDY_DIR OUT_DIR
#
# Writes OUT_DIR/study-curves.png, study-resolution.png,
# study-arrows-resolution.png and study-fraction.png (each only when its
# data exists).
set -eu

case ${1:-} in -h | --help | "")
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    [ -n "${1:-}" ] && exit 0 || exit 2 ;;
esac
[ $# -eq 2 ] || { echo "usage: scripts/plot_study.sh STUDY_DIR OUT_DIR" >&2; exit 2; }
STUDY=$1 OUT=$2
command -v gnuplot >/dev/null 2>&1 || {
    echo "plot_study: gnuplot is not installed (scripts/install_deps.sh --study)" >&2
    exit 4
}
T=$STUDY/tables
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# noenhanced: encoding names such as rope_mixed are text, not subscripts.
TERMINAL="set terminal pngcairo noenhanced size 900,560 font 'sans,11'"
gnuplot -e "set terminal pngcairo" -e "exit" >/dev/null 2>&1 ||
    TERMINAL="set terminal png noenhanced size 900,560"

# One data file per group, "x mean std", from a *_means.csv
# (group...,metric,n,mean,std). XCOL: where x comes from: "metric:<list>"
# maps the listed metrics to x = their names (top1 is x = BASE), or
# "group" takes x from the last group column and keeps METRIC only.
series() { # MEANS_CSV NGROUPS MODE ARG BASE
    awk -F, -v ng="$2" -v mode="$3" -v arg="$4" -v base="$5" -v dir="$TMP" '
        NR == 1 { next }
        { g = $1; for (i = 2; i < ng; i++) g = g "," $i
          m = $(ng + 1); mean = $(ng + 3); sd = $(ng + 4) }
        mode == "metric" { if (ng > 1) g = g "," $ng
            n = split(arg, want, " "); for (i = 1; i <= n; i++) if (want[i] == m) {
                x = m == "top1" ? base : m
                print x, mean, sd > (dir "/" g ".dat") } }
        mode == "group" && m == arg { x = $ng; if (ng == 1) { x = base; g = $1 }
            print x, mean, sd > (dir "/" g ".dat") }
    ' "$1"
    for f in "$TMP"/*.dat; do [ -f "$f" ] && sort -n -o "$f" "$f"; done
    return 0
}

# Plots every $TMP/*.dat with error bars, one line per file.
plot_series() { # PNG TITLE XLABEL YLABEL
    ls "$TMP"/*.dat >/dev/null 2>&1 || return 0
    files=$(printf '%s ' "$TMP"/*.dat)
    gnuplot <<EOF
$TERMINAL
set output '$1'
set title '$2'
set xlabel '$3'
set ylabel '$4'
set key outside right
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
set grid
files = '$files'
plot for [f in files] f using 1:2:3 with yerrorlines title system('basename '.f.' .dat')
EOF
    rm -f "$TMP"/*.dat
    echo "plot_study: $1"
}

# Training loss of seed 0 of every encoding (a moving average over 20 steps).
curves() {
    for run in "$STUDY"/fmnist/*-seed0; do
        [ -f "$run/steps.csv" ] || continue
        name=${run##*/}
        # steps.csv: step,epoch,loss,lr,grad_norm,img_per_sec
        awk -F, 'NR > 1 && $3 != "nan" { buf[NR % 20] = $3; n = NR - 1 < 20 ? NR - 1 : 20; s = 0
            for (k in buf) s += buf[k]; print $1, s / n }' "$run/steps.csv" \
            >"$TMP/${name%-seed0}.dat"
    done
    ls "$TMP"/*.dat >/dev/null 2>&1 || return 0
    files=$(printf '%s ' "$TMP"/*.dat)
    gnuplot <<EOF
$TERMINAL
set output '$OUT/study-curves.png'
set title 'Fashion-MNIST: training loss (seed 0, moving average of 20 steps)'
set xlabel 'step'
set ylabel 'loss'
set key outside right
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
set grid
files = '$files'
plot for [f in files] f using 1:2 with lines lw 2 title system('basename '.f.' .dat')
EOF
    rm -f "$TMP"/*.dat
    echo "plot_study: $OUT/study-curves.png"
}

curves
if [ -f "$T/resolution_means.csv" ]; then
    series "$T/resolution_means.csv" 1 metric "top1 42 56" 28
    plot_series "$OUT/study-resolution.png" 'Fashion-MNIST: top-1 at other resolutions (trained at 28 px)' \
        'evaluation size (px)' 'top-1 (%)'
fi
if [ -f "$T/arrows_means.csv" ]; then
    series "$T/arrows_means.csv" 1 metric "top1 168 276" 108
    plot_series "$OUT/study-arrows-resolution.png" 'Arrow task: top-1 at other board sizes (trained at 108 px)' \
        'evaluation size (px)' 'top-1 (%)'
fi
if [ -f "$T/fraction_means.csv" ]; then
    series "$T/fraction_means.csv" 2 group top1 1
    plot_series "$OUT/study-fraction.png" 'Fashion-MNIST: top-1 against the training data fraction' \
        'fraction of the training set' 'top-1 (%)'
fi
