# vitrain - Vision Transformer training in C11 for CPU.
#
#   make            build ./vitrain (optimised)
#   make test       build and run the default test suite (slow cases excluded)
#   make test-all   the whole suite, slow cases included
#   make sanitize   the default suite built with ASan + UBSan
#   make debug      build/debug/vitrain without optimisation
#   make deps       install the Debian packages the build needs
#   make data       prepare data/fashion-mnist from Debian's dataset-fashion-mnist
#   make clean      remove build/ and ./vitrain
#
# WERROR=1 turns warnings into errors (CI does). Never -Ofast/-ffast-math:
# they fold isnan() away and change results between builds.

CC ?= cc
MODE ?= release
BUILD := build/$(MODE)

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

OPT_release := -O3 -march=native
OPT_debug := -O0 -g3
OPT_sanitize := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined

CPPFLAGS := -Iinclude -D_DEFAULT_SOURCE $(LIB_CFLAGS)
CFLAGS := -std=c11 $(OPT_$(MODE)) -fopenmp $(WARNINGS)
LDFLAGS := -fopenmp $(filter -fsanitize=%,$(OPT_$(MODE)))
LDLIBS := $(LIB_LIBS) -lpthread -lm

LIB_SRCS := $(sort $(wildcard src/*/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(sort $(wildcard tests/*.c))
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libvitrain.a
BIN := $(BUILD)/vitrain
TEST_BIN := $(BUILD)/vitrain_tests

# Check forks one child per test; a suite over the 10-minute budget is a bug.
TEST_ENV := CK_EXCLUDE_TAGS=slow

.PHONY: all test test-all sanitize debug deps data clean

all: vitrain

vitrain: $(BIN)
	cp $< $@

$(BIN): $(BUILD)/src/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# Small stand-alone tools (data preparation).
$(BUILD)/tools/%: $(BUILD)/tools/%.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TEST_BIN): $(TEST_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CHECK_CFLAGS) -Itests $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

test: $(TEST_BIN)
	$(TEST_ENV) $(TEST_BIN)

test-all: $(TEST_BIN)
	$(TEST_BIN)

sanitize:
	$(MAKE) MODE=sanitize build/sanitize/vitrain_tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    $(TEST_ENV) build/sanitize/vitrain_tests

debug:
	$(MAKE) MODE=debug build/debug/vitrain

deps:
	./scripts/install_deps.sh

data:
	./scripts/prepare_fashion_mnist.sh

clean:
	rm -rf build vitrain

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(BUILD)/src/main.d
