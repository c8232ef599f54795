# vitrain - Vision Transformer training in C11 for CPU.
#
#   make            build ./vitrain (optimised)
#   make test       build and run the default test suite (slow cases excluded)
#   make test-all   the whole suite, slow cases included
#   make sanitize   the default suite built with ASan + UBSan
#   make test-avx2  the default suite built for AVX2 without AVX-512 (x86-64-v3)
#   make debug      build/debug/vitrain without optimisation
#   make deps       install the Debian packages the build needs
#   make data       prepare data/fashion-mnist from Debian's dataset-fashion-mnist
#   make data-arrows  generate the arrow task (LieRE 5.2): data/arrows{,-168,-276}
#   make study-smoke  every step of the reproduction study on a tiny scale
#   make bench-loader  loader vs training throughput (quickstart config)
#   make bench-pe   step time of every positional encoding
#   make bench-rotation  the phases of LieRE b = 8 (prepare, rotations, finish), ms per step
#   make bench-attention  the attention core alone, from memory and from L2, against sgemm
#   make bench      vitrain vs the PyTorch peer; writes docs/PERFORMANCE.md
#                   (the analysis and earlier runs: docs/PERFORMANCE_HISTORY.md)
#   make MPI=1      ./vitrain with MPI data parallelism (mpicc; objects in build/mpi)
#   make test-mpi   1 process against mpirun -np 2: losses, parameters, resume, failures
#   make bench-mpi  images/s of 1 and 2 ranks, and the communication share of a step
#   make docs       regenerate docs/CONFIG.md from the config schema
#   make fuzz       libFuzzer harnesses (clang), each run FUZZ_SECONDS (60)
#   make fuzz-regress  run the harnesses once over their corpus and crashes
#   make valgrind   a short training, eval and export under valgrind memcheck
#   make clean      remove build/ and ./vitrain
#
# WERROR=1 turns warnings into errors (CI does). No fast-math style flags:
# they fold isnan() away and change results between builds.

CC ?= cc
MODE ?= release
BUILD := build/$(MODE)

# MPI=1: the same sources through mpicc with -DVT_MPI (src/dist/dist.c
# speaks MPI), in their own object folder so the two builds never mix.
MPI ?= 0
MPICC ?= mpicc
MPI_HELP := Open MPI is missing (mpicc, mpirun): install it with \
            'make deps MPI=1' (Debian: libopenmpi-dev openmpi-bin)
ifeq ($(MPI),1)
# 'make deps MPI=1' is how Open MPI gets installed, so it must not need it.
ifeq ($(shell command -v $(MPICC) 2>/dev/null),)
ifneq ($(filter-out deps,$(or $(MAKECMDGOALS),all)),)
$(error $(MPI_HELP))
endif
endif
CC := $(MPICC)
BUILD := build/mpi$(if $(filter release,$(MODE)),,-$(MODE))
endif

