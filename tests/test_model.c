/*
 * test_model.c - the whole ViT: gradient of the loss w.r.t. every parameter
 * tensor, timm names and sizes, and the invariances the architecture
 * promises.
 */
#include "fixtures.h"
#include "gradcheck.h"
#include "suites.h"

#include "vitrain/parallel.h"
#include "vitrain/pe.h"
#include "vitrain/synthetic.h"
#include "vitrain/vit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A 2-block ViT with every optional part switched on. */
static VitConfig small_config(const char *pe, PoolMode pool)
{
    return (VitConfig){.img_size = 8, .channels = 2, .patch_size = 4, .dim = 16, .depth = 2,
                       .heads = 2, .mlp_dim = 32, .num_classes = 3, .pe = pe_options(pe), .pool = pool,
                       .layer_scale_init = 0.5f, .drop_path = 0.3f};
}

static void make_model(Vit *m, const VitConfig *cfg, int batch)
{
    VtError err;
    ck_assert_msg(vit_create(m, cfg, batch, &err) == VT_OK, "%s", err.message);
    vit_init_params(m, 5);
}

/* ---- whole-model gradient ------------------------------------------------- */

typedef struct {
    Vit *m;
    const float *images;
    const int *labels;
    int B;
    VitPass pass;
    float loss, dloss;
} ModelCase;

enum { CASE_BATCH = 3, CASE_IMAGE = 2 * 8 * 8 }; /* small_config's images */

/* A small_config model with parameters of order one (gradients well above
 * the fp32 noise floor) and CASE_BATCH images, drawn from seed. */
static void make_case(Vit *m, const VitConfig *cfg, float *images, uint64_t seed)
{
    make_model(m, cfg, CASE_BATCH);
    gc_fill_normal(m->params.data, m->param_list.total, 0.5, seed);
    gc_fill_normal(images, CASE_BATCH * CASE_IMAGE, 1.0, seed + 1);
}

static void model_fwd(void *c)
{
    ModelCase *mc = c;
    mc->loss = (float)vit_forward_loss(mc->m, mc->images, mc->labels, mc->B, &mc->pass);
}

static void model_bwd(void *c)
{
    ModelCase *mc = c;
    /* L = r * loss: scale the loss gradient by r through the label-free
     * route of scaling every parameter gradient afterwards. */
    vit_backward(mc->m, mc->labels, &mc->pass);
    for (size_t i = 0; i < mc->m->param_list.total; i++)
        mc->m->grads.data[i] *= mc->dloss;
}

/*
 * Tolerance 5e-3 of each tensor's gradient scale, steps h = 1e-2 relative.
 * The loss is one fp32 number computed through two blocks, so every
 * perturbation changes every rounding on the way: the central difference
 * carries about 1e-7 |L| / h of noise, up to ~1e-3 relative for the
 * smallest gradients here (measured: max 1.2e-3 over all tensors; with
 * h = 1e-3 the noise grows to 7e-3). A 1 % error in the gradient of any
 * parameter shows as ~1e-2, twice the tolerance; the per-op checks hold the
 * tighter 1e-3 line.
 */
static const double MODEL_TOLERANCE = 5e-3;
static const double MODEL_EPS = 1e-2;

/* layer_scale and drop_path override small_config's: each combination
 * takes its own path through the model (the fused residual GEMM without
 * either, the branch scratch with drop path alone). */
