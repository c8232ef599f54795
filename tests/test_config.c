/*
 * test_config.c - the configuration module: schema defaults, the INI
 * parser and its error messages, --set overrides, presets, cross-key
 * validation, and the written INI reading back to the same RunConfig.
 *
 * Every expected value and message is written out here from the contract
 * in config.h and the brief for the module (key names, defaults, ranges,
 * message formats); none is text produced by the code under test. Error
 * messages are compared in full, so a wrong file, line or key fails.
 */
#include "suites.h"

#include "vitrain/config.h"
#include "vitrain/vit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------- */

static void parse_ok(RunConfig *cfg, const char *text)
{
    VtError err = {0};
    VtCode code = config_parse(cfg, text, "t.ini", &err);
    ck_assert_msg(code == VT_OK, "parse failed: %s\n--- text:\n%.2000s", err.message, text);
}

static void set_ok(RunConfig *cfg, const char *assignment)
{
    VtError err = {0};
    VtCode code = config_set(cfg, assignment, &err);
    ck_assert_msg(code == VT_OK, "--set %s failed: %s", assignment, err.message);
}

/* Parses text over the defaults as "t.ini": must fail with exactly
 * `message` and leave the config untouched. */
static void expect_parse_error(const char *text, const char *message, int line)
{
    RunConfig cfg, before;
    config_defaults(&cfg);
    memcpy(&before, &cfg, sizeof cfg);
    VtError err = {0};
    VtCode code = config_parse(&cfg, text, "t.ini", &err);
    ck_assert_msg(code == VT_ERR_ARGUMENT, "test line %d: code %d for text:\n%s", line, code,
                  text);
    ck_assert_msg(strcmp(err.message, message) == 0, "test line %d:\n got  '%s'\n want '%s'",
                  line, err.message, message);
    ck_assert_msg(memcmp(&cfg, &before, sizeof cfg) == 0, "test line %d: config changed", line);
}
#define EXPECT_PARSE_ERROR(text, message) expect_parse_error(text, message, __LINE__)

static void expect_set_error(const char *assignment, const char *message, int line)
{
    RunConfig cfg, before;
    config_defaults(&cfg);
    memcpy(&before, &cfg, sizeof cfg);
    VtError err = {0};
    VtCode code = config_set(&cfg, assignment, &err);
    ck_assert_msg(code == VT_ERR_ARGUMENT, "test line %d: code %d for %s", line, code,
                  assignment);
    ck_assert_msg(strcmp(err.message, message) == 0, "test line %d:\n got  '%s'\n want '%s'",
                  line, err.message, message);
    ck_assert_msg(memcmp(&cfg, &before, sizeof cfg) == 0, "test line %d: config changed", line);
}
#define EXPECT_SET_ERROR(assignment, message) expect_set_error(assignment, message, __LINE__)

static void expect_invalid(const RunConfig *cfg, const char *message, int line)
{
    VtError err = {0};
    VtCode code = config_validate(cfg, &err);
    ck_assert_msg(code == VT_ERR_ARGUMENT, "test line %d: validate returned %d", line, code);
    ck_assert_msg(strcmp(err.message, message) == 0, "test line %d:\n got  '%s'\n want '%s'",
                  line, err.message, message);
}
#define EXPECT_INVALID(cfg, message) expect_invalid(cfg, message, __LINE__)

static void expect_valid(const RunConfig *cfg)
{
    VtError err = {0};
    VtCode code = config_validate(cfg, &err);
    ck_assert_msg(code == VT_OK, "validate failed: %s", err.message);
}

/* Writes text to a fresh temporary file; returns its path (static). */
static const char *temp_file(const void *text, size_t len)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/vitrain-config-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
    ck_assert(write(fd, text, len) == (ssize_t)len);
    ck_assert(close(fd) == 0);
    return path;
}

/* Every key of the schema, as the brief and config.h name them. */
static const char *const all_keys[] = {
    "data.root", "data.img_size", "data.channels", "data.mean", "data.std", "data.crop_pct",
    "data.scale", "data.ratio", "data.rrc", "data.pad", "data.train_fraction", "data.hflip",
    "data.on_bad_image",
    "data.cache", "data.prefetch",
    "model.preset", "model.dim", "model.depth", "model.heads", "model.mlp_dim",
    "model.patch_size", "model.num_classes", "model.class_digest", "model.pool",
    "model.layer_scale",
    "model.drop_path",
    "pe.type", "pe.theta", "pe.block_size", "pe.init_std", "pe.sigma", "pe.learned",
    "pe.share_layers", "pe.share_heads",
    "optim.opt", "optim.lr", "optim.min_lr", "optim.warmup_lr", "optim.warmup_epochs",
    "optim.weight_decay", "optim.opt_betas", "optim.opt_eps", "optim.clip_grad",
    "train.epochs", "train.batch_size", "train.seed", "train.max_steps", "train.smoothing",
    "train.eval_every", "train.recompute_attention", "train.threads", "train.on_nan",
    "train.mixup", "train.cutmix", "train.mixup_prob", "train.mixup_switch_prob",
    "log.name", "log.dir", "log.every",
};
enum { ALL_KEYS = sizeof all_keys / sizeof all_keys[0] };

/* ---- defaults -------------------------------------------------------- */

