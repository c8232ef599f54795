#!/bin/sh
# make test-torch: cross-checks vitrain's logits against an independent
# PyTorch ViT written from DESIGN §2/§4 (tests/torch/vit_reference.py).
#
# For every encoding: train a tiny model a few steps (so learned parameters
# leave their init), evaluate it with `vitrain eval --dump-logits` at the
# training resolution (28) and a larger one (42), rebuild the model in
# PyTorch from the run's model.safetensors (config in __metadata__) and
# compare: max |diff| / max |logit| <= 1e-4 (TOL overrides).
#
# The images of each eval folder already have the eval size (crop_pct 1),
# so vitrain's eval transform is only the normalisation, which the
# reference does too: no resize implementation is compared here.
#
# Environment: ENCODINGS (default: every encoding of DESIGN §4 and a few
# option variants; an entry is TYPE[+KEY[=VALUE]]..., KEY a [pe] key, a bare
# KEY meaning true, e.g. liere+share_heads or rope_axial+theta=1000), TOL,
# KEEP=1 keeps the temporary folder, TORCH_PYTHON picks the interpreter,
# ALLOW_UNBUILT=1 lets encodings that are still placeholders ("not built
# yet") pass as NOT-BUILT instead of failing.
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOL=${TOL:-1e-4}
ENCODINGS=${ENCODINGS:-"none absolute rope_axial rope_mixed spherical comrope_ap comrope_ld liere
    rope_axial+theta=1000 spherical+learned comrope_ap+sigma=1 comrope_ld+block_size=4
    liere+share_layers liere+share_heads liere+block_size=48"}

# The Debian packages provide torch for the system interpreter.
./scripts/install_deps.sh python3-torch python3-numpy python3-pil
PY=${TORCH_PYTHON:-}
if [ -z "$PY" ]; then
    for cand in python3 /usr/bin/python3; do
        if "$cand" -c 'import torch, numpy' >/dev/null 2>&1; then
            PY=$cand
            break
        fi
    done
fi
if [ -z "$PY" ]; then
    echo "test_torch: no python3 with torch and numpy" >&2
    exit 2
fi

make -s vitrain

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vitrain-torch.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "test_torch: keeping $TMP"
else
    trap 'rm -rf "$TMP"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
fi

TORCH_DIR="$ROOT/tests/torch"
export PYTHONDONTWRITEBYTECODE=1
# The reference is checked on its own first (orthogonality, relativity, CLS).
"$PY" "$TORCH_DIR/selftest_reference.py" >"$TMP/selftest.log" 2>&1 || {
    cat "$TMP/selftest.log" >&2
    echo "test_torch: the PyTorch reference fails its self-test" >&2
    exit 1
}

"$PY" "$TORCH_DIR/make_images.py" "$TMP/data28" 28 --channels 3 --seed 1
"$PY" "$TORCH_DIR/make_images.py" "$TMP/data42" 42 --channels 3 --seed 2

# A tiny RGB model: Dh = 48 fits every encoding (pairs, triplets, blocks of
# 8); LayerScale on, drop path on (inactive at eval), per-channel mean/std.
cat >"$TMP/tiny.ini" <<EOF
[data]
root = $TMP/data28
img_size = 28
channels = 3
mean = 0.45,0.5,0.55
std = 0.2,0.25,0.3
crop_pct = 1.0
cache = memory

[model]
dim = 96
depth = 2
heads = 2
mlp_dim = 128
patch_size = 7
layer_scale = 0.5
drop_path = 0.1

[pe]
type = absolute

[optim]
lr = 1e-2
min_lr = 1e-3
warmup_epochs = 0
weight_decay = 0.05

[train]
epochs = 3
batch_size = 4
max_steps = 5
seed = 3
threads = 2

[log]
dir = $TMP/runs
every = 1
EOF

# Pooling alternates so both heads are exercised.
pool_of() {
    case ${1%%+*} in
        none | rope_mixed | comrope_ld | liere) echo avg ;;
        *) echo token ;;
    esac
}

