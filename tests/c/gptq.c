/* GPTQ through the C ABI: defaults, the Hessian accumulator (batched, merged), quantization and its
   reconstruction rule, and failures that leave every output untouched. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "check.h"

enum { ROWS = 4, COLS = 12, SAMPLES = 40, GROUP = 5, GROUPS = 3 };

/* A small deterministic generator (LCG) of values in [-1, 1). */
static float next_value(uint32_t *state) {
    *state = *state * 1664525u + 1013904223u;
    return (float)((*state >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

int main(void) {
    greenai_gptq_options opts;
    memset(&opts, 0xAB, sizeof opts);
    greenai_gptq_options_default(&opts);
    CHECK(opts.bits == 4 && opts.group_size == 128 && !opts.symmetric && !opts.act_order);
    CHECK(!opts.static_groups && opts.damp == 0.01f && opts.block_size == 128);
    greenai_gptq_options_default(NULL); /* NULL-safe */

    uint32_t state = 7;
    float w[ROWS * COLS], x[SAMPLES * COLS];
    for (int i = 0; i < ROWS * COLS; i++) w[i] = next_value(&state);
    for (int i = 0; i < SAMPLES * COLS; i++) x[i] = next_value(&state);
    for (int t = 0; t < SAMPLES; t++) x[t * COLS + 3] = 0.0f; /* input 3 is dead */

    /* One accumulator over everything equals two merged ones over halves (up to f32 rounding). */
    greenai_gptq_hessian *all = NULL, *a = NULL, *b = NULL;
    CHECK_OK(greenai_gptq_hessian_new(COLS, &all));
    CHECK_OK(greenai_gptq_hessian_new(COLS, &a));
    CHECK_OK(greenai_gptq_hessian_new(COLS, &b));
    CHECK_OK(greenai_gptq_hessian_add(all, x, SAMPLES));
    CHECK_OK(greenai_gptq_hessian_add(a, x, 15));
    CHECK_OK(greenai_gptq_hessian_add(b, x + 15 * COLS, SAMPLES - 15));
    CHECK_OK(greenai_gptq_hessian_merge(a, b));
    CHECK_STATUS(greenai_gptq_hessian_merge(a, a), GREENAI_ERR_INVALID_ARGUMENT);
    float h[COLS * COLS], h2[COLS * COLS];
    CHECK_OK(greenai_gptq_hessian_finish(all, h, COLS * COLS));
    CHECK_OK(greenai_gptq_hessian_finish(a, h2, COLS * COLS));
    for (int i = 0; i < COLS * COLS; i++) CHECK(fabsf(h[i] - h2[i]) <= 1e-6f);
    CHECK(h[3 * COLS + 3] == 0.0f && h[3 * COLS + 1] == 0.0f);
    float h_short[4] = {9, 9, 9, 9};
    CHECK_STATUS(greenai_gptq_hessian_finish(all, h_short, 4), GREENAI_ERR_BUFFER_TOO_SMALL);
    CHECK(h_short[0] == 9.0f);
    greenai_gptq_hessian *empty = NULL, *other_width = NULL;
    CHECK_OK(greenai_gptq_hessian_new(COLS, &empty));
    CHECK_STATUS(greenai_gptq_hessian_finish(empty, h2, COLS * COLS), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_OK(greenai_gptq_hessian_new(COLS + 1, &other_width));
    CHECK_STATUS(greenai_gptq_hessian_merge(a, other_width), GREENAI_ERR_SHAPE_MISMATCH);
    CHECK_STATUS(greenai_gptq_hessian_add(NULL, x, 1), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gptq_hessian_add(all, NULL, 1), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gptq_hessian_new(COLS, NULL), GREENAI_ERR_NULL_POINTER);
    greenai_gptq_hessian_free(all);
    greenai_gptq_hessian_free(a);
    greenai_gptq_hessian_free(b);
    greenai_gptq_hessian_free(empty);
    greenai_gptq_hessian_free(other_width);
    greenai_gptq_hessian_free(NULL);

    /* 3-bit, groups of 5 (the last group has 2 columns), act order. */
    opts.bits = 3;
    opts.group_size = GROUP;
    opts.act_order = true;
    uint8_t q[ROWS * COLS];
    float scales[ROWS * GROUPS], zeros[ROWS * GROUPS];
    int32_t g_idx[COLS];
    CHECK_OK(greenai_gptq_quantize(w, ROWS, COLS, h, &opts, q, scales, zeros, g_idx));
    int per_group[GROUPS] = {0, 0, 0};
    for (int c = 0; c < COLS; c++) {
        CHECK(g_idx[c] >= 0 && g_idx[c] < GROUPS);
        if (g_idx[c] >= 0 && g_idx[c] < GROUPS) per_group[g_idx[c]]++;
    }
    CHECK(per_group[0] == 5 && per_group[1] == 5 && per_group[2] == 2);
    double err = 0.0, ref = 0.0;
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < COLS; c++) {
            CHECK(q[r * COLS + c] <= 7);
            int g = r * GROUPS + g_idx[c];
            float w_hat = scales[g] * ((float)q[r * COLS + c] - zeros[g]);
            if (c == 3) CHECK(w_hat == 0.0f); /* dead input: weight zeroed */
            else err += (w[r * COLS + c] - w_hat) * (w[r * COLS + c] - w_hat);
            ref += w[r * COLS + c] * w[r * COLS + c];
        }
    }
    CHECK(err < 0.1 * ref);

    /* Static groups: g_idx is the contiguous grouping even with act order. */
    opts.static_groups = true;
    CHECK_OK(greenai_gptq_quantize(w, ROWS, COLS, h, &opts, q, scales, zeros, g_idx));
    for (int c = 0; c < COLS; c++) CHECK(g_idx[c] == c / GROUP);

    /* Failures write nothing. */
    uint8_t q_untouched[ROWS * COLS];
    memset(q_untouched, 0xEE, sizeof q_untouched);
    float s_untouched[ROWS * GROUPS];
    for (int i = 0; i < ROWS * GROUPS; i++) s_untouched[i] = -7.0f;
    opts.bits = 9;
    CHECK_STATUS(greenai_gptq_quantize(w, ROWS, COLS, h, &opts, q_untouched, s_untouched, zeros, g_idx),
                 GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "bits") != NULL);
    opts.bits = 4;
    float h_bad[COLS * COLS];
    memcpy(h_bad, h, sizeof h_bad);
    h_bad[5] = NAN;
    CHECK_STATUS(greenai_gptq_quantize(w, ROWS, COLS, h_bad, &opts, q_untouched, s_untouched, zeros, g_idx),
                 GREENAI_ERR_NON_FINITE);
    /* Not positive definite: a negative diagonal entry, no damping. */
    memcpy(h_bad, h, sizeof h_bad);
    h_bad[0] = -1.0f;
    opts.damp = 0.0f;
    CHECK_STATUS(greenai_gptq_quantize(w, ROWS, COLS, h_bad, &opts, q_untouched, s_untouched, zeros, g_idx),
                 GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "not positive definite") != NULL);
    CHECK_STATUS(greenai_gptq_quantize(w, ROWS, COLS, h, NULL, q_untouched, s_untouched, zeros, g_idx),
                 GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gptq_quantize(w, ROWS, COLS, NULL, &opts, q_untouched, s_untouched, zeros, g_idx),
                 GREENAI_ERR_NULL_POINTER);
    for (int i = 0; i < ROWS * COLS; i++) CHECK(q_untouched[i] == 0xEE);
    for (int i = 0; i < ROWS * GROUPS; i++) CHECK(s_untouched[i] == -7.0f);
    CHECK_DONE();
}