START_TEST(test_defaults)
{
    RunConfig c;
    memset(&c, 0x5a, sizeof c); /* defaults must set every key, whatever was there */
    config_defaults(&c);
    ck_assert_str_eq(c.data.root, "data/fashion-mnist");
    ck_assert_int_eq(c.data.img_size, 28);
    ck_assert_int_eq(c.data.channels, 1);
    ck_assert_int_eq(c.data.mean_count, 1);
    ck_assert_int_eq(c.data.std_count, 1);
    for (int i = 0; i < VT_MAX_CHANNELS; i++) {
        ck_assert(c.data.mean[i] == 0.2860f); /* one value applies to every channel */
        ck_assert(c.data.std[i] == 0.3530f);
    }
    ck_assert(c.data.crop_pct == 1.0f);
    ck_assert(c.data.scale[0] == 0.08f && c.data.scale[1] == 1.0f);
    ck_assert(c.data.ratio[0] == 0.75f && c.data.ratio[1] == 1.3333333f);
    ck_assert(!c.data.random_resized_crop);
    ck_assert_int_eq(c.data.pad, 0);
    ck_assert(c.data.hflip == 0.0f);
    ck_assert(c.data.train_fraction == 1.0f);
    ck_assert_int_eq(c.data.on_bad_image, BAD_IMAGE_ERROR);
    ck_assert_int_eq(c.data.cache, CACHE_AUTO);
    ck_assert_int_eq(c.data.prefetch, 4);

    ck_assert_str_eq(c.model.preset, "");
    ck_assert_int_eq(c.model.dim, 192);
    ck_assert_int_eq(c.model.depth, 12);
    ck_assert_int_eq(c.model.heads, 3);
    ck_assert_int_eq(c.model.mlp_dim, 768);
    ck_assert_int_eq(c.model.patch_size, 4);
    ck_assert_str_eq(c.model.pool, "token");
    ck_assert(c.model.layer_scale == 0.0f);
    ck_assert(c.model.drop_path == 0.1f);
    ck_assert_uint_eq(c.model.sizes_set, 0);

    ck_assert_str_eq(c.pe.type, "absolute");
    ck_assert(c.pe.theta == 0.0f); /* the paper's base for each type */
    ck_assert_int_eq(c.pe.block_size, 8);
    ck_assert(c.pe.init_std == 0.5f);
    ck_assert(c.pe.sigma == 0.0f);
    ck_assert(!c.pe.learned && !c.pe.share_layers && !c.pe.share_heads);

    ck_assert_str_eq(c.optim.opt, "adamw");
    ck_assert(c.optim.lr == 5e-4f);
    ck_assert(c.optim.min_lr == 1e-5f);
    ck_assert(c.optim.warmup_lr == 1e-6f);
    ck_assert(c.optim.warmup_epochs == 5.0f);
    ck_assert(c.optim.weight_decay == 0.05f);
    ck_assert(c.optim.betas[0] == 0.9f && c.optim.betas[1] == 0.999f);
    ck_assert(c.optim.eps == 1e-8f);
    ck_assert(c.optim.clip_grad == 0.0f);

    ck_assert_int_eq(c.train.epochs, 100);
    ck_assert_int_eq(c.train.batch_size, 128);
    ck_assert(c.train.seed == 0 && c.train.max_steps == 0);
    ck_assert(c.train.smoothing == 0.1f);
    ck_assert(c.train.mixup == 0.0f && c.train.cutmix == 0.0f); /* off unless asked for */
    ck_assert(c.train.mixup_prob == 1.0f && c.train.mixup_switch_prob == 0.5f);
    ck_assert_int_eq(c.train.eval_every, 1);
    ck_assert_int_eq(c.train.threads, 0);

    ck_assert_str_eq(c.log.name, "default");
    ck_assert_str_eq(c.log.dir, "runs");
    ck_assert_int_eq(c.log.every, 50);
    expect_valid(&c);
}
END_TEST

START_TEST(test_defaults_bytewise)
{
    /* Whatever the memory held before, defaults give the same bytes. */
    RunConfig a, b;
    memset(&a, 0x00, sizeof a);
    memset(&b, 0xff, sizeof b);
    config_defaults(&a);
    config_defaults(&b);
    ck_assert(memcmp(&a, &b, sizeof a) == 0);
}
END_TEST

/* ---- parsing --------------------------------------------------------- */

START_TEST(test_parse_values)
{
    RunConfig c;
    config_defaults(&c);
    parse_ok(&c, "# a comment\n"
                 "; another\n"
                 "\n"
                 "[data]\n"
                 "root = \"/tmp/my data\"   # trailing comment\n"
                 "  img_size=32\n"
                 "channels\t=\t3\n"
                 "mean = 0.485, 0.456,0.406\n"
                 "std = 0.229,0.224 , 0.225 ; comment\n"
                 "rrc = true\n"
                 "cache = file\n"
                 "on_bad_image = skip\n"
                 "scale = 0.5,1\n"
                 "hflip = .5\n"
                 "[ model ]\n"
                 "pool = avg\n"
                 "patch_size = 8\n"
                 "drop_path = 0\n"
                 "[pe]\n"
                 "type = rope_axial\n"
                 "learned = yes\n"
                 "share_heads = 1\n"
                 "[optim]\n"
                 "lr = 1e-3 ; comment\n"
                 "opt_betas = 0.8, 0.99\n"
                 "warmup_epochs = 0.5\n"
                 "[train]\n"
                 "seed = 9223372036854775807\n"
                 "max_steps = +20\n"
                 "[log]\n"
                 "name = run-1.a_B\n"
                 "dir = out#notacomment\n");
    ck_assert_str_eq(c.data.root, "/tmp/my data");
    ck_assert_int_eq(c.data.img_size, 32);
    ck_assert_int_eq(c.data.channels, 3);
    ck_assert_int_eq(c.data.mean_count, 3);
    ck_assert(c.data.mean[0] == 0.485f && c.data.mean[1] == 0.456f && c.data.mean[2] == 0.406f);
    ck_assert_int_eq(c.data.std_count, 3);
    ck_assert(c.data.std[0] == 0.229f && c.data.std[1] == 0.224f && c.data.std[2] == 0.225f);
    ck_assert(c.data.random_resized_crop);
    ck_assert_int_eq(c.data.cache, CACHE_FILE);
    ck_assert_int_eq(c.data.on_bad_image, BAD_IMAGE_SKIP);
    ck_assert(c.data.scale[0] == 0.5f && c.data.scale[1] == 1.0f);
    ck_assert(c.data.hflip == 0.5f);
    ck_assert_str_eq(c.model.pool, "avg");
    ck_assert_int_eq(c.model.patch_size, 8);
    ck_assert(c.model.drop_path == 0.0f);
    ck_assert_str_eq(c.pe.type, "rope_axial");
    ck_assert(c.pe.learned && c.pe.share_heads && !c.pe.share_layers);
    ck_assert(c.optim.lr == 1e-3f);
    ck_assert(c.optim.betas[0] == 0.8f && c.optim.betas[1] == 0.99f);
    ck_assert(c.optim.warmup_epochs == 0.5f);
    ck_assert(c.train.seed == 9223372036854775807LL);
    ck_assert(c.train.max_steps == 20);
    ck_assert_str_eq(c.log.name, "run-1.a_B");
    ck_assert_str_eq(c.log.dir, "out#notacomment"); /* '#' not after whitespace */
    /* Untouched keys keep their defaults. */
    ck_assert_int_eq(c.train.epochs, 100);
    ck_assert_str_eq(c.model.preset, "");
    expect_valid(&c);
}
END_TEST

START_TEST(test_parse_quotes_and_comments)
{
    RunConfig c;
    config_defaults(&c);
    parse_ok(&c, "[data]\nroot = a ;b\n");
    ck_assert_str_eq(c.data.root, "a");
    parse_ok(&c, "[data]\nroot = \"a ;b # c\" # real comment\n");
    ck_assert_str_eq(c.data.root, "a ;b # c");
    parse_ok(&c, "[data]\nroot = \"q\\\"x\\\\y\"\n");
    ck_assert_str_eq(c.data.root, "q\"x\\y");
    parse_ok(&c, "[data]\nroot = a\\b \"c\"\n"); /* escapes only inside quotes */
    ck_assert_str_eq(c.data.root, "a\\b \"c\"");
    parse_ok(&c, "[data]\nroot = \"  padded  \"\n");
    ck_assert_str_eq(c.data.root, "  padded  ");
    parse_ok(&c, "[model]\npreset = tiny\n");
    ck_assert_str_eq(c.model.preset, "tiny");
    parse_ok(&c, "[model]\npreset =\n"); /* the one key that may be empty */
    ck_assert_str_eq(c.model.preset, "");
    parse_ok(&c, "[model]\npreset = small\n");
    parse_ok(&c, "[model]\npreset = \"\"  ; quoted empty\n");
    ck_assert_str_eq(c.model.preset, "");
    parse_ok(&c, "[train]\nepochs = \"7\"\n"); /* quotes are allowed around any value */
    ck_assert_int_eq(c.train.epochs, 7);
    parse_ok(&c, "");
    parse_ok(&c, "\n\n   \n# only comments\n");
    parse_ok(&c, "[optim]\n[train]\n[optim]\nlr = 0.25\n"); /* a section may reopen */
    ck_assert(c.optim.lr == 0.25f);
}
END_TEST