static void check_model_mlp(const char *title, const char *pe, PoolMode pool, float layer_scale,
                            float drop_path, int mlp_dim)
{
    VitConfig cfg = small_config(pe, pool);
    cfg.layer_scale_init = layer_scale;
    cfg.drop_path = drop_path;
    cfg.mlp_dim = mlp_dim;
    Vit m;
    float images[CASE_BATCH * CASE_IMAGE];
    make_case(&m, &cfg, images, 41);
    int labels[CASE_BATCH] = {0, 2, 1};
    ModelCase mc = {.m = &m, .images = images, .labels = labels, .B = CASE_BATCH,
                    .pass = {.train = true, .step = 3, .seed = 9, .smoothing = 0.1f}};
    GcProblem p = {.ctx = &mc, .forward = model_fwd, .backward = model_bwd, .out = &mc.loss,
                   .dout = &mc.dloss, .out_n = 1};
    for (int t = 0; t < m.param_list.count; t++)
        gc_add(&p, m.param_list.specs[t].name, arena_tensor(&m.params, t),
               arena_tensor(&m.grads, t), m.param_list.specs[t].numel);
    GcResult r;
    GcOptions o = {.eps = MODEL_EPS, .max_samples = 24};
    gradcheck_run(&p, &o, &r);
    gradcheck_print(title, &p, &r);
    /* Every tensor must be reached: a dropped branch would pass vacuously. */
    for (int t = 0; t < p.n_tensors; t++)
        ck_assert_msg(r.scales[t] > 1e-4, "%s: no gradient reaches %s", title, p.tensors[t].name);
    ck_assert_msg(r.max_error < MODEL_TOLERANCE, "%s: error %.3g in %s", title, r.max_error,
                  p.tensors[r.worst].name);
    vit_free(&m);
}

static void check_model(const char *title, const char *pe, PoolMode pool, float layer_scale,
                        float drop_path)
{
    check_model_mlp(title, pe, pool, layer_scale, drop_path, 32);
}

START_TEST(test_model_gradients_absolute_cls)
{
    check_model("vit (absolute, cls pool)", "absolute", POOL_CLS, 0.5f, 0.3f);
}
END_TEST

START_TEST(test_model_gradients_rotary_plain_blocks)
{
    check_model("vit (rope_mixed, no LayerScale or drop path)", "rope_mixed", POOL_CLS, 0.0f,
                0.0f);
}
END_TEST

START_TEST(test_model_gradients_drop_path_only)
{
    check_model("vit (absolute, drop path without LayerScale)", "absolute", POOL_MEAN, 0.0f,
                0.3f);
}
END_TEST

START_TEST(test_model_gradients_wide_mlp)
{
    /* mlp_dim 64 >= 3 dim: drop path's gradient for the attention branch
     * and then dL/dqkv take the memory of fc1's activation (the other
     * checks run mlp_dim 32, with a qkv buffer of its own). */
    check_model_mlp("vit (rope_mixed, mlp_dim 4 dim)", "rope_mixed", POOL_CLS, 0.0f, 0.3f, 64);
}
END_TEST

START_TEST(test_model_gradients_narrow_mlp)
{
    /* mlp_dim 8 < dim: fc1's activation is too small for drop path's
     * gradient, which gets a buffer of its own. */
    check_model_mlp("vit (absolute, mlp_dim dim / 2)", "absolute", POOL_CLS, 0.5f, 0.3f, 8);
}
END_TEST

START_TEST(test_model_gradients_none_mean)
{
    check_model("vit (no pe, mean pool)", "none", POOL_MEAN, 0.5f, 0.3f);
}
END_TEST

/* ---- recompute_attention ----------------------------------------------------- */

typedef struct StepResult {
    double loss;
    float *grads;       /* copy of the gradient arena */
    size_t params;      /* its floats */
    size_t activations; /* floats of the activation plan */
} StepResult;

/* One training step of small_config(pe) from fixed parameters and images. */
static StepResult train_step_with(const char *pe, bool recompute)
{
    VitConfig cfg = small_config(pe, POOL_CLS);
    cfg.recompute_attention = recompute;
    Vit m;
    float images[CASE_BATCH * CASE_IMAGE];
    make_case(&m, &cfg, images, 46);
    const int labels[CASE_BATCH] = {2, 0, 1};
    const VitPass pass = {.train = true, .step = 5, .seed = 3, .smoothing = 0.1f};
    StepResult r = {.loss = vit_forward_loss(&m, images, labels, CASE_BATCH, &pass),
                    .grads = gc_zeros(m.param_list.total), .params = m.param_list.total,
                    .activations = m.act_list.total};
    vit_backward(&m, labels, &pass);
    memcpy(r.grads, m.grads.data, m.param_list.total * sizeof(float));
    vit_free(&m);
    return r;
}

