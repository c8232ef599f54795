/*
 * loader.c - batches cut from the cache by one background thread (see
 * data.h, DESIGN §3).
 *
 * The worker fills batch k (k = 0, 1, ... from start_step) into slot
 * k % nslots of a ring of nslots = prefetch + 1 preallocated Batch slots:
 * `prefetch` batches prepared ahead plus the one the caller holds, which
 * stays valid until its next loader_next. Three counters under one mutex
 * tell the whole state: batches below `filled` are ready, below `taken`
 * handed out, below `released` free to overwrite; the worker waits on
 * `freed`, the caller on `ready`. What batch k contains is a pure function of (seed, step), so
 * timing never shows in the data.
 *
 * The worker is a plain pthread that never enters OpenMP: the trainer's
 * OpenMP team belongs to the main thread, and a second team would
 * oversubscribe the cores. Batches are prepared one sample at a time.
 */
#include "vitrain/data.h"

#include "augment.h"

#include "vitrain/rng.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct Loader {
    const Dataset *ds;
    LoaderOptions o;
    AugmentParams aug;
    int64_t bpe;              /* batches per epoch */
    int shards;               /* >= 1 */
    int local;                /* samples per delivered batch: batch_size / shards */
    int eval_begin, eval_end; /* eval: this shard's dataset indices */
    int64_t end;              /* batches in the stream (INT64_MAX for training) */
    int nslots;
    Batch *slots;             /* (nslots) */
    uint8_t *scratch;         /* worker only */
    int *order;               /* (count) worker only: sample order of order_epoch */
    int64_t order_epoch;
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t ready, freed;
    int64_t filled, released, taken; /* guarded by mu */
    bool stop;                       /* guarded by mu */
};

int loader_eval_side(int img_size, float crop_pct)
{
    return augment_eval_side(img_size, crop_pct);
}

/* ---- the worker ---------------------------------------------------------- */

static void epoch_order(Loader *ld, int64_t epoch)
{
    if (ld->order_epoch == epoch)
        return;
    for (int i = 0; i < ld->ds->count; i++)
        ld->order[i] = i;
    Rng rng = rng_stream(ld->o.seed, RNG_DATA_ORDER, (uint64_t)epoch, 0);
    rng_shuffle(&rng, ld->order, ld->ds->count);
    ld->order_epoch = epoch;
}

static void put_sample(Loader *ld, Batch *b, int i, int idx, int64_t epoch)
{
    const Dataset *ds = ld->ds;
    const size_t len = (size_t)ld->aug.C * ld->aug.S * ld->aug.S;
    Rng rng = rng_stream(ld->o.seed, RNG_AUGMENT, (uint64_t)epoch, (uint64_t)idx);
    /* Fails only if the resampler cannot allocate its work memory. */
    bool ok = augment_sample(b->images + (size_t)i * len, ds->pixels + ds->offset[idx],
                             ds->height[idx], ds->width[idx], &ld->aug, &rng, ld->scratch);
    VT_ASSERT(ok);
    b->labels[i] = ds->labels[idx];
    b->indices[i] = idx;
}

/* Batch k of the stream into b: this shard's part of the global batch. */
static void fill(Loader *ld, Batch *b, int64_t k)
{
    const int B = ld->o.batch_size, local = ld->local;
    if (ld->o.train) {
        const int64_t step = ld->o.start_step + k, epoch = step / ld->bpe;
        b->first = (ld->shards > 1 ? ld->o.shard : 0) * local;
        const int64_t first = (step % ld->bpe) * B + b->first;
        epoch_order(ld, epoch);
        b->size = local;
        b->step = step;
        b->epoch = epoch;
        for (int i = 0; i < local; i++)
            put_sample(ld, b, i, ld->order[first + i], epoch);
        const MixDraw d = mixup_draw(&ld->o.mixup, ld->o.seed, step, ld->aug.S);
        mixup_apply(&d, b, ld->aug.C, ld->aug.S);
    } else {
        const int64_t first = ld->eval_begin + k * local;
        const int size = (int)VT_MIN((int64_t)local, ld->eval_end - first);
        b->size = size;
        b->first = 0;
        b->step = k;
        b->epoch = 0;
        for (int i = 0; i < size; i++)
            put_sample(ld, b, i, (int)(first + i), 0);
        mixup_apply(&(MixDraw){.lambda = 1.0f}, b, ld->aug.C, ld->aug.S); /* unmixed */
    }
}