START_TEST(test_parse_booleans)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    char text[64];
    for (int i = 0; i < 4; i++) {
        RunConfig c;
        config_defaults(&c);
        snprintf(text, sizeof text, "[data]\nrrc = %s\n", yes[i]);
        parse_ok(&c, text);
        ck_assert_msg(c.data.random_resized_crop, "%s", yes[i]);
        snprintf(text, sizeof text, "[data]\nrrc = %s\n", no[i]);
        parse_ok(&c, text);
        ck_assert_msg(!c.data.random_resized_crop, "%s", no[i]);
    }
}
END_TEST

START_TEST(test_parse_line_endings)
{
    RunConfig c;
    config_defaults(&c);
    /* UTF-8 byte order mark, CRLF line ends, no final newline. */
    parse_ok(&c, "\xEF\xBB\xBF[train]\r\nepochs = 7\r\n\r\nbatch_size = 64");
    ck_assert_int_eq(c.train.epochs, 7);
    ck_assert_int_eq(c.train.batch_size, 64);
    parse_ok(&c, "[log]\r\nname = crlf\r\n");
    ck_assert_str_eq(c.log.name, "crlf");
    /* Line numbers count CRLF lines once. */
    EXPECT_PARSE_ERROR("\xEF\xBB\xBF[train]\r\nepochs = 7\r\nbatch_size = x\r\n",
                       "t.ini:3: train.batch_size: 'x' is not an integer");
    /* A BOM anywhere else is no whitespace. */
    EXPECT_PARSE_ERROR("[train]\n\xEF\xBB\xBF"
                       "epochs = 7\n",
                       "t.ini:2: unknown key '\xEF\xBB\xBF"
                       "epochs' in section [train]");
}
END_TEST

START_TEST(test_mean_broadcast)
{
    RunConfig c;
    config_defaults(&c);
    parse_ok(&c, "[data]\nchannels = 3\nmean = 0.5\nstd = 0.25\n");
    ck_assert_int_eq(c.data.mean_count, 1);
    ck_assert_int_eq(c.data.std_count, 1);
    for (int i = 0; i < VT_MAX_CHANNELS; i++)
        ck_assert(c.data.mean[i] == 0.5f && c.data.std[i] == 0.25f);
    expect_valid(&c);
    /* A full list then a shorter one: the unused entry is cleared. */
    parse_ok(&c, "[data]\nchannels = 4\nmean = 0.1,0.2,0.3,0.4\n");
    ck_assert_int_eq(c.data.mean_count, 4);
    ck_assert(c.data.mean[3] == 0.4f);
    parse_ok(&c, "[data]\nchannels = 3\nmean = 0.1,0.2,0.3\n");
    ck_assert(c.data.mean[3] == 0.0f);
}
END_TEST

START_TEST(test_parse_keeps_config_on_error)
{
    RunConfig c;
    config_defaults(&c);
    VtError err = {0};
    ck_assert(config_parse(&c, "[train]\nepochs = 7\nbatch_size = 0\n", "t.ini", &err) ==
              VT_ERR_ARGUMENT);
    ck_assert_int_eq(c.train.epochs, 100); /* line 2 was fine but the call failed */
    ck_assert(config_set(&c, "train.nope=1", &err) == VT_ERR_ARGUMENT);
    ck_assert_int_eq(c.train.epochs, 100);
}
END_TEST

/* ---- parse errors ---------------------------------------------------- */

START_TEST(test_error_structure)
{
    EXPECT_PARSE_ERROR("[data]\n[foo]\n", "t.ini:2: unknown section [foo]");
    EXPECT_PARSE_ERROR("[optm]\n", "t.ini:1: unknown section [optm] (did you mean [optim]?)");
    EXPECT_PARSE_ERROR("[optim]\nlrr = 1\n",
                       "t.ini:2: unknown key 'lrr' in section [optim] (did you mean 'lr'?)");
    EXPECT_PARSE_ERROR("[train]\nbatchsize = 1\n",
                       "t.ini:2: unknown key 'batchsize' in section [train] (did you mean "
                       "'batch_size'?)");
    EXPECT_PARSE_ERROR("[train]\nlr = 1\n",
                       "t.ini:2: unknown key 'lr' in section [train] (lr is a key of [optim])");
    EXPECT_PARSE_ERROR("[optim]\nfoo_bar_baz = 1\n",
                       "t.ini:2: unknown key 'foo_bar_baz' in section [optim]");
    EXPECT_PARSE_ERROR("[optim]\nLR = 1\n", /* keys are case-sensitive */
                       "t.ini:2: unknown key 'LR' in section [optim] (did you mean 'lr'?)");
    EXPECT_PARSE_ERROR("[optim]\nlr = 1\n\nlr = 2\n",
                       "t.ini:4: duplicate key 'lr' in section [optim] (first set on line 2)");
    EXPECT_PARSE_ERROR("[optim]\nlr=1\n[train]\nepochs=3\n[optim]\nlr=2\n",
                       "t.ini:6: duplicate key 'lr' in section [optim] (first set on line 2)");
    EXPECT_PARSE_ERROR("lr = 1\n[optim]\n", "t.ini:1: key outside any section");
    EXPECT_PARSE_ERROR("[optim]\nlr 0.1\n", "t.ini:2: expected 'key = value'");
    EXPECT_PARSE_ERROR("[optim]\n = 0.1\n", "t.ini:2: expected 'key = value'");
    EXPECT_PARSE_ERROR("[optim\nlr = 1\n", "t.ini:1: unterminated section header '[optim'");
    EXPECT_PARSE_ERROR("[optim] x\n", "t.ini:1: unexpected text after section header: 'x'");
    EXPECT_PARSE_ERROR("[optim] # fine\n[train]]\n",
                       "t.ini:2: unexpected text after section header: ']'");
}
END_TEST