START_TEST(test_recompute_attention_changes_only_memory)
{
    /* The backward reruns the very forward computation, so the step is
     * bit for bit the same, with LayerScale and drop path on, with and
     * without a rotation; only the activation plan shrinks. */
    const char *pes[] = {"absolute", "rope_mixed", "liere"};
    for (int i = 0; i < 3; i++) {
        StepResult kept = train_step_with(pes[i], false), redone = train_step_with(pes[i], true);
        ck_assert_msg(kept.loss == redone.loss, "%s: loss %.9g vs %.9g", pes[i], kept.loss,
                      redone.loss);
        ck_assert_msg(memcmp(kept.grads, redone.grads, kept.params * sizeof(float)) == 0,
                      "%s: gradients differ with recompute_attention", pes[i]);
        ck_assert_msg(redone.activations < kept.activations, "%s: %zu activations, not below %zu",
                      pes[i], redone.activations, kept.activations);
    }
}
END_TEST

/* One training step of small_config with the given encoding (heads and
 * block size when nonzero) and attention recompute, its last block over
 * the CLS rows alone or over every token. */
static StepResult cls_step(const char *pe, int heads, int block_size, bool recompute,
                           bool cls_only_last)
{
    VitConfig cfg = small_config(pe, POOL_CLS);
    if (heads)
        cfg.heads = heads;
    if (block_size)
        cfg.pe.block_size = block_size;
    cfg.recompute_attention = recompute;
    Vit m;
    float images[CASE_BATCH * CASE_IMAGE];
    make_case(&m, &cfg, images, 47);
    m.cls_only_last = cls_only_last;
    const int labels[CASE_BATCH] = {1, 2, 0};
    const VitPass pass = {.train = true, .step = 2, .seed = 8, .smoothing = 0.1f};
    StepResult r = {.loss = vit_forward_loss(&m, images, labels, CASE_BATCH, &pass),
                    .grads = gc_zeros(m.param_list.total), .params = m.param_list.total};
    vit_backward(&m, labels, &pass);
    memcpy(r.grads, m.grads.data, m.param_list.total * sizeof(float));
    vit_free(&m);
    return r;
}

START_TEST(test_cls_only_last_block_matches_every_token)
{
    /* Classifying from the CLS token, the last block skips every other
     * token past its attention: the loss and every gradient must be those
     * of the block run over all tokens (the same sums over fewer rows, so
     * equal to rounding), with LayerScale and drop path on, rotations per
     * head (rope_mixed) and over whole tensors (dense LieRE, one head of
     * 16), and with the attention recomputed. */
    const struct {
        const char *pe;
        int heads, block_size;
        bool recompute;
    } cases[] = {{"absolute", 0, 0, false}, {"rope_mixed", 0, 0, false}, {"liere", 1, 16, true}};
    for (int i = 0; i < 3; i++) {
        StepResult all = cls_step(cases[i].pe, cases[i].heads, cases[i].block_size,
                                  cases[i].recompute, false);
        StepResult cls = cls_step(cases[i].pe, cases[i].heads, cases[i].block_size,
                                  cases[i].recompute, true);
        ck_assert_msg(fabs(all.loss - cls.loss) <= 1e-6 * fabs(all.loss), "%s: loss %.9g vs %.9g",
                      cases[i].pe, all.loss, cls.loss);
        double scale = 0.0, worst = 0.0;
        for (size_t j = 0; j < all.params; j++) {
            scale = fmax(scale, fabs(all.grads[j]));
            worst = fmax(worst, fabs(all.grads[j] - cls.grads[j]));
        }
        ck_assert_msg(scale > 0.0 && worst <= 1e-5 * scale, "%s: gradients differ by %.3g of %.3g",
                      cases[i].pe, worst, scale);
        free(all.grads);
        free(cls.grads);
    }
}
END_TEST

/* A model made for inference shares one block's activations and two
 * streams among all its blocks: its logits must equal those of a model
 * planned for training bit for bit (rotations per head and of whole
 * tensors, both poolings, LayerScale, recomputed attention, depth 4 so
 * that streams and blocks are reused more than once), in a fraction of
 * the memory. */
