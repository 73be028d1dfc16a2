/* Distillation losses through the C ABI: values against a double-precision reference written
   here, NULL gradients, and bad input that must leave the outputs untouched. */
#include <math.h>
#include <string.h>
#include "check.h"

#define B 2
#define C 3

/* Hinton KD, batch mean, and its gradient, in double. */
static double reference(const float *s, const float *t, const int32_t *y, double temp, double alpha, double *grad) {
    double total = 0.0;
    for (int r = 0; r < B; r++) {
        const float *sr = s + r * C, *tr = t + r * C;
        double zs = 0.0, zt = 0.0, z1 = 0.0, q[C], p[C], q1[C], kl = 0.0;
        for (int i = 0; i < C; i++) {
            q[i] = exp(sr[i] / temp);
            p[i] = exp(tr[i] / temp);
            q1[i] = exp(sr[i]);
            zs += q[i];
            zt += p[i];
            z1 += q1[i];
        }
        for (int i = 0; i < C; i++) {
            q[i] /= zs;
            p[i] /= zt;
            q1[i] /= z1;
            kl += p[i] * log(p[i] / q[i]);
        }
        total += alpha * temp * temp * kl - (1.0 - alpha) * log(q1[y[r]]);
        for (int i = 0; i < C; i++) {
            grad[r * C + i] = (alpha * temp * (q[i] - p[i]) + (1.0 - alpha) * (q1[i] - (i == y[r]))) / B;
        }
    }
    return total / B;
}

int main(void) {
    const float s[B * C] = {1.0f, -0.5f, 2.0f, 0.25f, 0.0f, -1.0f};
    const float t[B * C] = {0.5f, 0.5f, 3.0f, -1.0f, 1.0f, 0.0f};
    const int32_t y[B] = {2, 1};
    float loss = -1.0f, grad[B * C];
    double want_grad[B * C];

    double want = reference(s, t, y, 2.0, 0.7, want_grad);
    CHECK_OK(greenai_kd_loss(s, t, y, B, C, 2.0f, 0.7f, &loss, grad));
    CHECK(fabs(loss - want) <= 1e-5 * fabs(want));
    for (int i = 0; i < B * C; i++) CHECK(fabs(grad[i] - want_grad[i]) <= 1e-6);

    /* grad may be NULL; labels may be NULL when alpha == 1. */
    want = reference(s, t, y, 3.0, 1.0, want_grad);
    CHECK_OK(greenai_kd_loss(s, t, NULL, B, C, 3.0f, 1.0f, &loss, NULL));
    CHECK(fabs(loss - want) <= 1e-5 * fabs(want));

    /* The sequence form with every token kept is the batch form. */
    const uint8_t keep[B] = {1, 1};
    float seq_loss = -1.0f;
    CHECK_OK(greenai_kd_loss_seq(s, t, y, keep, 1, B, C, 2.0f, 0.7f, &seq_loss, NULL));
    CHECK_OK(greenai_kd_loss(s, t, y, B, C, 2.0f, 0.7f, &loss, NULL));
    CHECK(seq_loss == loss);

    /* Bad input: a status, nothing written. */
    float sentinel_grad[B * C];
    for (int i = 0; i < B * C; i++) sentinel_grad[i] = -7.0f;
    float untouched = -7.0f;
    const int32_t bad_y[B] = {0, 3};
    float nan_s[B * C];
    memcpy(nan_s, s, sizeof nan_s);
    nan_s[5] = NAN;
    CHECK_STATUS(greenai_kd_loss(s, t, y, B, C, 0.0f, 0.5f, &untouched, sentinel_grad), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_kd_loss(s, t, y, B, C, 2.0f, 1.5f, &untouched, sentinel_grad), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_kd_loss(s, t, bad_y, B, C, 2.0f, 0.5f, &untouched, sentinel_grad), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_kd_loss(s, t, NULL, B, C, 2.0f, 0.5f, &untouched, sentinel_grad), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_kd_loss(nan_s, t, y, B, C, 2.0f, 0.5f, &untouched, sentinel_grad), GREENAI_ERR_NON_FINITE);
    CHECK_STATUS(greenai_kd_loss(s, t, y, B, C, 2.0f, 0.5f, NULL, sentinel_grad), GREENAI_ERR_NULL_POINTER);
    CHECK(untouched == -7.0f);
    for (int i = 0; i < B * C; i++) CHECK(sentinel_grad[i] == -7.0f);

    /* Feature losses. */
    CHECK_OK(greenai_mse_loss(s, t, B * C, &loss, grad));
    double mse = 0.0;
    for (int i = 0; i < B * C; i++) mse += (double)(s[i] - t[i]) * (s[i] - t[i]) / (B * C);
    CHECK(fabs(loss - mse) <= 1e-6 * mse);
    CHECK(fabs(grad[0] - 2.0 * (s[0] - t[0]) / (B * C)) <= 1e-6);

    float scaled[B * C];
    for (int i = 0; i < B * C; i++) scaled[i] = 3.0f * s[i];
    CHECK_OK(greenai_cosine_embedding_loss(s, scaled, B, C, &loss, grad));
    CHECK(fabs(loss) <= 1e-6);
    CHECK_OK(greenai_attention_transfer_loss(s, scaled, B, 1, 1, C, &loss, NULL));
    CHECK(fabs(loss) <= 1e-6);
    CHECK_STATUS(greenai_cosine_embedding_loss(nan_s, t, B, C, &untouched, sentinel_grad), GREENAI_ERR_NON_FINITE);
    CHECK_STATUS(greenai_attention_transfer_loss(s, t, B, 0, 1, C, &untouched, NULL), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(untouched == -7.0f);
    for (int i = 0; i < B * C; i++) CHECK(sentinel_grad[i] == -7.0f);
    CHECK_DONE();
}