START_TEST(test_error_numbers)
{
    EXPECT_PARSE_ERROR("[optim]\nlr = abc\n", "t.ini:2: optim.lr: 'abc' is not a number");
    EXPECT_PARSE_ERROR("[optim]\nlr = 1.5x\n", "t.ini:2: optim.lr: '1.5x' is not a number");
    EXPECT_PARSE_ERROR("[optim]\nlr = 0x10\n", "t.ini:2: optim.lr: '0x10' is not a number");
    EXPECT_PARSE_ERROR("[optim]\nlr = 1 2\n", "t.ini:2: optim.lr: '1 2' is not a number");
    EXPECT_PARSE_ERROR("[train]\nepochs = 12abc\n",
                       "t.ini:2: train.epochs: '12abc' is not an integer");
    EXPECT_PARSE_ERROR("[train]\nepochs = 1.5\n",
                       "t.ini:2: train.epochs: '1.5' is not an integer");
    EXPECT_PARSE_ERROR("[train]\nepochs = 1e3\n",
                       "t.ini:2: train.epochs: '1e3' is not an integer");
    EXPECT_PARSE_ERROR("[train]\nbatch_size = 0\n",
                       "t.ini:2: train.batch_size: 0 is out of range [1, 1048576]");
    EXPECT_PARSE_ERROR("[train]\nbatch_size = 1048577\n",
                       "t.ini:2: train.batch_size: 1048577 is out of range [1, 1048576]");
    EXPECT_PARSE_ERROR("[train]\nepochs = 99999999999\n",
                       "t.ini:2: train.epochs: 99999999999 is out of range [1, 1000000]");
    EXPECT_PARSE_ERROR("[train]\nseed = 9223372036854775808\n",
                       "t.ini:2: train.seed: 9223372036854775808 is out of range "
                       "[0, 9223372036854775807]");
    EXPECT_PARSE_ERROR("[train]\nseed = -1\n",
                       "t.ini:2: train.seed: -1 is out of range [0, 9223372036854775807]");
    EXPECT_PARSE_ERROR("[optim]\nlr = -1\n", "t.ini:2: optim.lr: -1 is out of range [0, inf)");
    EXPECT_PARSE_ERROR("[data]\nhflip = 1.5\n", "t.ini:2: data.hflip: 1.5 is out of range [0, 1]");
    EXPECT_PARSE_ERROR("[data]\ncrop_pct = 0\n",
                       "t.ini:2: data.crop_pct: 0 is out of range (0, 1]");
    EXPECT_PARSE_ERROR("[model]\ndrop_path = 1\n",
                       "t.ini:2: model.drop_path: 1 is out of range [0, 1)");
    EXPECT_PARSE_ERROR("[optim]\nlr = 1e39\n", "t.ini:2: optim.lr: 1e39 is too large for a float");
    EXPECT_PARSE_ERROR("[optim]\nlr = 1e999\n",
                       "t.ini:2: optim.lr: 1e999 is too large for a float");
    EXPECT_PARSE_ERROR("[optim]\nlr = 1e-50\n",
                       "t.ini:2: optim.lr: 1e-50 is too close to 0 for a float (write 0)");
    static const char *const nonfinite[] = {"nan", "NaN", "inf", "-inf", "infinity", "nan(1)"};
    for (size_t i = 0; i < sizeof nonfinite / sizeof nonfinite[0]; i++) {
        char text[64], want[96];
        snprintf(text, sizeof text, "[optim]\nlr = %s\n", nonfinite[i]);
        snprintf(want, sizeof want, "t.ini:2: optim.lr: '%s' is not a finite number",
                 nonfinite[i]);
        EXPECT_PARSE_ERROR(text, want);
    }
}
END_TEST

START_TEST(test_error_values)
{
    EXPECT_PARSE_ERROR("[optim]\nlr =\n", "t.ini:2: optim.lr: empty value");
    EXPECT_PARSE_ERROR("[optim]\nlr =   # comment\n", "t.ini:2: optim.lr: empty value");
    EXPECT_PARSE_ERROR("[optim]\nlr = \"\"\n", "t.ini:2: optim.lr: empty value");
    EXPECT_PARSE_ERROR("[data]\nroot =\n", "t.ini:2: data.root: empty value");
    EXPECT_PARSE_ERROR("[log]\nname = \"\"\n", "t.ini:2: log.name: empty value");
    EXPECT_PARSE_ERROR("[data]\nrrc = maybe\n",
                       "t.ini:2: data.rrc: 'maybe' is not a boolean (true or false)");
    EXPECT_PARSE_ERROR("[data]\nrrc = True\n",
                       "t.ini:2: data.rrc: 'True' is not a boolean (true or false)");
    EXPECT_PARSE_ERROR("[data]\ncache = ram\n",
                       "t.ini:2: data.cache: 'ram' is not one of memory, file or auto");
    EXPECT_PARSE_ERROR("[data]\non_bad_image = ignore\n",
                       "t.ini:2: data.on_bad_image: 'ignore' is not one of error or skip");
    EXPECT_PARSE_ERROR("[model]\npreset = huge\n",
                       "t.ini:2: model.preset: 'huge' is not one of \"\", tiny, small or base");
    EXPECT_PARSE_ERROR("[model]\npool = max\n",
                       "t.ini:2: model.pool: 'max' is not one of token or avg");
    EXPECT_PARSE_ERROR("[optim]\nopt = sgd\n",
                       "t.ini:2: optim.opt: 'sgd' is not one of adamw or lamb");
    EXPECT_PARSE_ERROR("[pe]\ntype = Rope\n",
                       "t.ini:2: pe.type: 'Rope' is not a name of [a-z0-9_]");
    EXPECT_PARSE_ERROR("[pe]\ntype = rope-axial\n",
                       "t.ini:2: pe.type: 'rope-axial' is not a name of [a-z0-9_]");
    static const char *const bad_names[] = {"a/b", ".", "..", "a b", "x:y"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        char text[64], want[160];
        snprintf(text, sizeof text, "[log]\nname = \"%s\"\n", bad_names[i]);
        snprintf(want, sizeof want,
                 "t.ini:2: log.name: '%s' is not a folder name (letters, digits, '.', '_', '-'; "
                 "not . or ..)",
                 bad_names[i]);
        EXPECT_PARSE_ERROR(text, want);
    }
    EXPECT_PARSE_ERROR("[data]\nroot = \"abc\n", "t.ini:2: data.root: unterminated quoted value");
    EXPECT_PARSE_ERROR("[data]\nroot = \"a\" b\n",
                       "t.ini:2: data.root: unexpected text after the closing quote: 'b'");
    EXPECT_PARSE_ERROR("[data]\nroot = a\tb\n",
                       "t.ini:2: data.root: control character (byte 9) in the value");
}
END_TEST

