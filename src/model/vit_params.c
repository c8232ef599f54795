/*
 * vit_params.c - the ViT's configuration checks and its named parameters
 * (timm names and layouts, DESIGN §2) with their initialisation.
 */
#include "vitrain/rng.h"
#include "vitrain/vit.h"

#include "vit_internal.h"

#include <math.h>
#include <string.h>

VtCode vit_config_preset(VitConfig *cfg, const char *preset, VtError *err)
{
    static const struct {
        const char *name;
        int dim, depth, heads, mlp_dim;
    } presets[] = {
        {"tiny", 192, 12, 3, 768},
        {"small", 384, 12, 6, 1536},
        {"base", 768, 12, 12, 3072},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(preset, presets[i].name) == 0) {
            cfg->dim = presets[i].dim;
            cfg->depth = presets[i].depth;
            cfg->heads = presets[i].heads;
            cfg->mlp_dim = presets[i].mlp_dim;
            return VT_OK;
        }
    }
    return vt_fail(err, VT_ERR_ARGUMENT, "unknown model preset '%s' (expected tiny, small or base)",
                   preset);
}

static VtCode check_positive(const char *field, int value, VtError *err)
{
    if (value <= 0)
        return vt_fail(err, VT_ERR_ARGUMENT, "model.%s must be positive, got %d", field, value);
    return VT_OK;
}

VtCode vit_config_validate(const VitConfig *cfg, VtError *err)
{
    const struct {
        const char *name;
        int value;
    } fields[] = {
        {"img_size", cfg->img_size}, {"channels", cfg->channels}, {"patch_size", cfg->patch_size},
        {"dim", cfg->dim},           {"depth", cfg->depth},       {"heads", cfg->heads},
        {"mlp_dim", cfg->mlp_dim},   {"num_classes", cfg->num_classes},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        VtCode code = check_positive(fields[i].name, fields[i].value, err);
        if (code)
            return code;
    }
    if (cfg->img_size % cfg->patch_size != 0)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "model.patch_size %d does not divide data.img_size %d", cfg->patch_size,
                       cfg->img_size);
    if (cfg->dim % cfg->heads != 0)
        return vt_fail(err, VT_ERR_ARGUMENT, "model.heads %d does not divide model.dim %d",
                       cfg->heads, cfg->dim);
    if (!pe_find(cfg->pe.type))
        return vt_fail(err, VT_ERR_ARGUMENT, "pe.type: unknown encoding '%s' (expected one of %s)",
                       cfg->pe.type, pe_names());
    if (cfg->num_classes < 2)
        return vt_fail(err, VT_ERR_ARGUMENT, "need at least 2 classes, got %d",
                       cfg->num_classes);
    if (!(cfg->drop_path >= 0.0f && cfg->drop_path < 1.0f))
        return vt_fail(err, VT_ERR_ARGUMENT, "model.drop_path must be in [0, 1), got %g",
                       (double)cfg->drop_path);
    if (!(cfg->layer_scale_init >= 0.0f) || !isfinite(cfg->layer_scale_init))
        return vt_fail(err, VT_ERR_ARGUMENT, "model.layer_scale must be >= 0, got %g",
                       (double)cfg->layer_scale_init);
    return VT_OK;
}

/* Shorthands for the parameter table below. */
#define SHAPE(...) (const int64_t[]){__VA_ARGS__}, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

static void add_norm(TensorList *l, int *w, int *b, int64_t D, const char *prefix, int block)
{
    /* Norm weights and biases are 1-D: no weight decay (DESIGN §3). */
    if (block >= 0) {
        *w = tensor_list_add(l, SHAPE(D), VT_TENSOR_NO_DECAY, INIT_ONES, 0, "blocks.%d.%s.weight", block, prefix);
        *b = tensor_list_add(l, SHAPE(D), VT_TENSOR_NO_DECAY, INIT_ZEROS, 0, "blocks.%d.%s.bias", block, prefix);
    } else {
        *w = tensor_list_add(l, SHAPE(D), VT_TENSOR_NO_DECAY, INIT_ONES, 0, "%s.weight", prefix);
        *b = tensor_list_add(l, SHAPE(D), VT_TENSOR_NO_DECAY, INIT_ZEROS, 0, "%s.bias", prefix);
    }
}

static void add_linear(TensorList *l, int *w, int *b, int64_t out, int64_t in, int block,
                       const char *prefix)
{
    /* timm's init_weights_vit_timm: trunc_normal(std .02) weights, zero biases. */
    *w = tensor_list_add(l, SHAPE(out, in), 0, INIT_TRUNC_NORMAL, 0.02f, "blocks.%d.%s.weight", block, prefix);
    *b = tensor_list_add(l, SHAPE(out), VT_TENSOR_NO_DECAY, INIT_ZEROS, 0, "blocks.%d.%s.bias", block, prefix);
}