PKGS_LIBS := openblas stb
PKGS_TEST := check
LIB_CFLAGS := $(shell pkg-config --cflags $(PKGS_LIBS) 2>/dev/null)
LIB_LIBS := $(shell pkg-config --libs $(PKGS_LIBS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags $(PKGS_TEST) 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs $(PKGS_TEST) 2>/dev/null)

WARNINGS := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wvla
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif

# Full-width AVX-512 vectors where the CPU has them: the element-wise passes
# (GELU, LayerNorm, softmax) run about 1.7x faster than with gcc's default
# 256-bit preference; elsewhere the flag changes nothing.
OPT_release := -O3 -march=native -mprefer-vector-width=512
OPT_debug := -O0 -g3
# What a machine without AVX-512 runs: the 256-bit paths of the kernels.
OPT_avx2 := -O3 -march=x86-64-v3
# valgrind cannot execute AVX-512; AVX2 it can.
OPT_valgrind := -O1 -g -march=x86-64-v3
OPT_sanitize := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined

CPPFLAGS := -Iinclude -D_DEFAULT_SOURCE $(LIB_CFLAGS) $(if $(filter 1,$(MPI)),-DVT_MPI)
# No code here reads floating-point exception flags or a math function's
# errno, and while either may be observed gcc vectorizes no loop that
# selects on a float comparison or calls sqrtf (GELU, softmax and AdamW ran
# scalar on AVX2). Neither flag changes a computed value.
CFLAGS := -std=c11 $(OPT_$(MODE)) -fopenmp -fno-trapping-math -fno-math-errno $(WARNINGS)
LDFLAGS := -fopenmp $(filter -fsanitize=%,$(OPT_$(MODE)))
LDLIBS := $(LIB_LIBS) -lpthread -lm

LIB_SRCS := $(sort $(wildcard src/*/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(sort $(wildcard tests/*.c))
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libvitrain.a
BIN := $(BUILD)/vitrain
TEST_BIN := $(BUILD)/vitrain_tests
# Built by `make test` too, so that a change to an interface they use
# cannot leave them behind unnoticed.
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(sort $(wildcard bench/*.c)))

# Check forks one child per test; a suite over the 10-minute budget is a bug.
TEST_ENV := CK_EXCLUDE_TAGS=slow

.PHONY: all test test-all test-torch sanitize test-avx2 debug valgrind deps data data-arrows study-smoke \
        bench bench-scaling bench-loader bench-pe bench-rotation bench-attention docs clean fuzz fuzz-build fuzz-regress test-mpi bench-mpi \
        mpi-tools FORCE

all: vitrain

FORCE:

# Checked every time: ./vitrain is whichever build (MPI or not) ran last.
# Replaced by a rename, not overwritten, so that a ./vitrain still running
# (a study in the background) keeps its file and the copy does not fail.
vitrain: $(BIN) FORCE
	@cmp -s $(BIN) $@ || { cp $(BIN) $@.tmp && mv -f $@.tmp $@ && echo "cp $(BIN) $@"; }

$(BIN): $(BUILD)/src/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# Small stand-alone tools (data preparation) and benchmarks.
$(BUILD)/tools/%: $(BUILD)/tools/%.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TEST_BIN): $(TEST_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CHECK_CFLAGS) -Itests $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# The b x b block rotations of ComRoPE and LieRE (b = 8 by default) run
# about 12 % faster as 256-bit vectors: at 512 bits their short loops turn
# into masked remainders. Their kernels are chains of multiply-adds, which
# ISO C mode compiles as separate multiplies and adds unless contraction is
# allowed: fused, the encoding phases run about 7 % faster (make
# bench-rotation) and round once per product.
# The rest of the code keeps ISO contraction, so that results stay the
# same between functions the tests require to agree bit for bit.
ifneq ($(filter release avx2,$(MODE)),)
$(BUILD)/src/pe/block_rotary.o $(BUILD)/src/pe/skew_expm.o: CFLAGS += -mprefer-vector-width=256 -ffp-contract=fast
endif

test: $(TEST_BIN) $(BENCH_BINS)
	$(TEST_ENV) $(TEST_BIN)

test-all: $(TEST_BIN)
	$(TEST_BIN)

# Logits against an independent PyTorch ViT (tests/torch/), every encoding.
test-torch: vitrain
	./scripts/test_torch.sh

# The sanitizers slow the code down several times: the test timeouts, set
# for the optimised build, stretch accordingly.
sanitize:
	$(MAKE) MODE=sanitize build/sanitize/vitrain_tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 CK_TIMEOUT_MULTIPLIER=4 \
	    $(TEST_ENV) build/sanitize/vitrain_tests

# The vector kernels (vitrain/simd.h: attention heads, GELU, spherical's
# band product) have a path for AVX-512 and one for AVX2; the plain loops
# behind them run in `make sanitize`. `make test` on an AVX-512 machine
# checks the first, this the second.
test-avx2:
	@grep -qw avx2 /proc/cpuinfo || { echo "test-avx2: this CPU has no AVX2"; exit 1; }
	$(MAKE) MODE=avx2 build/avx2/vitrain_tests
	$(TEST_ENV) build/avx2/vitrain_tests

debug:
	$(MAKE) MODE=debug build/debug/vitrain

valgrind:
	$(MAKE) MODE=valgrind build/valgrind/vitrain
	./scripts/valgrind.sh

deps:
	./scripts/install_deps.sh $(if $(filter 1,$(MPI)),libopenmpi-dev openmpi-bin)

data:
	./scripts/prepare_fashion_mnist.sh

# The arrow task at the paper's resolutions: training and validation at
# 9 x 9 cells (108 px), validation sets at 14 x 14 (168 px) and 23 x 23
# (276 px) for `vitrain eval --data data/arrows-168 --img-size 168`. A set
# that exists is kept.
ARROWS_TRAIN ?= 20000
ARROWS_VAL ?= 2000
ARROWS_SEED ?= 0
data-arrows: vitrain
	@test -d data/arrows/train || ./vitrain arrows --out data/arrows --grid 9 \
	    --train $(ARROWS_TRAIN) --val 0 --seed $(ARROWS_SEED)
	@test -d data/arrows/val || ./vitrain arrows --out data/arrows --grid 9 \
	    --train 0 --val $(ARROWS_VAL) --seed $(ARROWS_SEED)
	@test -d data/arrows-168/val || ./vitrain arrows --out data/arrows-168 --grid 14 \
	    --train 0 --val $(ARROWS_VAL) --seed $(ARROWS_SEED)
	@test -d data/arrows-276/val || ./vitrain arrows --out data/arrows-276 --grid 23 \
	    --train 0 --val $(ARROWS_VAL) --seed $(ARROWS_SEED)

# The reproduction study (scripts/study.sh smoke|quick|full) on a tiny
# scale: every sweep, table and plot in a few minutes, into runs/study-smoke.
study-smoke: vitrain
	./scripts/study.sh smoke

# Loader throughput against training throughput on the quickstart config.
bench-loader: $(BUILD)/bench/loader_bench
	$(BUILD)/bench/loader_bench configs/quickstart.ini

# vitrain against the PyTorch peer, every configuration of bench/bench.sh.
bench: $(BUILD)/bench/vit_bench
	./bench/bench.sh

# Thread scaling: ViT-S at 32 px, 1, 2, 4, ... threads up to the cores,
# vitrain alone (bench/bench.sh, SCALING=1), into docs/SCALING.md.
bench-scaling: $(BUILD)/bench/vit_bench
	SCALING=1 ./bench/bench.sh

# The phases of a rotary encoding (LieRE b = 8 on ViT-Tiny by default), ms per step.
bench-rotation: $(BUILD)/bench/rotation_bench
	$(BUILD)/bench/rotation_bench

# The attention core at the bench models' shapes, 1 and 2 threads.
bench-attention: $(BUILD)/bench/attention_bench
	OMP_NUM_THREADS=1 $(BUILD)/bench/attention_bench 1
	OMP_NUM_THREADS=2 $(BUILD)/bench/attention_bench 2

# Step time of every positional encoding on the study model.
bench-pe: $(BUILD)/bench/pe_bench
	$(BUILD)/bench/pe_bench

# MPI data parallelism (tests/mpi/): the MPI binary and the test helper,
# built in build/mpi; without Open MPI both targets say how to install it.
MPI_CHECK = command -v $(MPICC) >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1 || \
            { echo "make: $(MPI_HELP)" >&2; exit 2; }

mpi-tools:
	@$(MPI_CHECK)
	$(MAKE) MPI=1 build/mpi/vitrain build/mpi/tests/mpi/mpi_check

test-mpi: mpi-tools
	./tests/mpi/run.sh build/mpi

bench-mpi: mpi-tools
	./bench/mpi_bench.sh build/mpi

$(BUILD)/tests/mpi/mpi_check: $(BUILD)/tests/mpi/mpi_check.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The configuration reference, generated from the schema.
docs: vitrain
	{ printf '# Configuration reference\n\nGenerated by `./vitrain config-reference` (`make docs`). '; \
	  printf 'Every key, its type, range and default; see README.md for the file format.\n\n'; \
	  ./vitrain config-reference; } > docs/CONFIG.md

# libFuzzer harnesses (tests/fuzz/), built with clang under ASan + UBSan into
# build/fuzz/. `make fuzz` fuzzes each for FUZZ_SECONDS on a copy of its
# seed corpus (build/fuzz/corpus/<target>, the repository's is not
# modified); new crashes land in build/fuzz/artifacts/<target>/. `make
# fuzz-regress` only runs every saved input (tests/fuzz/corpus and crashes).
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := config image checkpoint safetensors
FUZZ_DIR := build/fuzz
FUZZ_FLAGS := -g -O1 -fno-omit-frame-pointer -std=c11 -fopenmp -Iinclude -D_DEFAULT_SOURCE $(LIB_CFLAGS)
FUZZ_LIB_OBJS := $(filter-out $(FUZZ_DIR)/src/main.o,$(LIB_SRCS:%.c=$(FUZZ_DIR)/%.o))
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_MAX_LEN := 8192
FUZZ_ENV := OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

$(FUZZ_DIR)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,address,undefined \
	    -fno-sanitize-recover=undefined -MMD -MP -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -Itests/fuzz -MMD -MP -o $@ $< $(FUZZ_LIB_OBJS) $(LIB_LIBS) -lpthread -lm

# Writes the binary seeds of tests/fuzz/corpus (run by hand when the formats change).
$(FUZZ_DIR)/gen_seeds: tests/fuzz/gen_seeds.c $(FUZZ_LIB_OBJS)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=address,undefined -Itests/fuzz -o $@ $< \
	    $(FUZZ_LIB_OBJS) $(LIB_LIBS) -lpthread -lm

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    rm -rf $(FUZZ_DIR)/corpus/$$t; mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts/$$t; \
	    cp tests/fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus/$$t/; \
	    echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	    $(FUZZ_ENV) $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	        -max_len=$(FUZZ_MAX_LEN) -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t/ \
	        $(FUZZ_DIR)/corpus/$$t; \
	done

fuzz-regress: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    dirs=tests/fuzz/corpus/$$t; \
	    if [ -d tests/fuzz/crashes/$$t ]; then dirs="$$dirs tests/fuzz/crashes/$$t"; fi; \
	    echo "fuzz_$$t: $$dirs"; \
	    $(FUZZ_ENV) $(FUZZ_DIR)/fuzz_$$t -runs=0 $$dirs; \
	done

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:%=%.d)

clean:
	rm -rf build vitrain

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(BUILD)/src/main.d