/* Waits until slot of batch k is free; false when asked to stop. */
static bool wait_for_slot(Loader *ld, int64_t k)
{
    pthread_mutex_lock(&ld->mu);
    while (!ld->stop && k - ld->released >= ld->nslots)
        pthread_cond_wait(&ld->freed, &ld->mu);
    bool go = !ld->stop;
    pthread_mutex_unlock(&ld->mu);
    return go;
}

static void *worker(void *arg)
{
    Loader *ld = arg;
    for (int64_t k = 0; k < ld->end && wait_for_slot(ld, k); k++) {
        fill(ld, &ld->slots[k % ld->nslots], k);
        pthread_mutex_lock(&ld->mu);
        ld->filled = k + 1;
        pthread_cond_signal(&ld->ready);
        pthread_mutex_unlock(&ld->mu);
    }
    return NULL;
}

/* ---- the caller's side ---------------------------------------------------- */

bool loader_next(Loader *ld, Batch *batch)
{
    pthread_mutex_lock(&ld->mu);
    ld->released = ld->taken; /* the batch handed out last time is free */
    pthread_cond_signal(&ld->freed);
    bool more = ld->taken < ld->end;
    if (more) {
        while (ld->filled <= ld->taken)
            pthread_cond_wait(&ld->ready, &ld->mu);
        *batch = ld->slots[ld->taken % ld->nslots];
        ld->taken++;
    }
    pthread_mutex_unlock(&ld->mu);
    return more;
}

int64_t loader_batches_per_epoch(const Loader *ld)
{
    return ld->bpe;
}

/* ---- creation --------------------------------------------------------------- */

static bool in_range(float v, float lo, float hi)
{
    return v >= lo && v <= hi; /* false for NaN */
}

static VtCode check_geometry(const LoaderOptions *o, int C, VtError *err)
{
    if (o->batch_size < 1 || o->img_size < 1 || o->prefetch < 1)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "loader: batch_size %d, img_size %d and prefetch %d must be >= 1",
                       o->batch_size, o->img_size, o->prefetch);
    if (o->shards > 1 && (o->shard < 0 || o->shard >= o->shards))
        return vt_fail(err, VT_ERR_ARGUMENT, "loader: shard %d is not in [0, %d)", o->shard,
                       o->shards);
    if (o->shards > 1 && o->batch_size % o->shards != 0)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "train.batch_size %d is not a multiple of the %d ranks: every rank "
                       "takes an equal part of each global batch",
                       o->batch_size, o->shards);
    if (!(o->crop_pct > 0.0f && o->crop_pct <= 1.0f))
        return vt_fail(err, VT_ERR_ARGUMENT, "loader: crop_pct %g must be in (0, 1]",
                       (double)o->crop_pct);
    for (int c = 0; c < C; c++)
        if (!isfinite(o->mean[c]) || !isfinite(o->std[c]) || o->std[c] == 0.0f)
            return vt_fail(err, VT_ERR_ARGUMENT,
                           "loader: mean %g / std %g of channel %d must be finite, std nonzero",
                           (double)o->mean[c], (double)o->std[c], c);
    return VT_OK;
}

static VtCode check_train(const LoaderOptions *o, const Dataset *ds, VtError *err)
{
    if (o->start_step < 0)
        return vt_fail(err, VT_ERR_ARGUMENT, "loader: start_step %lld is negative",
                       (long long)o->start_step);
    if (o->random_resized_crop &&
        !(o->scale[0] > 0.0f && o->scale[0] <= o->scale[1] && o->ratio[0] > 0.0f &&
          o->ratio[0] <= o->ratio[1] && isfinite(o->scale[1]) && isfinite(o->ratio[1])))
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "loader: random-resized-crop needs 0 < scale %g <= %g and "
                       "0 < ratio %g <= %g",
                       (double)o->scale[0], (double)o->scale[1], (double)o->ratio[0],
                       (double)o->ratio[1]);
    if (o->pad < 0 || o->pad > o->img_size || !in_range(o->hflip, 0.0f, 1.0f))
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "loader: pad %d must be in [0, img_size], hflip %g in [0, 1]", o->pad,
                       (double)o->hflip);
    const MixupOptions *m = &o->mixup;
    if (!(m->mixup_alpha >= 0.0f && m->cutmix_alpha >= 0.0f && isfinite(m->mixup_alpha) &&
          isfinite(m->cutmix_alpha) && in_range(m->prob, 0.0f, 1.0f) &&
          in_range(m->switch_prob, 0.0f, 1.0f)))
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "loader: mixup alpha %g and cutmix alpha %g must be >= 0, their "
                       "probabilities %g and %g in [0, 1]",
                       (double)m->mixup_alpha, (double)m->cutmix_alpha, (double)m->prob,
                       (double)m->switch_prob);
    if (ds->count < o->batch_size)
        return vt_fail(err, VT_ERR_DATA,
                       "loader: %d training images are fewer than one batch of %d", ds->count,
                       o->batch_size);
    return VT_OK;
}