RESULTS="$TMP/results.txt"
: >"$RESULTS"
fail=0
for pe in $ENCODINGS; do
    pool=$(pool_of "$pe")
    name=$(printf '%s' "$pe" | tr '+=' '._') # a valid log.name and file name
    log="$TMP/$name.log"
    # TYPE+KEY=VALUE+KEY -> --set pe.type=TYPE --set pe.KEY=VALUE --set pe.KEY=true
    sets="--set pe.type=${pe%%+*}"
    rest=$pe
    while [ "${rest#*+}" != "$rest" ]; do
        rest=${rest#*+}
        opt=${rest%%+*}
        case $opt in *=*) ;; *) opt="$opt=true" ;; esac
        sets="$sets --set pe.$opt"
    done
    # shellcheck disable=SC2086  # $sets is a list of arguments without spaces
    if ! ./vitrain --config "$TMP/tiny.ini" $sets --set model.pool="$pool" \
        --set log.name="$name" >"$log" 2>&1; then
        status="FAIL(train)"
        if grep -q "is not built yet" "$log"; then
            # A placeholder encoding: a failure unless ALLOW_UNBUILT=1.
            status="NOT-BUILT"
            [ "${ALLOW_UNBUILT:-0}" = 1 ] || fail=1
        else
            echo "test_torch: training $pe failed:" >&2
            tail -5 "$log" >&2
            fail=1
        fi
        printf '%s\t%s\t%s\t%s\n' "$pe" 28 - "$status" >>"$RESULTS"
        printf '%s\t%s\t%s\t%s\n' "$pe" 42 - "$status" >>"$RESULTS"
        continue
    fi
    run="$TMP/runs/$name"
    for size in 28 42; do
        csv="$TMP/$name-$size.csv"
        if ! ./vitrain eval --checkpoint "$run" --data "$TMP/data$size" --img-size "$size" \
            --dump-logits "$csv" >>"$log" 2>&1; then
            echo "test_torch: eval $pe at $size failed:" >&2
            tail -5 "$log" >&2
            printf '%s\t%s\t%s\t%s\n' "$pe" "$size" - "FAIL(eval)" >>"$RESULTS"
            fail=1
            continue
        fi
        out=$("$PY" "$TORCH_DIR/crosscheck.py" --model "$run/model.safetensors" --logits "$csv" \
            --img-size "$size" --data "$TMP/data$size" --tol "$TOL" 2>&1) && rc=0 || rc=$?
        line=$(printf '%s\n' "$out" | grep '^RESULT' || true)
        if [ -n "$line" ]; then
            printf '%s\t%s\t%s\n' "$pe" "$size" \
                "$(printf '%s\n' "$line" | awk '{print $4 "\t" $5}')" >>"$RESULTS"
        else
            printf '%s\n' "$out" >&2
            printf '%s\t%s\t%s\t%s\n' "$pe" "$size" - "FAIL(check)" >>"$RESULTS"
        fi
        [ "$rc" -eq 0 ] || fail=1
    done
done

echo
echo "vitrain vs PyTorch reference: max |logit diff| / max |logit| (tolerance $TOL)"
printf '%-24s %-6s %-6s %-12s %s\n' encoding pool img max_rel result
while IFS="$(printf '\t')" read -r pe size rel res; do
    printf '%-24s %-6s %-6s %-12s %s\n' "$pe" "$(pool_of "$pe")" "$size" "$rel" "$res"
done <"$RESULTS"
if [ "$fail" -ne 0 ]; then
    echo "test_torch: FAILED"
    exit 1
fi
if grep -q NOT-BUILT "$RESULTS"; then
    echo "test_torch: passed, but some encodings are not built yet (ALLOW_UNBUILT=1)"
else
    echo "test_torch: all passed"
fi
