#!/bin/sh
# Trains configs/study/fmnist_<type>.ini for every encoding with the same
# overrides, then prints each run's last eval top-1 and its training
# throughput as a markdown table. Runs go to runs/compare-<tag>/<type>;
# a finished run is not trained again.
#   ./scripts/compare_encodings.sh TAG [--set section.key=value]...
# e.g. ./scripts/compare_encodings.sh short --set train.epochs=2 --set optim.warmup_epochs=0.5
set -eu
cd "$(dirname "$0")/.."

usage() {
    echo "usage: $0 TAG [--set section.key=value]..."
    echo "Trains every encoding's configs/study/fmnist_<type>.ini into runs/compare-TAG/<type>"
    echo "and prints their eval top-1 and throughput; finished runs are kept."
}
case ${1:-} in
-h | --help)
    usage
    exit 0
    ;;
'' | -*)
    usage >&2
    [ -z "${1:-}" ] || echo "compare_encodings: the TAG comes first, not '$1'" >&2
    exit 2
    ;;
esac
TAG=$1
shift
TYPES="absolute rope_axial rope_mixed spherical comrope_ap comrope_ld liere"

make -s vitrain
for type in $TYPES; do
    dir=runs/compare-$TAG/$type
    if [ -f "$dir/report.md" ]; then
        echo "compare: $type already finished in $dir"
        continue
    fi
    if [ -f "$dir/checkpoint-last" ]; then
        ./vitrain --resume "$dir" "$@"
    else
        ./vitrain --config "configs/study/fmnist_$type.ini" --set "log.dir=runs/compare-$TAG" \
            --set "log.name=$type" --set log.every=200 "$@"
    fi
done

echo
echo "| encoding | eval top-1 (last epoch) | train img/s |"
echo "|---|---|---|"
for type in $TYPES; do
    # summary.csv: epoch,train_loss,eval_loss,eval_top1,eval_top5,lr,img_per_sec,epoch_seconds
    tail -n 1 "runs/compare-$TAG/$type/summary.csv" |
        awk -F, -v t="$type" '{ printf "| %s | %.2f %% | %.0f |\n", t, $4, $7 }'
done