static void add_block(Vit *m, int i)
{
    const VitConfig *c = &m->cfg;
    TensorList *l = &m->param_list;
    VitBlockParams *p = &m->blocks[i];
    add_norm(l, &p->norm1_w, &p->norm1_b, c->dim, "norm1", i);
    add_linear(l, &p->qkv_w, &p->qkv_b, 3 * (int64_t)c->dim, c->dim, i, "attn.qkv");
    add_linear(l, &p->proj_w, &p->proj_b, c->dim, c->dim, i, "attn.proj");
    p->ls1 = p->ls2 = -1;
    if (c->layer_scale_init > 0.0f)
        p->ls1 = tensor_list_add(l, SHAPE(c->dim), VT_TENSOR_NO_DECAY, INIT_CONST,
                                 c->layer_scale_init, "blocks.%d.ls1.gamma", i);
    add_norm(l, &p->norm2_w, &p->norm2_b, c->dim, "norm2", i);
    add_linear(l, &p->fc1_w, &p->fc1_b, c->mlp_dim, c->dim, i, "mlp.fc1");
    add_linear(l, &p->fc2_w, &p->fc2_b, c->dim, c->mlp_dim, i, "mlp.fc2");
    if (c->layer_scale_init > 0.0f)
        p->ls2 = tensor_list_add(l, SHAPE(c->dim), VT_TENSOR_NO_DECAY, INIT_CONST,
                                 c->layer_scale_init, "blocks.%d.ls2.gamma", i);
}

/* Registers every parameter in timm's order and naming; the encoding's
 * come after cls_token, where timm keeps pos_embed. */
VtCode vit_build_params(Vit *m, VtError *err)
{
    const VitConfig *c = &m->cfg;
    TensorList *l = &m->param_list;
    const int64_t D = c->dim, C = c->channels, P = c->patch_size;
    tensor_list_init(l);
    /* The patch conv keeps PyTorch's default init, as timm does. */
    m->patch_w = tensor_list_add(l, SHAPE(D, C, P, P), 0, INIT_UNIFORM_FAN, 0, "patch_embed.proj.weight");
    m->patch_b = tensor_list_add(l, SHAPE(D), VT_TENSOR_NO_DECAY, INIT_UNIFORM_FAN,
                                 (float)(C * P * P), "patch_embed.proj.bias");
    m->cls_token = tensor_list_add(l, SHAPE(1, 1, D), VT_TENSOR_NO_DECAY, INIT_NORMAL, 1e-6f, "cls_token");
    const PeGeometry geo = {.depth = c->depth, .heads = c->heads, .head_dim = c->dim / c->heads,
                            .grid_h = m->grid, .grid_w = m->grid, .grid_h0 = m->grid0,
                            .grid_w0 = m->grid0};
    VtCode code = pe_create(&m->pe, &c->pe, &geo, l, err);
    if (code)
        return code;
    m->pos_embed = m->pe.kind->additive ? m->pe.param[0] : -1;
    m->rotation = pe_rotation(&m->pe);
    for (int i = 0; i < c->depth; i++)
        add_block(m, i);
    m->norm_w = tensor_list_add(l, SHAPE(D), VT_TENSOR_NO_DECAY, INIT_ONES, 0, "norm.weight");
    m->norm_b = tensor_list_add(l, SHAPE(D), VT_TENSOR_NO_DECAY, INIT_ZEROS, 0, "norm.bias");
    m->head_w = tensor_list_add(l, SHAPE(c->num_classes, D), 0, INIT_TRUNC_NORMAL, 0.02f, "head.weight");
    m->head_b = tensor_list_add(l, SHAPE(c->num_classes), VT_TENSOR_NO_DECAY, INIT_ZEROS, 0, "head.bias");
    return VT_OK;
}

static void init_tensor(float *x, const TensorSpec *s, Rng *rng)
{
    /* For INIT_UNIFORM_FAN the fan-in is the product of the trailing dims, or
     * init_value where set (a bias takes its weight's fan-in). */
    double fan_in = s->init_value > 0.0f ? s->init_value : (double)s->numel / (double)s->shape[0];
    for (size_t i = 0; i < s->numel; i++) {
        switch (s->init) {
        case INIT_ZEROS: x[i] = 0.0f; break;
        case INIT_ONES: x[i] = 1.0f; break;
        case INIT_CONST: x[i] = s->init_value; break;
        case INIT_TRUNC_NORMAL: x[i] = (float)rng_trunc_normal(rng, s->init_value); break;
        case INIT_NORMAL: x[i] = (float)(s->init_value * rng_normal(rng)); break;
        case INIT_UNIFORM_FAN:
            x[i] = (float)((2.0 * rng_uniform_double(rng) - 1.0) / sqrt(fan_in));
            break;
        }
    }
}

/* FNV-1a: a stable 64-bit key from a tensor's name. */
static uint64_t name_key(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 0x100000001b3ULL;
    return h;
}

void vit_init_params(Vit *m, uint64_t seed)
{
    /* One stream per tensor, keyed by its name: adding a tensor or an
     * encoding never changes another tensor's init. */
    for (int t = 0; t < m->param_list.count; t++) {
        const TensorSpec *spec = &m->param_list.specs[t];
        Rng rng = rng_stream(seed, RNG_INIT, name_key(spec->name), 0);
        init_tensor(arena_tensor(&m->params, t), spec, &rng);
    }
    if (m->pe.kind->init)
        m->pe.kind->init(&m->pe, m->params.data, seed);
}
