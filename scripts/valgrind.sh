#!/bin/sh
# A short training, evaluation and export under valgrind's memcheck: no
# invalid read or write, no use of uninitialised memory, no definite leak.
# Run by `make valgrind`. The binary is built without AVX-512 (valgrind
# cannot run it) into build/valgrind/; the data is a generated folder of
# 12x12 PGM images, two classes.
set -eu

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind.sh: valgrind is not installed (sudo apt-get install valgrind)" >&2
    exit 2
fi
BIN=build/valgrind/vitrain
WORK=$(mktemp -d /tmp/vitrain-valgrind-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# pgm FILE GRAY: a flat 12x12 gray image.
pgm() {
    { printf 'P5 12 12 255\n'; head -c 144 /dev/zero | tr '\0' "$2"; } >"$1"
}
for split in train val; do
    for class in dark light; do
        mkdir -p "$WORK/data/$split/$class"
        gray='\040'
        [ "$class" = light ] && gray='\300'
        for i in 1 2 3 4 5 6 7 8; do pgm "$WORK/data/$split/$class/$i.pgm" "$gray"; done
    done
done
# run PE: train, eval at two sizes, export; valgrind's report goes to
# $WORK/valgrind.log and is shown when it finds anything.
run() {
    pe=$1
    cat >"$WORK/run.ini" <<INI
[data]
root = $WORK/data
img_size = 12
mean = 0.5
std = 0.25
hflip = 0.5
[model]
dim = 16
depth = 2
heads = 2
mlp_dim = 32
patch_size = 4
drop_path = 0.1
[pe]
type = $pe
[train]
epochs = 2
batch_size = 4
threads = 1
[optim]
warmup_epochs = 0.5
[log]
dir = $WORK/runs
name = $pe
INI
    for step in train eval export; do
        case $step in
        train) set -- --config "$WORK/run.ini" ;;
        eval) set -- eval --checkpoint "$WORK/runs/$pe" --img-size 12 --img-size 16 ;;
        export) set -- export --checkpoint "$WORK/runs/$pe" --out "$WORK/$pe.safetensors" ;;
        esac
        if ! valgrind --quiet --error-exitcode=99 --leak-check=full \
                --errors-for-leak-kinds=definite --track-origins=yes \
                --log-file="$WORK/valgrind.log" $BIN "$@" >"$WORK/out.log" 2>&1; then
            echo "valgrind.sh: $pe $step failed:" >&2
            cat "$WORK/valgrind.log" "$WORK/out.log" >&2
            exit 1
        fi
        echo "  $pe $step: clean"
    done
}

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
for pe in ${PES:-absolute rope_mixed spherical comrope_ld liere}; do
    run "$pe"
done
echo "valgrind.sh: no errors"