START_TEST(test_error_lists)
{
    EXPECT_PARSE_ERROR("[data]\nscale = 0.5\n",
                       "t.ini:2: data.scale: expected 2 comma-separated numbers, got 1");
    EXPECT_PARSE_ERROR("[data]\nscale = 0.1,0.5,1\n",
                       "t.ini:2: data.scale: expected 2 comma-separated numbers, got 3");
    EXPECT_PARSE_ERROR("[data]\nmean = 0.1,0.2,0.3,0.4,0.5\n",
                       "t.ini:2: data.mean: expected 1 to 4 comma-separated numbers, got 5");
    EXPECT_PARSE_ERROR("[data]\nscale = 0.5,\n", "t.ini:2: data.scale: empty element 2 in the list");
    EXPECT_PARSE_ERROR("[data]\nmean = ,0.5\n", "t.ini:2: data.mean: empty element 1 in the list");
    /* An element too long to hold is not read as its first characters. */
    EXPECT_PARSE_ERROR("[data]\nmean = 0.5                                                    "
                       "         junk\n",
                       "t.ini:2: data.mean: element 1 of the list is over 63 characters: not a "
                       "number");
    EXPECT_PARSE_ERROR("[data]\nmean = 0.5,abc\n", "t.ini:2: data.mean: 'abc' is not a number");
    EXPECT_PARSE_ERROR("[data]\nmean = 0.5,nan\n",
                       "t.ini:2: data.mean: 'nan' is not a finite number");
    EXPECT_PARSE_ERROR("[data]\nstd = 0.2,0\n", "t.ini:2: data.std: 0 is out of range (0, 1]");
    EXPECT_PARSE_ERROR("[data]\nmean = 1.5\n", "t.ini:2: data.mean: 1.5 is out of range [0, 1]");
    EXPECT_PARSE_ERROR("[optim]\nopt_betas = 0.9,1\n",
                       "t.ini:2: optim.opt_betas: 1 is out of range [0, 1)");
}
END_TEST

START_TEST(test_error_lengths)
{
    /* A line over the limit is an error, not silently cut. */
    size_t n = 20000;
    char *text = malloc(n + 32);
    ck_assert_ptr_nonnull(text);
    strcpy(text, "[data]\nroot = ");
    size_t used = strlen(text);
    memset(text + used, 'a', n);
    strcpy(text + used + n, "\n");
    EXPECT_PARSE_ERROR(text, "t.ini:2: line is longer than 16384 bytes");
    /* A string longer than its field. */
    char name[300];
    memset(name, 'n', 200);
    name[200] = '\0';
    snprintf(text, n, "[log]\nname = %s\n", name);
    EXPECT_PARSE_ERROR(text, "t.ini:2: log.name: value is 200 bytes long, the limit is 127");
    free(text);
    /* The longest path that fits is accepted, with quotes and escapes. */
    RunConfig c;
    config_defaults(&c);
    char *path = malloc(VT_PATH_MAX);
    ck_assert_ptr_nonnull(path);
    memset(path, '#', VT_PATH_MAX - 1);
    path[VT_PATH_MAX - 1] = '\0';
    strcpy(c.data.root, path);
    char *written = config_to_string(&c);
    RunConfig back;
    config_defaults(&back);
    parse_ok(&back, written);
    ck_assert_str_eq(back.data.root, path);
    free(written);
    free(path);
}
END_TEST

/* ---- config_load ----------------------------------------------------- */

START_TEST(test_load_file)
{
    static const char text[] = "[train]\nepochs = 3\n[log]\nname = from-file\n";
    const char *path = temp_file(text, sizeof text - 1);
    RunConfig c;
    config_defaults(&c);
    VtError err = {0};
    VtCode code = config_load(&c, path, &err);
    unlink(path);
    ck_assert_msg(code == VT_OK, "%s", err.message);
    ck_assert_int_eq(c.train.epochs, 3);
    ck_assert_str_eq(c.log.name, "from-file");
}
END_TEST

START_TEST(test_load_errors)
{
    RunConfig c;
    config_defaults(&c);
    VtError err = {0};
    char want[512];

    static const char bad[] = "[train]\n\nepochs = x\n";
    const char *path = temp_file(bad, sizeof bad - 1);
    VtCode code = config_load(&c, path, &err);
    snprintf(want, sizeof want, "%s:3: train.epochs: 'x' is not an integer", path);
    unlink(path);
    ck_assert_int_eq(code, VT_ERR_ARGUMENT);
    ck_assert_str_eq(err.message, want);

    /* A NUL byte cannot hide the rest of a line. */
    static const char nul[] = "[train]\nepochs = 3\0 junk\n";
    path = temp_file(nul, sizeof nul - 1);
    code = config_load(&c, path, &err);
    snprintf(want, sizeof want, "%s:2: NUL byte in the line", path);
    unlink(path);
    ck_assert_int_eq(code, VT_ERR_ARGUMENT);
    ck_assert_str_eq(err.message, want);
    ck_assert_int_eq(c.train.epochs, 100);

    const char *missing = "/tmp/vitrain-no-such-dir/run.ini";
    code = config_load(&c, missing, &err);
    snprintf(want, sizeof want, "cannot open config file %s: %s", missing, strerror(ENOENT));
    ck_assert_int_eq(code, VT_ERR_IO);
    ck_assert_str_eq(err.message, want);

    code = config_load(&c, "/tmp", &err);
    snprintf(want, sizeof want, "cannot read config file /tmp: %s", strerror(EISDIR));
    ck_assert_int_eq(code, VT_ERR_IO);
    ck_assert_str_eq(err.message, want);
}
END_TEST

/* ---- --set ----------------------------------------------------------- */

START_TEST(test_set_values)
{
    RunConfig c;
    config_defaults(&c);
    parse_ok(&c, "[train]\nepochs = 7\n");
    set_ok(&c, "train.epochs=9"); /* after the file */
    ck_assert_int_eq(c.train.epochs, 9);
    set_ok(&c, "train.epochs=11"); /* --set may repeat: the last wins */
    ck_assert_int_eq(c.train.epochs, 11);
    set_ok(&c, "optim.lr=0.001");
    ck_assert(c.optim.lr == 0.001f);
    set_ok(&c, "  log.name = spaced  ");
    ck_assert_str_eq(c.log.name, "spaced");
    set_ok(&c, "data.root=a#b ;c"); /* no comments on the command line */
    ck_assert_str_eq(c.data.root, "a#b ;c");
    set_ok(&c, "data.root=\"x y\"");
    ck_assert_str_eq(c.data.root, "x y");
    set_ok(&c, "data.scale=0.2,0.9");
    ck_assert(c.data.scale[0] == 0.2f && c.data.scale[1] == 0.9f);
    set_ok(&c, "model.preset=tiny");
    ck_assert_str_eq(c.model.preset, "tiny");
    set_ok(&c, "model.preset=");
    ck_assert_str_eq(c.model.preset, "");
    set_ok(&c, "pe.learned=true");
    ck_assert(c.pe.learned);
    set_ok(&c, "data.cache=memory");
    ck_assert_int_eq(c.data.cache, CACHE_MEMORY);
}
END_TEST