static VtCode alloc_scratch(Loader *ld, VtError *err)
{
    size_t most = 0;
    for (int i = 0; i < ld->ds->count; i++) {
        size_t n = augment_scratch_bytes(&ld->aug, ld->ds->height[i], ld->ds->width[i]);
        if (n == SIZE_MAX)
            return vt_fail(err, VT_ERR_DATA, "%s: aspect ratio too extreme to resize to %d",
                           ld->ds->paths[i], ld->aug.eval_side);
        most = VT_MAX(most, n);
    }
    ld->scratch = vt_xmalloc(most);
    return VT_OK;
}

static void alloc_slots(Loader *ld)
{
    const size_t B = (size_t)ld->local;
    const size_t len = (size_t)ld->aug.C * ld->aug.S * ld->aug.S;
    ld->nslots = ld->o.prefetch + 1;
    ld->slots = vt_xcalloc((size_t)ld->nslots, sizeof *ld->slots);
    for (int s = 0; s < ld->nslots; s++) {
        ld->slots[s].images = vt_xmalloc(B * len * sizeof(float));
        ld->slots[s].labels = vt_xmalloc(B * sizeof(int));
        ld->slots[s].mix_labels = vt_xmalloc(B * sizeof(int));
        ld->slots[s].indices = vt_xmalloc(B * sizeof(int));
    }
}

static void free_loader(Loader *ld)
{
    for (int s = 0; ld->slots && s < ld->nslots; s++) {
        free(ld->slots[s].images);
        free(ld->slots[s].labels);
        free(ld->slots[s].mix_labels);
        free(ld->slots[s].indices);
    }
    free(ld->slots);
    free(ld->scratch);
    free(ld->order);
    pthread_cond_destroy(&ld->ready);
    pthread_cond_destroy(&ld->freed);
    pthread_mutex_destroy(&ld->mu);
    free(ld);
}

static Loader *new_loader(const Dataset *ds, const LoaderOptions *o)
{
    Loader *ld = vt_xcalloc(1, sizeof *ld);
    ld->ds = ds;
    ld->o = *o;
    augment_params_init(&ld->aug, o->img_size, ds->channels, o->train, o->random_resized_crop,
                        o->scale, o->ratio, o->pad, o->hflip, o->crop_pct, o->mean, o->std);
    const int64_t B = o->batch_size;
    ld->shards = VT_MAX(o->shards, 1);
    ld->local = o->batch_size / ld->shards;
    const int shard = ld->shards > 1 ? o->shard : 0;
    ld->eval_begin = (int)((int64_t)ds->count * shard / ld->shards);
    ld->eval_end = (int)((int64_t)ds->count * (shard + 1) / ld->shards);
    const int64_t part = ld->eval_end - ld->eval_begin;
    ld->bpe = o->train ? ds->count / B : (part + ld->local - 1) / ld->local;
    ld->end = o->train ? INT64_MAX : ld->bpe;
    ld->order_epoch = -1;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->ready, NULL);
    pthread_cond_init(&ld->freed, NULL);
    return ld;
}

VtCode loader_create(Loader **out, const Dataset *ds, const LoaderOptions *opts, VtError *err)
{
    *out = NULL;
    VtCode code = check_geometry(opts, ds->channels, err);
    if (!code && opts->train)
        code = check_train(opts, ds, err);
    if (!code && ds->count < 1)
        code = vt_fail(err, VT_ERR_DATA, "loader: the data set is empty");
    if (code)
        return code;
    Loader *ld = new_loader(ds, opts);
    code = alloc_scratch(ld, err);
    if (code) {
        free_loader(ld);
        return code;
    }
    alloc_slots(ld);
    if (opts->train)
        ld->order = vt_xmalloc((size_t)ds->count * sizeof *ld->order);
    int rc = pthread_create(&ld->thread, NULL, worker, ld);
    if (rc) {
        free_loader(ld);
        return vt_fail(err, VT_ERR_NOMEM, "loader: cannot start its thread: %s", strerror(rc));
    }
    ld->running = true;
    *out = ld;
    return VT_OK;
}

void loader_destroy(Loader *ld)
{
    if (!ld)
        return;
    if (ld->running) {
        pthread_mutex_lock(&ld->mu);
        ld->stop = true;
        pthread_cond_broadcast(&ld->freed);
        pthread_mutex_unlock(&ld->mu);
        pthread_join(ld->thread, NULL);
    }
    free_loader(ld);
}
