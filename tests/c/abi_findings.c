/* Issue 20, finding 12: C ABI calls a hostile caller can make. Each must return a status (or, for
 * greenai_status_str, a fixed string), never crash, wrap around, or report success with NaN/inf. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "check.h"

static void test_status_str_of_any_integer(void) {
    const int unknown[] = {-1, 12, 999, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *name = greenai_status_str(unknown[i]);
        CHECK(name != NULL && strcmp(name, "GREENAI_UNKNOWN_STATUS") == 0);
    }
    CHECK(strcmp(greenai_status_str(GREENAI_OK), "GREENAI_OK") == 0);
    CHECK(strcmp(greenai_status_str(GREENAI_ERR_PANIC), "GREENAI_ERR_PANIC") == 0);
}

static void test_conv2d_sizes_that_wrap_around(void) {
    /* 2 * pad wraps to 0 in size_t: a wrapping computation would return OK with a plausible shape. */
    greenai_conv2d_params conv = {3, 8, 3, 3, 1, 1, SIZE_MAX / 2 + 1, 1, 1, 1, 1, 1};
    size_t shape[4] = {7, 7, 7, 7};
    greenai_cost cost;
    memset(&cost, 0, sizeof cost);
    CHECK_STATUS(greenai_flops_conv2d(&conv, 1, 8, 8, shape, &cost), GREENAI_ERR_OVERFLOW);
    CHECK(shape[0] == 7 && cost.macs == 0);
    /* input + 2 * pad overflows. */
    greenai_conv2d_params near = {3, 8, 3, 3, 1, 1, SIZE_MAX / 4, 1, 1, 1, 1, 1};
    CHECK_STATUS(greenai_flops_conv2d(&near, 1, SIZE_MAX / 2, 8, shape, &cost), GREENAI_ERR_OVERFLOW);
    /* dilation * (kernel - 1) + 1 overflows. */
    greenai_conv2d_params dilated = {3, 8, 3, 3, 1, 1, 1, 1, SIZE_MAX / 2 + 1, 1, 1, 1};
    CHECK_STATUS(greenai_flops_conv2d(&dilated, 1, 8, 8, shape, &cost), GREENAI_ERR_OVERFLOW);
    /* The same through the model handle. */
    const size_t input[4] = {1, 3, 8, 8};
    greenai_flops_model *m = NULL;
    CHECK_OK(greenai_flops_model_new(input, 4, &m));
    CHECK_STATUS(greenai_flops_model_add_conv2d(m, "conv", &conv, NULL), GREENAI_ERR_OVERFLOW);
    CHECK_STATUS(greenai_flops_model_add_conv2d(m, "conv", &dilated, NULL), GREENAI_ERR_OVERFLOW);
    greenai_flops_model_free(m);
}

static void test_losses_that_overflow_are_errors(void) {
    enum { B = 2, C = 3 };
    const float s[B * C] = {1.0f, -2.0f, 0.5f, 0.25f, 3.0f, -1.0f};
    const float t[B * C] = {0.5f, -1.0f, 2.0f, 1.0f, -3.0f, 0.0f};
    const int32_t y[B] = {2, 1};
    const float huge[B * C] = {3e38f, -3e38f, 0.0f, -3e38f, 3e38f, 1.0f};
    float loss = 42.0f, grad[B * C];
    for (int i = 0; i < B * C; i++) grad[i] = 42.0f;
    /* A temperature that turns logits into infinities: the gradient is NaN. */
    CHECK_STATUS(greenai_kd_loss(s, t, y, B, C, 1e-45f, 0.5f, &loss, grad), GREENAI_ERR_NON_FINITE);
    /* Finite logits whose differences overflow. */
    CHECK_STATUS(greenai_kd_loss(huge, t, y, B, C, 1.0f, 0.5f, &loss, grad), GREENAI_ERR_NON_FINITE);
    CHECK_STATUS(greenai_kd_loss_seq(huge, t, y, NULL, 1, B, C, 1.0f, 0.5f, &loss, grad), GREENAI_ERR_NON_FINITE);
    CHECK_STATUS(greenai_mse_loss(huge, t, B * C, &loss, grad), GREENAI_ERR_NON_FINITE);
    CHECK_STATUS(greenai_mse_loss(huge, t, B * C, &loss, NULL), GREENAI_ERR_NON_FINITE);
    /* Nothing was written by any failed call. */
    CHECK(loss == 42.0f);
    for (int i = 0; i < B * C; i++) CHECK(grad[i] == 42.0f);
    /* Where the result is finite it is returned: the loss alone at T = 1e-45 (T^2 KL tends to 0), a
     * huge teacher (its softmax is one-hot), and sane input. */
    CHECK_OK(greenai_kd_loss(s, t, y, B, C, 1e-45f, 0.5f, &loss, NULL));
    CHECK(isfinite(loss));
    CHECK_OK(greenai_kd_loss(s, huge, y, B, C, 1.0f, 1.0f, &loss, grad));
    CHECK(isfinite(loss));
    for (int i = 0; i < B * C; i++) CHECK(isfinite(grad[i]));
    CHECK_OK(greenai_kd_loss(s, t, y, B, C, 2.0f, 0.5f, &loss, grad));
    CHECK(isfinite(loss) && loss > 0.0f);
}

int main(void) {
    test_status_str_of_any_integer();
    test_conv2d_sizes_that_wrap_around();
    test_losses_that_overflow_are_errors();
    CHECK_DONE();
}