START_TEST(test_inference_model_matches_the_training_model)
{
    const struct {
        const char *pe;
        PoolMode pool;
        int block_size;
        bool recompute;
    } cases[] = {{"absolute", POOL_CLS, 0, false}, {"rope_mixed", POOL_MEAN, 0, false},
                 {"liere", POOL_CLS, 16, false}, {"liere", POOL_MEAN, 16, false},
                 {"liere", POOL_CLS, 8, true}};
    enum { B = 3 };
    for (int i = 0; i < 5; i++) {
        VitConfig cfg = small_config(cases[i].pe, cases[i].pool);
        cfg.depth = 4;
        cfg.heads = 1; /* LieRE b = 16 is dense (products), b = 8 per head */
        cfg.recompute_attention = cases[i].recompute;
        if (cases[i].block_size)
            cfg.pe.block_size = cases[i].block_size;
        Vit full, lean;
        VtError err;
        make_model(&full, &cfg, B);
        ck_assert_msg(vit_create_inference(&lean, &cfg, B, &err) == VT_OK, "%s", err.message);
        vit_init_params(&lean, 5);
        const float *images = gc_randn((size_t)B * cfg.channels * cfg.img_size * cfg.img_size,
                                       1.0, 11);
        const VitPass pass = {.train = false};
        const float *a = vit_forward(&full, images, B, &pass);
        const float *b = vit_forward(&lean, images, B, &pass);
        ck_assert_msg(memcmp(a, b, (size_t)B * cfg.num_classes * sizeof(float)) == 0,
                      "%s: inference logits differ from the training model's", cases[i].pe);
        /* A second batch through the shared buffers, after the first. */
        images = gc_randn((size_t)B * cfg.channels * cfg.img_size * cfg.img_size, 1.0, 12);
        a = vit_forward(&full, images, B, &pass);
        b = vit_forward(&lean, images, B, &pass);
        ck_assert_msg(memcmp(a, b, (size_t)B * cfg.num_classes * sizeof(float)) == 0,
                      "%s: the second batch differs", cases[i].pe);
        ck_assert_msg(2 * vit_memory_bytes(&lean) < vit_memory_bytes(&full), "%s: %zu vs %zu bytes",
                      cases[i].pe, vit_memory_bytes(&lean), vit_memory_bytes(&full));
        vit_free(&full);
        vit_free(&lean);
    }
}
END_TEST

/* ---- names and sizes -------------------------------------------------------- */