START_TEST(test_set_errors)
{
    EXPECT_SET_ERROR("optim.lr=x", "--set optim.lr=x: 'x' is not a number");
    EXPECT_SET_ERROR("optim.lr", "--set optim.lr: expected section.key=value");
    EXPECT_SET_ERROR("lr=1", "--set lr=1: expected section.key=value");
    EXPECT_SET_ERROR("", "--set : expected section.key=value");
    EXPECT_SET_ERROR("foo.lr=1", "--set foo.lr=1: unknown section [foo]");
    EXPECT_SET_ERROR("optimm.lr=1", "--set optimm.lr=1: unknown section [optimm] (did you mean "
                                    "[optim]?)");
    EXPECT_SET_ERROR("optim.lrr=1",
                     "--set optim.lrr=1: unknown key 'lrr' in section [optim] (did you mean 'lr'?)");
    EXPECT_SET_ERROR("train.lr=1",
                     "--set train.lr=1: unknown key 'lr' in section [train] (lr is a key of [optim])");
    EXPECT_SET_ERROR("train.batch_size=0",
                     "--set train.batch_size=0: 0 is out of range [1, 1048576]");
    EXPECT_SET_ERROR("optim.lr=", "--set optim.lr=: empty value");
    EXPECT_SET_ERROR("optim.lr=inf", "--set optim.lr=inf: 'inf' is not a finite number");
    EXPECT_SET_ERROR("data.mean=0.1,0.2,0.3,0.4,0.5",
                     "--set data.mean=0.1,0.2,0.3,0.4,0.5: expected 1 to 4 comma-separated "
                     "numbers, got 5");
    EXPECT_SET_ERROR("log.name=../x",
                     "--set log.name=../x: '../x' is not a folder name (letters, digits, '.', "
                     "'_', '-'; not . or ..)");
}
END_TEST

/* ---- presets --------------------------------------------------------- */

START_TEST(test_preset_conflicts)
{
    static const char *const why =
        " (the preset decides dim, depth, heads and mlp_dim)";
    char want[256];
    snprintf(want, sizeof want,
             "t.ini:3: model.dim: cannot be set together with model.preset = small%s", why);
    EXPECT_PARSE_ERROR("[model]\npreset = small\ndim = 256\n", want);
    snprintf(want, sizeof want,
             "t.ini:4: model.preset: cannot be set together with model.heads%s", why);
    EXPECT_PARSE_ERROR("[model]\nheads = 4\npatch_size = 2\npreset = tiny\n", want);

    /* Across origins: a file preset, then a size on the command line. */
    RunConfig c;
    config_defaults(&c);
    parse_ok(&c, "[model]\npreset = base\n");
    VtError err = {0};
    ck_assert(config_set(&c, "model.depth=6", &err) == VT_ERR_ARGUMENT);
    snprintf(want, sizeof want,
             "--set model.depth=6: cannot be set together with model.preset = base%s", why);
    ck_assert_str_eq(err.message, want);
    /* Clearing the preset first makes the sizes settable. */
    set_ok(&c, "model.preset=");
    set_ok(&c, "model.depth=6");
    ck_assert_int_eq(c.model.depth, 6);
    /* And the sizes now block a preset. */
    ck_assert(config_set(&c, "model.preset=tiny", &err) == VT_ERR_ARGUMENT);
    snprintf(want, sizeof want,
             "--set model.preset=tiny: cannot be set together with model.depth%s", why);
    ck_assert_str_eq(err.message, want);
    /* An empty preset never conflicts. */
    parse_ok(&c, "[model]\npreset =\ndim = 96\n");
    ck_assert_int_eq(c.model.dim, 96);
}
END_TEST

START_TEST(test_model_sizes)
{
    static const struct {
        const char *preset;
        int dim, depth, heads, mlp_dim;
    } want[] = {
        {"tiny", 192, 12, 3, 768},   /* timm vit_tiny */
        {"small", 384, 12, 6, 1536}, /* timm vit_small */
        {"base", 768, 12, 12, 3072}, /* timm vit_base */
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        RunConfig c;
        config_defaults(&c);
        char set[64];
        snprintf(set, sizeof set, "model.preset=%s", want[i].preset);
        set_ok(&c, set);
        int d, l, h, f;
        config_model_sizes(&c, &d, &l, &h, &f);
        ck_assert_int_eq(d, want[i].dim);
        ck_assert_int_eq(l, want[i].depth);
        ck_assert_int_eq(h, want[i].heads);
        ck_assert_int_eq(f, want[i].mlp_dim);
        /* The model module's own preset table must agree. */
        VitConfig vc;
        memset(&vc, 0, sizeof vc);
        ck_assert(vit_config_preset(&vc, want[i].preset, NULL) == VT_OK);
        ck_assert(vc.dim == d && vc.depth == l && vc.heads == h && vc.mlp_dim == f);
    }
    RunConfig c;
    config_defaults(&c);
    parse_ok(&c, "[model]\ndim = 256\ndepth = 6\nheads = 8\nmlp_dim = 1024\n");
    ck_assert_uint_eq(c.model.sizes_set, 0xf);
    int d, l, h, f;
    config_model_sizes(&c, &d, &l, &h, &f);
    ck_assert(d == 256 && l == 6 && h == 8 && f == 1024);
}
END_TEST

/* ---- validation ------------------------------------------------------ */

