/*
 * rng.c - SplitMix64 streams keyed by (seed, purpose, a, b); see rng.h.
 */
#include "vitrain/rng.h"

#include "vitrain/common.h"

#include <math.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static const uint64_t GOLDEN_GAMMA = 0x9e3779b97f4a7c15ULL;

Rng rng_stream(uint64_t seed, RngPurpose purpose, uint64_t a, uint64_t b)
{
    /* Hash the key words in sequence, so (a, b) and (b, a) differ. */
    uint64_t h = mix64(seed + GOLDEN_GAMMA);
    h = mix64(h ^ ((uint64_t)purpose + GOLDEN_GAMMA));
    h = mix64(h ^ (a + 2 * GOLDEN_GAMMA));
    h = mix64(h ^ (b + 3 * GOLDEN_GAMMA));
    return (Rng){.state = h};
}

uint64_t rng_next_u64(Rng *rng)
{
    rng->state += GOLDEN_GAMMA;
    return mix64(rng->state);
}

float rng_uniform(Rng *rng)
{
    return (float)(rng_next_u64(rng) >> 40) * (1.0f / 16777216.0f);
}

double rng_uniform_double(Rng *rng)
{
    return (double)(rng_next_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
}

uint32_t rng_below(Rng *rng, uint32_t n)
{
    VT_ASSERT(n > 0);
    /* Lemire's multiply-shift with rejection of the biased low range. */
    uint64_t m = (uint64_t)(uint32_t)rng_next_u64(rng) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)rng_next_u64(rng) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double rng_normal(Rng *rng)
{
    double u1 = 1.0 - rng_uniform_double(rng); /* (0, 1]: log is finite */
    double u2 = rng_uniform_double(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double rng_trunc_normal(Rng *rng, double std)
{
    for (;;) {
        const double x = std * rng_normal(rng);
        if (x >= -2.0 && x <= 2.0)
            return x;
    }
}

/* log of a Gamma(a, 1) draw, a > 0: in logs, so that for tiny a, where
 * the draw itself underflows to 0, the ratio of two still comes out. */
static double rng_log_gamma(Rng *rng, double a)
{
    if (a < 1.0) { /* Gamma(a) = Gamma(a + 1) U^(1/a) */
        const double u = 1.0 - rng_uniform_double(rng); /* (0, 1] */
        return rng_log_gamma(rng, a + 1.0) + log(u) / a;
    }
    const double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = rng_normal(rng);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        const double u = 1.0 - rng_uniform_double(rng);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return log(d) + log(v);
    }
}

double rng_beta_symmetric(Rng *rng, double a)
{
    const double lx = rng_log_gamma(rng, a), ly = rng_log_gamma(rng, a);
    return 1.0 / (1.0 + exp(ly - lx)); /* x / (x + y) */
}

void rng_shuffle(Rng *rng, int *values, int count)
{
    for (int i = count - 1; i > 0; i--) {
        int j = (int)rng_below(rng, (uint32_t)i + 1);
        int t = values[i];
        values[i] = values[j];
        values[j] = t;
    }
}
