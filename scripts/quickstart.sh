#!/bin/sh
# The README's first command: on a fresh Debian machine, install what is
# missing, build, prepare Fashion-MNIST and train configs/quickstart.ini
# (about 10 minutes on 2 cores). Extra arguments go to vitrain, e.g.
#   ./scripts/quickstart.sh --set train.epochs=2
# A finished quickstart run is kept; run it again with --set log.name=other.
set -eu
cd "$(dirname "$0")/.."

./scripts/install_deps.sh dataset-fashion-mnist
make
./scripts/prepare_fashion_mnist.sh
exec ./vitrain --config configs/quickstart.ini "$@"