START_TEST(test_validate_relations)
{
    RunConfig c;
    config_defaults(&c);
    parse_ok(&c, "[data]\nimg_size = 30\n");
    EXPECT_INVALID(&c, "data.img_size 30 is not a multiple of model.patch_size 4");
    parse_ok(&c, "[model]\npatch_size = 5\n");
    expect_valid(&c);

    config_defaults(&c);
    parse_ok(&c, "[model]\ndim = 100\n");
    EXPECT_INVALID(&c, "model.dim 100 is not a multiple of model.heads 3");

    config_defaults(&c);
    parse_ok(&c, "[data]\npad = 29\n");
    EXPECT_INVALID(&c, "data.pad 29 is larger than data.img_size 28");

    /* Evaluation resizes to img_size / crop_pct: 28 / 0.001 = 28000 is
     * over the 16384 pixels a side may have, 28 / 0.002 = 14000 is not;
     * 1e-9 would not even fit an int. */
    config_defaults(&c);
    parse_ok(&c, "[data]\ncrop_pct = 0.001\n");
    EXPECT_INVALID(&c, "data.crop_pct 0.001 is too small for data.img_size 28: evaluation "
                       "resizes images to img_size / crop_pct = 28000 pixels a side, over the "
                       "16384 an image may have");
    parse_ok(&c, "[data]\ncrop_pct = 1e-9\n");
    EXPECT_INVALID(&c, "data.crop_pct 1e-09 is too small for data.img_size 28: evaluation "
                       "resizes images to img_size / crop_pct = 2.8e+10 pixels a side, "
                       "over the 16384 an image may have");
    parse_ok(&c, "[data]\ncrop_pct = 0.002\n");
    expect_valid(&c);

    /* The preset's sizes are checked, not the fields it overrides. */
    config_defaults(&c);
    c.model.dim = 100;
    set_ok(&c, "model.preset=small");
    expect_valid(&c);

    config_defaults(&c);
    parse_ok(&c, "[data]\nchannels = 3\nmean = 0.4,0.5\n");
    EXPECT_INVALID(&c, "data.mean has 2 values but data.channels is 3 (give 1 value, used for "
                       "every channel, or 3)");
    config_defaults(&c);
    parse_ok(&c, "[data]\nchannels = 4\nstd = 0.1,0.2,0.3\n");
    EXPECT_INVALID(&c, "data.std has 3 values but data.channels is 4 (give 1 value, used for "
                       "every channel, or 4)");
    config_defaults(&c);
    parse_ok(&c, "[data]\nchannels = 3\nmean = 0.4,0.5,0.6\nstd = 0.2\n");
    expect_valid(&c);
    parse_ok(&c, "[data]\nchannels = 1\n");
    EXPECT_INVALID(&c, "data.mean has 3 values but data.channels is 1 (give 1 value, used for "
                       "every channel, or 1)");

    config_defaults(&c);
    parse_ok(&c, "[data]\nchannels = 2\n");
    EXPECT_INVALID(&c, "data.channels: 2 is not supported (1, 3 or 4)");

    config_defaults(&c);
    parse_ok(&c, "[train]\nepochs = 5\n[optim]\nwarmup_epochs = 10\n");
    EXPECT_INVALID(&c, "optim.warmup_epochs 10 is larger than train.epochs 5");
    parse_ok(&c, "[optim]\nwarmup_epochs = 5\n");
    expect_valid(&c);

    config_defaults(&c);
    parse_ok(&c, "[optim]\nlr = 0.00001\nmin_lr = 0.0001\n");
    EXPECT_INVALID(&c, "optim.min_lr 0.0001 is larger than optim.lr 1e-05");

    config_defaults(&c);
    parse_ok(&c, "[data]\nscale = 0.9,0.5\n");
    EXPECT_INVALID(&c, "data.scale: the minimum 0.9 is larger than the maximum 0.5");
    config_defaults(&c);
    parse_ok(&c, "[data]\nratio = 2,0.5\n");
    EXPECT_INVALID(&c, "data.ratio: the minimum 2 is larger than the maximum 0.5");
}
END_TEST

START_TEST(test_validate_fields_set_by_code)
{
    /* Values written into the struct by code get the parser's checks. */
    RunConfig c;
    config_defaults(&c);
    c.optim.lr = NAN;
    EXPECT_INVALID(&c, "optim.lr: 'nan' is not a finite number");
    config_defaults(&c);
    c.train.batch_size = -3;
    EXPECT_INVALID(&c, "train.batch_size: -3 is out of range [1, 1048576]");
    config_defaults(&c);
    strcpy(c.log.name, "a b");
    EXPECT_INVALID(&c, "log.name: 'a b' is not a folder name (letters, digits, '.', '_', '-'; "
                       "not . or ..)");
    config_defaults(&c);
    c.data.cache = (CacheMode)7;
    EXPECT_INVALID(&c, "data.cache: '7' is not one of memory, file or auto");
    config_defaults(&c);
    c.data.std[0] = 0.0f;
    EXPECT_INVALID(&c, "data.std: 0 is out of range (0, 1]");
    config_defaults(&c);
    c.data.mean_count = 0;
    EXPECT_INVALID(&c, "data.mean_count 0 / data.std_count 1: not 1 to 4");
    config_defaults(&c);
    c.model.sizes_set = 1;
    strcpy(c.model.preset, "tiny");
    EXPECT_INVALID(&c, "model.preset = tiny cannot be combined with model.dim, depth, heads or "
                       "mlp_dim set explicitly");
}
END_TEST

/* ---- writing --------------------------------------------------------- */

/* Parses `text` over fresh defaults and checks it gives `want` byte for
 * byte (sizes_set is bookkeeping, not a value) and writes the same text. */
static void check_reads_back(const RunConfig *want, const char *text)
{
    RunConfig got, expect;
    config_defaults(&got);
    parse_ok(&got, text);
    memcpy(&expect, want, sizeof expect);
    got.model.sizes_set = expect.model.sizes_set = 0;
    ck_assert_msg(memcmp(&got, &expect, sizeof got) == 0, "written config reads back different:\n%.2000s", text);
    char *again = config_to_string(&got);
    ck_assert_msg(strcmp(again, text) == 0, "written twice, the texts differ");
    free(again);
}