static void expect_tensor(const Vit *m, const char *name, int ndim, const int64_t *shape,
                          bool decays)
{
    int i = tensor_list_find(&m->param_list, name);
    ck_assert_msg(i >= 0, "no tensor %s", name);
    const TensorSpec *s = &m->param_list.specs[i];
    ck_assert_int_eq(s->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        ck_assert_int_eq(s->shape[d], shape[d]);
    ck_assert_msg(((s->flags & VT_TENSOR_NO_DECAY) == 0) == decays, "%s: weight decay flag", name);
}

START_TEST(test_model_timm_names)
{
    VitConfig cfg = small_config("absolute", POOL_CLS);
    Vit m;
    make_model(&m, &cfg, 1);
    expect_tensor(&m, "patch_embed.proj.weight", 4, (int64_t[]){16, 2, 4, 4}, true);
    expect_tensor(&m, "patch_embed.proj.bias", 1, (int64_t[]){16}, false);
    expect_tensor(&m, "cls_token", 3, (int64_t[]){1, 1, 16}, false);
    expect_tensor(&m, "pos_embed", 3, (int64_t[]){1, 5, 16}, false);
    expect_tensor(&m, "blocks.1.norm1.weight", 1, (int64_t[]){16}, false);
    expect_tensor(&m, "blocks.1.attn.qkv.weight", 2, (int64_t[]){48, 16}, true);
    expect_tensor(&m, "blocks.1.attn.qkv.bias", 1, (int64_t[]){48}, false);
    expect_tensor(&m, "blocks.1.attn.proj.weight", 2, (int64_t[]){16, 16}, true);
    expect_tensor(&m, "blocks.1.ls1.gamma", 1, (int64_t[]){16}, false);
    expect_tensor(&m, "blocks.1.norm2.bias", 1, (int64_t[]){16}, false);
    expect_tensor(&m, "blocks.1.mlp.fc1.weight", 2, (int64_t[]){32, 16}, true);
    expect_tensor(&m, "blocks.1.mlp.fc2.weight", 2, (int64_t[]){16, 32}, true);
    expect_tensor(&m, "blocks.1.ls2.gamma", 1, (int64_t[]){16}, false);
    expect_tensor(&m, "norm.weight", 1, (int64_t[]){16}, false);
    expect_tensor(&m, "head.weight", 2, (int64_t[]){3, 16}, true);
    expect_tensor(&m, "head.bias", 1, (int64_t[]){3}, false);
    ck_assert_int_eq(tensor_list_find(&m.param_list, "blocks.2.norm1.weight"), -1);
    vit_free(&m);
}
END_TEST

START_TEST(test_model_tiny_matches_timm_parameter_count)
{
    /* timm's vit_tiny_patch16_224 has 5,717,416 parameters (224 px, patch
     * 16, 3 channels, 1000 classes, no LayerScale). */
    VitConfig cfg = {.img_size = 224, .channels = 3, .patch_size = 16, .num_classes = 1000,
                     .pe = pe_options("absolute")};
    VtError err;
    ck_assert(vit_config_preset(&cfg, "tiny", &err) == VT_OK);
    Vit m;
    ck_assert(vit_create(&m, &cfg, 1, &err) == VT_OK);
    size_t count = 0;
    for (int t = 0; t < m.param_list.count; t++)
        count += m.param_list.specs[t].numel;
    ck_assert_uint_eq(count, 5717416);
    vit_free(&m);
    ck_assert(vit_config_preset(&cfg, "huge", &err) == VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "huge"));
}
END_TEST

START_TEST(test_model_rejects_bad_sizes)
{
    VitConfig cfg = small_config("absolute", POOL_CLS);
    VtError err;
    Vit m;
    cfg.patch_size = 3;
    ck_assert(vit_create(&m, &cfg, 1, &err) == VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "patch_size"));
    cfg = small_config("absolute", POOL_CLS);
    cfg.heads = 3;
    ck_assert(vit_create(&m, &cfg, 1, &err) == VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "heads"));
    cfg = small_config("absolute", POOL_CLS);
    cfg.drop_path = 1.0f;
    ck_assert(vit_create(&m, &cfg, 1, &err) == VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "drop_path"));
}
END_TEST

START_TEST(test_model_too_big_for_memory_is_refused)
{
    /* 32768 wide, 256 blocks: about 1.3 TB of parameters. The plan is
     * refused with the numbers before anything that size is allocated. */
    VitConfig cfg = small_config("absolute", POOL_CLS);
    cfg.dim = 32768;
    cfg.heads = 64;
    cfg.mlp_dim = 131072;
    cfg.depth = 256;
    Vit m;
    VtError err;
    ck_assert_int_eq(vit_create(&m, &cfg, 64, &err), VT_ERR_NOMEM);
    ck_assert_msg(strstr(err.message, "GiB") && strstr(err.message, "available"), "%s",
                  err.message);
}
END_TEST

/* An address-space limit (ulimit -v) binds before the machine's memory
 * does: a model of about 450 MB under a cap 64 MB above what the process
 * maps is refused with the numbers, not aborted when its arenas fail.
 * (Check runs each test in a child process, and the cap is lifted again;
 * ASan reserves far more address space than any such cap.) */
