/* AWQ, HQQ and SmoothQuant through the C ABI: defaults, the reconstruction rule, bad input that
   leaves every output untouched, and non-0/1 bytes in the options' bool fields. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "check.h"

enum { ROWS = 4, COLS = 12, SAMPLES = 30, GROUP = 5, GROUPS = 3 };

/* A small deterministic generator (LCG) of values in [-1, 1). */
static float next_value(uint32_t *state) {
    *state = *state * 1664525u + 1013904223u;
    return (float)((*state >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

int main(void) {
    uint32_t state = 11;
    float w[ROWS * COLS], x[SAMPLES * COLS];
    for (int i = 0; i < ROWS * COLS; i++) w[i] = next_value(&state);
    for (int i = 0; i < SAMPLES * COLS; i++) x[i] = next_value(&state);
    for (int t = 0; t < SAMPLES; t++) x[t * COLS + 2] *= 20.0f; /* an outlier channel */

    /* HQQ: defaults, then 3 bits with groups of 5 (the last has 2 columns). */
    greenai_hqq_options hqq;
    memset(&hqq, 0xAB, sizeof hqq);
    greenai_hqq_options_default(&hqq);
    CHECK(hqq.bits == 4 && hqq.group_size == 64 && hqq.lp_norm == 0.7f && hqq.beta == 10.0f);
    CHECK(hqq.kappa == 1.01f && hqq.iters == 20 && hqq.early_stop && hqq.round_zero);
    greenai_hqq_options_default(NULL);
    hqq.bits = 3;
    hqq.group_size = GROUP;
    hqq.round_zero = false;
    uint8_t q[ROWS * COLS];
    float scales[ROWS * GROUPS], zeros[ROWS * GROUPS];
    CHECK_OK(greenai_hqq_quantize(w, ROWS, COLS, &hqq, q, scales, zeros));
    double err = 0.0, norm = 0.0;
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < COLS; c++) {
            int g = r * GROUPS + c / GROUP;
            CHECK(q[r * COLS + c] <= 7);
            double d = w[r * COLS + c] - scales[g] * ((float)q[r * COLS + c] - zeros[g]);
            err += d * d;
            norm += (double)w[r * COLS + c] * w[r * COLS + c];
        }
    }
    CHECK(err < 0.02 * norm);

    /* A non-0/1 byte in a bool field reads as true. */
    greenai_hqq_options odd = hqq;
    memset(&odd.early_stop, 2, 1);
    uint8_t q2[ROWS * COLS];
    float s2[ROWS * GROUPS], z2[ROWS * GROUPS];
    CHECK_OK(greenai_hqq_quantize(w, ROWS, COLS, &odd, q2, s2, z2));
    CHECK(memcmp(q, q2, sizeof q) == 0 && memcmp(zeros, z2, sizeof zeros) == 0);

    /* Refused: bits, NaN, NULL options; nothing written. */
    memset(q2, 0x5A, sizeof q2);
    hqq.bits = 9;
    CHECK_STATUS(greenai_hqq_quantize(w, ROWS, COLS, &hqq, q2, s2, z2), GREENAI_ERR_INVALID_ARGUMENT);
    hqq.bits = 3;
    CHECK_STATUS(greenai_hqq_quantize(w, ROWS, COLS, NULL, q2, s2, z2), GREENAI_ERR_NULL_POINTER);
    float w_nan[ROWS * COLS];
    memcpy(w_nan, w, sizeof w);
    w_nan[7] = NAN;
    CHECK_STATUS(greenai_hqq_quantize(w_nan, ROWS, COLS, &hqq, q2, s2, z2), GREENAI_ERR_NON_FINITE);
    CHECK(q2[0] == 0x5A && q2[ROWS * COLS - 1] == 0x5A);

    /* AWQ: defaults, then 4 bits in groups of 5. */
    greenai_awq_options awq;
    memset(&awq, 0xAB, sizeof awq);
    greenai_awq_options_default(&awq);
    CHECK(awq.bits == 4 && awq.group_size == 128 && awq.zero_point && awq.duo_scaling && awq.clip);
    CHECK(awq.n_grid == 20 && awq.max_shrink == 0.5f && awq.clip_samples == 512);
    greenai_awq_options_default(NULL);
    awq.group_size = GROUP;
    float smooth[COLS], alpha = -1.0f;
    CHECK_OK(greenai_awq_quantize(w, ROWS, COLS, x, SAMPLES, &awq, smooth, q, scales, zeros, &alpha));
    CHECK(alpha >= 0.0f && alpha < 1.0f);
    double awq_err = 0.0;
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < COLS; c++) {
            int g = r * GROUPS + c / GROUP;
            CHECK(q[r * COLS + c] <= 15 && smooth[c] > 0.0f);
            double d = w[r * COLS + c] - scales[g] * ((float)q[r * COLS + c] - zeros[g]) / smooth[c];
            awq_err += d * d;
        }
    }
    CHECK(awq_err < 0.05 * norm);
    CHECK_OK(greenai_awq_quantize(w, ROWS, COLS, x, SAMPLES, &awq, smooth, q, scales, zeros, NULL));
    float smooth2[COLS] = {42.0f};
    CHECK_STATUS(greenai_awq_quantize(w, ROWS, COLS, x, 0, &awq, smooth2, q2, s2, z2, NULL),
                 GREENAI_ERR_INVALID_ARGUMENT);
    awq.n_grid = 0;
    CHECK_STATUS(greenai_awq_quantize(w, ROWS, COLS, x, SAMPLES, &awq, smooth2, q2, s2, z2, NULL),
                 GREENAI_ERR_INVALID_ARGUMENT);
    awq.n_grid = 20;
    CHECK_STATUS(greenai_awq_quantize(w, ROWS, COLS, NULL, SAMPLES, &awq, smooth2, q2, s2, z2, NULL),
                 GREENAI_ERR_NULL_POINTER);
    CHECK(smooth2[0] == 42.0f && q2[0] == 0x5A);

    /* SmoothQuant: statistics, scales, and the product kept after applying them. */
    float act[COLS], s[COLS];
    CHECK_OK(greenai_channel_absmax(x, SAMPLES, COLS, act));
    CHECK_OK(greenai_smoothquant_scales(act, w, ROWS, COLS, 0.5f, s));
    for (int c = 0; c < COLS; c++) {
        float wmax = 0.0f;
        for (int r = 0; r < ROWS; r++) wmax = fmaxf(wmax, fabsf(w[r * COLS + c]));
        CHECK(fabs(s[c] - sqrt((double)act[c] / wmax)) <= 1e-5 * s[c]);
    }
    CHECK_STATUS(greenai_smoothquant_scales(act, w, ROWS, COLS, 1.5f, s), GREENAI_ERR_INVALID_ARGUMENT);
    float ws[ROWS * COLS], gamma[COLS], beta[COLS];
    memcpy(ws, w, sizeof w);
    for (int c = 0; c < COLS; c++) {
        gamma[c] = 1.0f;
        beta[c] = 0.5f;
    }
    CHECK_OK(greenai_smoothquant_apply(ws, ROWS, COLS, gamma, beta, s));
    for (int c = 0; c < COLS; c++) {
        CHECK(ws[c] == w[c] * s[c] && gamma[c] == 1.0f / s[c] && beta[c] == 0.5f / s[c]);
    }
    CHECK_OK(greenai_smoothquant_apply(ws, ROWS, COLS, NULL, NULL, s));
    float bad[COLS];
    memcpy(bad, s, sizeof s);
    bad[3] = 0.0f;
    memcpy(ws, w, sizeof w);
    CHECK_STATUS(greenai_smoothquant_apply(ws, ROWS, COLS, gamma, NULL, bad), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(ws, w, sizeof w) == 0 && gamma[0] == 1.0f / s[0]);
    x[5] = INFINITY;
    CHECK_STATUS(greenai_channel_absmax(x, SAMPLES, COLS, act), GREENAI_ERR_NON_FINITE);
    CHECK_DONE();
}
