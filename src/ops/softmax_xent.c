/*
 * softmax_xent.c - softmax cross-entropy with label smoothing (DESIGN §3).
 */
#include "vitrain/ops.h"

#include <math.h>
#include <stdbool.h>

/* Sample b's one-hot part of the target: its label's share, its mixing
 * partner's label and that one's share (0 without mixing; a partner of the
 * same class adds its share to the same entry). */
static void shares(const XentTargets *t, int b, int *partner, float *own, float *other)
{
    const bool mixed = t->mix_labels && t->lambda < 1.0f;
    *partner = mixed ? t->mix_labels[b] : t->labels[b];
    *own = mixed ? t->lambda : 1.0f;
    *other = mixed ? 1.0f - t->lambda : 0.0f;
}

double softmax_xent_forward(float *probs, float *losses, const float *logits,
                            const XentTargets *t, int B, int K)
{
    const double smoothing = t->smoothing;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *z = logits + (int64_t)b * K;
        float *p = probs + (int64_t)b * K;
        float zmax = z[0];
        for (int k = 1; k < K; k++)
            zmax = z[k] > zmax ? z[k] : zmax;
        double sum = 0.0;
        for (int k = 0; k < K; k++) {
            p[k] = expf(z[k] - zmax);
            sum += p[k];
        }
        double log_sum = log(sum);
        double logp_sum = 0.0;
        for (int k = 0; k < K; k++) {
            p[k] = (float)(p[k] / sum);
            logp_sum += (double)(z[k] - zmax) - log_sum;
        }
        int partner;
        float own, other;
        shares(t, b, &partner, &own, &other);
        const double logp_label = own * ((double)(z[t->labels[b]] - zmax) - log_sum) +
                                  other * ((double)(z[partner] - zmax) - log_sum);
        losses[b] = (float)(-(1.0 - smoothing) * logp_label - smoothing * logp_sum / K);
    }
    /* Summed in sample order by one thread: the loss is bit-reproducible. */
    double total = 0.0;
    for (int b = 0; b < B; b++)
        total += losses[b];
    return total / B;
}

void softmax_xent_backward(float *dlogits, const float *probs, const XentTargets *t, float dloss,
                           int B, int K)
{
    /* loss = mean_b -sum_k t_k log p_k with sum_k t_k = 1, so
     * dloss/dz_k = (p_k - t_k) / B. */
    const float scale = dloss / (float)B;
    const float smoothing = t->smoothing, off_target = smoothing / (float)K;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *p = probs + (int64_t)b * K;
        float *dz = dlogits + (int64_t)b * K;
        int partner;
        float own, other;
        shares(t, b, &partner, &own, &other);
        for (int k = 0; k < K; k++) {
            const float target = off_target + (k == t->labels[b] ? (1.0f - smoothing) * own : 0.0f) +
                                 (k == partner ? (1.0f - smoothing) * other : 0.0f);
            dz[k] = scale * (p[k] - target);
        }
    }
}
