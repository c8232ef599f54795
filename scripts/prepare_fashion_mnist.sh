#!/bin/sh
# Converts Debian's dataset-fashion-mnist package (IDX files under
# /usr/share/datasets/fashion-mnist/) into an ImageNet-style folder:
#   OUT/train/<class>/<index>.png   60,000 images
#   OUT/val/<class>/<index>.png     10,000 images (the test set)
# OUT defaults to data/fashion-mnist. Class folders carry Zalando's names;
# "T-shirt/top" becomes "T-shirt_top" since '/' cannot be in a folder name.
# As with torchvision's ImageFolder, labels follow the sorted folder names.
# Running it again does nothing once the folder is complete.
set -eu

usage() {
    echo "usage: scripts/prepare_fashion_mnist.sh [OUT]"
    echo "Converts Debian's dataset-fashion-mnist into OUT/{train,val}/<class>/*.png"
    echo "(default OUT: data/fashion-mnist in the repository). OUT must not exist, be"
    echo "empty, or be a folder this script made: nothing else is overwritten."
}
OUT=
case ${1:-} in
-h | --help)
    usage
    exit 0
    ;;
-*)
    echo "prepare_fashion_mnist: unknown option '$1'" >&2
    usage >&2
    exit 2
    ;;
?*)
    # Relative to where it was called from, not to the repository.
    case $1 in
    /*) OUT=$1 ;;
    *) OUT=$(pwd)/$1 ;;
    esac
    shift
    ;;
esac
if [ $# -gt 0 ]; then
    echo "prepare_fashion_mnist: one folder at most, got '$*' too" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
OUT=${OUT:-data/fashion-mnist}
SRC=/usr/share/datasets/fashion-mnist
# Label k of the IDX files is the k-th name (Zalando's table).
set -- "T-shirt_top" "Trouser" "Pullover" "Dress" "Coat" "Sandal" "Shirt" "Sneaker" "Bag" "Ankle boot"

if [ -f "$OUT/.complete" ]; then
    echo "prepare_fashion_mnist: $OUT is already prepared"
    exit 0
fi
if [ ! -f "$SRC/train-images-idx3-ubyte.gz" ]; then
    ./scripts/install_deps.sh dataset-fashion-mnist
fi
make -s build/release/tools/idx2png

# A folder of the user's is never removed: only one this script started
# (marked .partial), left behind by an interrupted run.
if [ -e "$OUT" ] && [ ! -d "$OUT" ]; then
    echo "prepare_fashion_mnist: $OUT exists and is not a folder; choose another" >&2
    exit 2
fi
if [ -d "$OUT" ] && [ ! -f "$OUT/.partial" ] && [ -n "$(ls -A "$OUT")" ]; then
    echo "prepare_fashion_mnist: $OUT exists and holds files this script did not write;" \
        "choose another folder or remove it" >&2
    exit 2
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
rm -rf "$OUT"
mkdir -p "$OUT"
touch "$OUT/.partial"
for split in train:train val:t10k; do
    name=${split%%:*}
    prefix=${split#*:}
    gzip -dc "$SRC/$prefix-images-idx3-ubyte.gz" > "$TMP/images"
    gzip -dc "$SRC/$prefix-labels-idx1-ubyte.gz" > "$TMP/labels"
    build/release/tools/idx2png "$TMP/images" "$TMP/labels" "$OUT/$name" "$@"
done
rm "$OUT/.partial"
touch "$OUT/.complete"
echo "prepare_fashion_mnist: wrote $OUT/train (60000 images) and $OUT/val (10000 images)"