START_TEST(test_model_over_an_address_space_limit_is_refused)
{
#if defined(__SANITIZE_ADDRESS__)
    return;
#endif
    VitConfig cfg = small_config("absolute", POOL_CLS);
    cfg.dim = 512;
    cfg.heads = 8;
    cfg.mlp_dim = 2048;
    cfg.depth = 8; /* 8 x 12 x 512^2 = 25M parameters, 4 copies in training */
    fixture_cap_address_space(64 << 20);
    Vit m;
    VtError err;
    const VtCode code = vit_create(&m, &cfg, 8, &err);
    fixture_lift_address_space_cap();
    ck_assert_msg(code == VT_ERR_NOMEM, "code %d", (int)code);
    ck_assert_msg(strstr(err.message, "GiB of memory is available"), "%s", err.message);
}
END_TEST

/* ---- invariances ------------------------------------------------------------ */

/* Moves patch (gy, gx) of every image to patch perm[gy * g + gx]. */
static void permute_patches(float *dst, const float *src, const int *perm, int C, int S, int P)
{
    const int g = S / P;
    for (int c = 0; c < C; c++)
        for (int p = 0; p < g * g; p++)
            for (int y = 0; y < P; y++)
                for (int x = 0; x < P; x++) {
                    int from = ((c * S) + (p / g) * P + y) * S + (p % g) * P + x;
                    int to = ((c * S) + (perm[p] / g) * P + y) * S + (perm[p] % g) * P + x;
                    dst[to] = src[from];
                }
}

static double max_logit_change_under_patch_shuffle(const char *pe)
{
    VitConfig cfg = small_config(pe, POOL_CLS);
    Vit m;
    make_model(&m, &cfg, 1);
    gc_fill_normal(m.params.data, m.param_list.total, 0.3, 43);
    float image[2 * 8 * 8], shuffled[2 * 8 * 8], logits[3];
    gc_fill_normal(image, 128, 1.0, 44);
    const int perm[4] = {2, 0, 3, 1};
    permute_patches(shuffled, image, perm, 2, 8, 4);
    const VitPass eval = {.train = false};
    memcpy(logits, vit_forward(&m, image, 1, &eval), sizeof logits);
    const float *moved = vit_forward(&m, shuffled, 1, &eval);
    double change = 0.0;
    for (int k = 0; k < 3; k++)
        change = fmax(change, fabs(moved[k] - logits[k]));
    vit_free(&m);
    return change;
}

START_TEST(test_model_without_pe_ignores_patch_order)
{
    /* Without positional information attention is permutation-equivariant,
     * so the CLS output cannot depend on the order of the patches. */
    ck_assert_double_lt(max_logit_change_under_patch_shuffle("none"), 1e-5);
    /* With the absolute encoding it must (else the test proves nothing). */
    ck_assert_double_gt(max_logit_change_under_patch_shuffle("absolute"), 1e-3);
}
END_TEST

START_TEST(test_model_samples_are_independent_in_a_batch)
{
    VitConfig cfg = small_config("absolute", POOL_CLS);
    Vit m;
    make_model(&m, &cfg, 4);
    float images[4 * 128], alone[3];
    gc_fill_normal(images, 4 * 128, 1.0, 45);
    const VitPass eval = {.train = false};
    memcpy(alone, vit_forward(&m, images + 2 * 128, 1, &eval), sizeof alone);
    const float *batch = vit_forward(&m, images, 4, &eval);
    for (int k = 0; k < 3; k++)
        ck_assert_float_eq_tol(batch[2 * 3 + k], alone[k], 1e-5f);
    vit_free(&m);
}
END_TEST

/* ---- pos_embed resampling (DESIGN §4.1) ----------------------------------- */

START_TEST(test_pos_embed_resample_hand_computed)
{
    /* One row [0, 1] upsampled to 4 by PyTorch's antialiased bicubic
     * (a = -0.5, align_corners false), worked by hand. Output i has centre
     * (i + 0.5) / 2 in input units; input j sits at filter distance
     * |j + 0.5 - centre|, and the weights are normalised by their sum.
     * Output 0: distances 0.25 and 1.25, weights 0.8671875 and -0.0703125.
     * Output 1: input 0 at distance 0.25 (weight 0.8671875), input 1 at
     * 0.75 (weight 0.2265625). The other end mirrors these. */
    float src[2] = {0.0f, 1.0f}, dst[4];
    pos_embed_resample(dst, 1, 4, src, 1, 2, 1);
    const double end = -0.0703125 / 0.796875;
    ck_assert_double_eq_tol(dst[0], end, 1e-6);
    ck_assert_double_eq_tol(dst[3], 1.0 - end, 1e-6);
    ck_assert_double_eq_tol(dst[1], 0.2265625 / (0.8671875 + 0.2265625), 1e-6);
    ck_assert_double_eq_tol(dst[2], 0.8671875 / (0.8671875 + 0.2265625), 1e-6);
}
END_TEST