START_TEST(test_write_round_trip)
{
    RunConfig c;
    config_defaults(&c);
    const char *sets[] = {
        "data.root=\"  we\\\"ird #path;\\\\ \"", "data.channels=3", "data.mean=0.485,0.456,0.406",
        "data.std=0.5", "data.rrc=true", "data.cache=file", "data.ratio=0.1,10",
        "model.dim=96", "model.pool=avg", "model.layer_scale=1e-5", "pe.type=rope_mixed",
        "pe.theta=10000", "pe.share_layers=on", "optim.lr=0.1", "optim.min_lr=1e-7",
        "optim.warmup_epochs=0.25", "optim.opt_betas=0.9,0.95", "train.seed=12345678901234",
        "train.max_steps=3", "log.name=rt", "log.dir=/tmp/out dir",
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        set_ok(&c, sets[i]);
    char *text = config_to_string(&c);
    check_reads_back(&c, text);
    /* Spot checks of the text itself, written out by hand. */
    static const char *const lines[] = {
        "\n[data]\n", "\nroot = \"  we\\\"ird #path;\\\\ \"\n", "\nchannels = 3\n",
        "\nmean = 0.485,0.456,0.406\n", "\nstd = 0.5\n", "\nrrc = true\n", "\ncache = file\n",
        "\nratio = 0.1,10\n", "\nscale = 0.08,1\n", "\npreset = \"\"\n", "\ndim = 96\n",
        "\nlayer_scale = 1e-05\n", "\ntype = rope_mixed\n", "\ntheta = 10000\n",
        "\nshare_layers = true\n", "\nlr = 0.1\n", "\nmin_lr = 1e-07\n",
        "\nopt_betas = 0.9,0.95\n", "\nseed = 12345678901234\n", "\ndir = /tmp/out dir\n",
        "\n[log]\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        ck_assert_msg(strstr(text, lines[i]), "missing '%s' in:\n%.2000s", lines[i], text);
    free(text);

    /* Defaults round-trip too. */
    config_defaults(&c);
    text = config_to_string(&c);
    check_reads_back(&c, text);
    free(text);
}
END_TEST

START_TEST(test_write_preset)
{
    RunConfig c;
    config_defaults(&c);
    set_ok(&c, "model.preset=small");
    char *text = config_to_string(&c);
    /* The sizes a preset decides are comments: the file must load again. */
    ck_assert_msg(strstr(text, "\n# dim = 384  (decided by preset small)\n"), "%.2000s", text);
    ck_assert_msg(strstr(text, "\n# mlp_dim = 1536  (decided by preset small)\n"), "%.2000s", text);
    ck_assert(!strstr(text, "\ndim ="));
    ck_assert(strstr(text, "\npreset = small\n"));
    check_reads_back(&c, text);
    free(text);
}
END_TEST

START_TEST(test_write_floats_exact)
{
    /* Any finite float in a key's range reads back bit for bit; the
     * pattern walks exponents and mantissas with a fixed LCG. */
    uint32_t state = 12345;
    for (int i = 0; i < 2000; i++) {
        state = state * 1664525u + 1013904223u;
        uint32_t bits = state & 0x7f7fffffu; /* positive, exponent below 255: finite */
        float v;
        memcpy(&v, &bits, sizeof v);
        RunConfig c;
        config_defaults(&c);
        c.model.layer_scale = v; /* [0, inf) */
        c.data.scale[0] = v > 1.0f ? 1.0f / v : v > 0.0f ? v : 0.5f;
        char *text = config_to_string(&c);
        RunConfig back;
        config_defaults(&back);
        parse_ok(&back, text);
        ck_assert_msg(memcmp(&back.model.layer_scale, &c.model.layer_scale, sizeof v) == 0,
                      "layer_scale %.9g (bits %08x) reads back as %.9g", (double)v, bits,
                      (double)back.model.layer_scale);
        ck_assert(memcmp(back.data.scale, c.data.scale, sizeof c.data.scale) == 0);
        free(text);
    }
}
END_TEST

START_TEST(test_write_every_key)
{
    RunConfig c;
    config_defaults(&c);
    char *text = config_to_string(&c);
    for (int i = 0; i < ALL_KEYS; i++) {
        /* "section.key" -> "\n[section]\n" ... "\nkey = " before the next "[". */
        char section[32], line[64];
        const char *dot = strchr(all_keys[i], '.');
        snprintf(section, sizeof section, "\n[%.*s]\n", (int)(dot - all_keys[i]), all_keys[i]);
        snprintf(line, sizeof line, "\n%s = ", dot + 1);
        const char *s = strstr(text, section);
        ck_assert_msg(s, "no %s", section);
        const char *k = strstr(s, line);
        const char *next = strstr(s + 1, "\n[");
        ck_assert_msg(k && (!next || k < next), "%s not written in its section", all_keys[i]);
    }
    /* And nothing else: every line is blank, a comment, a header or a key. */
    int assignments = 0;
    for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
        if (*p != '\n' && *p != '#' && *p != '[')
            assignments++;
    }
    free(text);
    ck_assert_int_eq(assignments, ALL_KEYS);
}
END_TEST

START_TEST(test_write_errors)
{
    FILE *full = fopen("/dev/full", "w");
    if (!full)
        return; /* not every system has /dev/full */
    RunConfig c;
    config_defaults(&c);
    errno = 0;
    ck_assert(!config_write(&c, full));
    ck_assert_int_eq(errno, ENOSPC);
    fclose(full);
}
END_TEST

START_TEST(test_write_to_file_and_load)
{
    RunConfig c;
    config_defaults(&c);
    set_ok(&c, "train.epochs=42");
    set_ok(&c, "data.hflip=0.5");
    char path[] = "/tmp/vitrain-config-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert(config_write(&c, f));
    ck_assert(fclose(f) == 0);
    RunConfig back;
    config_defaults(&back);
    VtError err = {0};
    VtCode code = config_load(&back, path, &err);
    unlink(path);
    ck_assert_msg(code == VT_OK, "%s", err.message);
    back.model.sizes_set = c.model.sizes_set = 0;
    ck_assert(memcmp(&back, &c, sizeof c) == 0);
}
END_TEST

START_TEST(test_reference)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    ck_assert_ptr_nonnull(f);
    config_print_reference(f);
    ck_assert(fclose(f) == 0);
    ck_assert(strncmp(text, "| key | type | values | default | description |\n|---|", 50) == 0);
    int rows = 0;
    for (const char *p = text; (p = strchr(p, '\n')); p++)
        rows++;
    ck_assert_int_eq(rows, ALL_KEYS + 2);
    for (int i = 0; i < ALL_KEYS; i++) {
        char cell[64];
        snprintf(cell, sizeof cell, "\n| `%s` |", all_keys[i]);
        ck_assert_msg(strstr(text, cell), "no row for %s", all_keys[i]);
    }
    ck_assert(strstr(text, "\n| `optim.lr` | float | [0, inf) | `5e-4` | "));
    ck_assert(strstr(text, "\n| `train.batch_size` | int | [1, 1048576] | `128` | "));
    ck_assert(strstr(text, "\n| `data.cache` | enum | memory, file or auto | `auto` | "));
    ck_assert(strstr(text, "\n| `model.preset` | string | \"\", tiny, small or base | `\"\"` | "));
    ck_assert(strstr(text, "\n| `data.mean` | floats | 1 to 4 values in [0, 1] | `0.2860` | "));
    free(text);
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_with_timeout("parse", 30, NULL);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_defaults_bytewise);
    tcase_add_test(tc, test_parse_values);
    tcase_add_test(tc, test_parse_quotes_and_comments);
    tcase_add_test(tc, test_parse_booleans);
    tcase_add_test(tc, test_parse_line_endings);
    tcase_add_test(tc, test_mean_broadcast);
    tcase_add_test(tc, test_parse_keeps_config_on_error);
    suite_add_tcase(s, tc);

    tc = tcase_with_timeout("errors", 30, NULL);
    tcase_add_test(tc, test_error_structure);
    tcase_add_test(tc, test_error_numbers);
    tcase_add_test(tc, test_error_values);
    tcase_add_test(tc, test_error_lists);
    tcase_add_test(tc, test_error_lengths);
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_load_errors);
    suite_add_tcase(s, tc);

    tc = tcase_with_timeout("set_and_presets", 30, NULL);
    tcase_add_test(tc, test_set_values);
    tcase_add_test(tc, test_set_errors);
    tcase_add_test(tc, test_preset_conflicts);
    tcase_add_test(tc, test_model_sizes);
    suite_add_tcase(s, tc);

    tc = tcase_with_timeout("validate", 30, NULL);
    tcase_add_test(tc, test_validate_relations);
    tcase_add_test(tc, test_validate_fields_set_by_code);
    suite_add_tcase(s, tc);

    tc = tcase_with_timeout("write", 60, NULL);
    tcase_add_test(tc, test_write_round_trip);
    tcase_add_test(tc, test_write_preset);
    tcase_add_test(tc, test_write_floats_exact);
    tcase_add_test(tc, test_write_every_key);
    tcase_add_test(tc, test_write_errors);
    tcase_add_test(tc, test_write_to_file_and_load);
    tcase_add_test(tc, test_reference);
    suite_add_tcase(s, tc);
    return s;
}
