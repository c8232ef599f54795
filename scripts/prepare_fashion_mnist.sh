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
cd "$(dirname "$0")/.."

OUT=data/fashion-mnist
if [ $# -gt 0 ]; then OUT=$1; shift; fi
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

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT"
for split in train:train val:t10k; do
    name=${split%%:*}
    prefix=${split#*:}
    gzip -dc "$SRC/$prefix-images-idx3-ubyte.gz" > "$TMP/images"
    gzip -dc "$SRC/$prefix-labels-idx1-ubyte.gz" > "$TMP/labels"
    build/release/tools/idx2png "$TMP/images" "$TMP/labels" "$OUT/$name" "$@"
done
touch "$OUT/.complete"
echo "prepare_fashion_mnist: wrote $OUT/train (60000 images) and $OUT/val (10000 images)"