START_TEST(test_pos_embed_resample_properties)
{
    enum { G0 = 3, G = 5, D = 2 };
    float src[G0 * G0 * D], dst[G * G * D], same[G0 * G0 * D];
    gc_fill_normal(src, G0 * G0 * D, 1.0, 46);
    /* Same size: identity. */
    pos_embed_resample(same, G0, G0, src, G0, G0, D);
    for (int i = 0; i < G0 * G0 * D; i++)
        ck_assert_float_eq_tol(same[i], src[i], 1e-6f);
    /* A constant grid stays constant (the weights are normalised). */
    for (int i = 0; i < G0 * G0 * D; i++)
        src[i] = i % D ? 2.5f : -1.0f;
    pos_embed_resample(dst, G, G, src, G0, G0, D);
    for (int i = 0; i < G * G * D; i++)
        ck_assert_float_eq_tol(dst[i], i % D ? 2.5f : -1.0f, 1e-6f);
}
END_TEST

START_TEST(test_transfer_params_to_another_resolution)
{
    VitConfig cfg = small_config("absolute", POOL_CLS), big_cfg = cfg;
    big_cfg.img_size = 16;
    Vit m, big;
    make_model(&m, &cfg, 1);
    make_model(&big, &big_cfg, 1);
    vit_transfer_params(&big, &m);
    /* Everything but pos_embed is copied as is; its CLS slot too. */
    for (int t = 0; t < big.param_list.count; t++) {
        const TensorSpec *s = &big.param_list.specs[t];
        const float *from = arena_tensor(&m.params, tensor_list_find(&m.param_list, s->name));
        const float *to = arena_tensor(&big.params, t);
        size_t n = t == big.pos_embed ? (size_t)cfg.dim : s->numel;
        ck_assert_msg(memcmp(from, to, n * sizeof(float)) == 0, "%s not copied", s->name);
    }
    vit_free(&m);
    vit_free(&big);
}
END_TEST

Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *grads = tcase_with_timeout("gradients", 120, NULL);
    tcase_add_test(grads, test_model_gradients_absolute_cls);
    tcase_add_test(grads, test_model_gradients_none_mean);
    tcase_add_test(grads, test_model_gradients_rotary_plain_blocks);
    tcase_add_test(grads, test_model_gradients_drop_path_only);
    tcase_add_test(grads, test_model_gradients_narrow_mlp);
    tcase_add_test(grads, test_model_gradients_wide_mlp);
    tcase_add_test(grads, test_recompute_attention_changes_only_memory);
    tcase_add_test(grads, test_cls_only_last_block_matches_every_token);
    suite_add_tcase(s, grads);
    TCase *tc = tcase_with_timeout("structure", 30, NULL);
    tcase_add_test(tc, test_model_timm_names);
    tcase_add_test(tc, test_model_tiny_matches_timm_parameter_count);
    tcase_add_test(tc, test_model_rejects_bad_sizes);
    tcase_add_test(tc, test_model_too_big_for_memory_is_refused);
    tcase_add_test(tc, test_model_without_pe_ignores_patch_order);
    tcase_add_test(tc, test_model_samples_are_independent_in_a_batch);
    tcase_add_test(tc, test_pos_embed_resample_hand_computed);
    tcase_add_test(tc, test_pos_embed_resample_properties);
    tcase_add_test(tc, test_transfer_params_to_another_resolution);
    tcase_add_test(tc, test_inference_model_matches_the_training_model);
    tcase_add_test(tc, test_model_over_an_address_space_limit_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
