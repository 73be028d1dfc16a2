/* FLOPs, model handle and energy through the C ABI. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "check.h"

static void test_conv_and_linear_and_attention(void) {
    /* 3x3 conv, 3->8 channels, stride 1, pad 1 on 1x3x8x8: MACs = 8*8*8*3*9. */
    greenai_conv2d_params conv = {3, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1};
    size_t shape[4] = {0, 0, 0, 0};
    greenai_cost cost;
    CHECK_OK(greenai_flops_conv2d(&conv, 1, 8, 8, shape, &cost));
    CHECK(shape[0] == 1 && shape[1] == 8 && shape[2] == 8 && shape[3] == 8);
    CHECK(cost.macs == 8u * 8 * 8 * 3 * 9);
    CHECK(cost.params == 8u * 3 * 9 + 8);
    CHECK(cost.flops == 2 * cost.macs + 8u * 8 * 8);

    greenai_linear_params lin = {16, 4, 0};
    CHECK_OK(greenai_flops_linear(&lin, 10, &cost));
    CHECK(cost.macs == 10u * 16 * 4 && cost.params == 64 && cost.flops == 2 * cost.macs);

    /* GQA: 4 query heads, 2 kv heads, d 8, E 32, Lq 5, Lk 7, no bias. */
    greenai_attention_params att = {32, 4, 2, 8, 0, 0};
    CHECK_OK(greenai_flops_attention(&att, 1, 5, 7, &cost));
    CHECK(cost.macs == 5u * 32 * 32 + 2u * 7 * 32 * 16 + 5u * 32 * 32 + 2u * 4 * 5 * 7 * 8);

    /* Bad input: kernel larger than the padded input, names the problem, writes nothing. */
    greenai_conv2d_params big = {3, 8, 11, 11, 1, 1, 0, 0, 1, 1, 1, 1};
    greenai_cost untouched = cost;
    CHECK_STATUS(greenai_flops_conv2d(&big, 1, 8, 8, shape, &cost), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "larger than padded input") != NULL);
    CHECK(cost.macs == untouched.macs);
    greenai_conv2d_params grouped = {3, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1};
    CHECK_STATUS(greenai_flops_conv2d(&grouped, 1, 8, 8, shape, &cost), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "groups") != NULL);
    CHECK_STATUS(greenai_flops_linear(NULL, 1, &cost), GREENAI_ERR_NULL_POINTER);
}

static void test_model_handle(void) {
    const size_t input[4] = {1, 3, 8, 8};
    greenai_flops_model *m = NULL;
    CHECK_OK(greenai_flops_model_new(input, 4, &m));
    greenai_conv2d_params conv = {3, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0};
    greenai_conv2d_params conv2 = {4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0};
    CHECK_OK(greenai_flops_model_add_conv2d(m, "conv1", &conv, NULL));
    CHECK_OK(greenai_flops_model_add_op(m, "relu", GREENAI_OP_RELU, 0, NULL, NULL));
    CHECK_OK(greenai_flops_model_add_conv2d(m, "conv2", &conv2, NULL));
    CHECK_OK(greenai_flops_model_add_op(m, "residual", GREENAI_OP_ADD, 0, "relu", "conv2"));
    CHECK_OK(greenai_flops_model_add_op(m, "pool", GREENAI_OP_GLOBAL_AVGPOOL2D, 0, NULL, NULL));
    CHECK_OK(greenai_flops_model_add_op(m, "flatten", GREENAI_OP_FLATTEN, 1, NULL, NULL));
    greenai_linear_params fc = {4, 10, 1};
    CHECK_OK(greenai_flops_model_add_linear(m, "fc", &fc, NULL));
    /* A layer that does not chain is refused by name. */
    greenai_linear_params wrong = {7, 10, 1};
    CHECK_STATUS(greenai_flops_model_add_linear(m, "fc_bad", &wrong, NULL), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "fc_bad") != NULL);
    CHECK_STATUS(greenai_flops_model_add_op(m, "x", GREENAI_OP_ADD, 0, "nope", "fc"), GREENAI_ERR_INVALID_ARGUMENT);

    size_t shape[4], ndim = 0;
    CHECK_OK(greenai_flops_model_output_shape(m, shape, 4, &ndim));
    CHECK(ndim == 2 && shape[0] == 1 && shape[1] == 10);
    CHECK_STATUS(greenai_flops_model_output_shape(m, shape, 1, &ndim), GREENAI_ERR_BUFFER_TOO_SMALL);

    greenai_cost dense, sparse;
    CHECK_OK(greenai_flops_model_cost(m, NULL, &dense));
    CHECK(dense.macs == 64u * 4 * 27 + 64u * 4 * 36 + 40);
    greenai_compression c24 = {GREENAI_PRECISION_INT8, 0.0, 2, 4, 0};
    CHECK_OK(greenai_flops_model_cost(m, &c24, &sparse));
    CHECK(sparse.macs * 2 == dense.macs);
    CHECK(sparse.weight_bytes < dense.weight_bytes / 4);
    greenai_compression bad = {GREENAI_PRECISION_F32, 1.5, 0, 0, 0};
    CHECK_STATUS(greenai_flops_model_cost(m, &bad, &sparse), GREENAI_ERR_INVALID_ARGUMENT);

    double j_dense = 0, j_sparse = 0, g = 0, wind = 0;
    CHECK_OK(greenai_energy_joules(&dense, GREENAI_PRECISION_F32, GREENAI_PRECISION_F32, &j_dense));
    CHECK_OK(greenai_energy_joules(&sparse, GREENAI_PRECISION_INT8, GREENAI_PRECISION_INT8, &j_sparse));
    CHECK(j_dense > 0 && j_sparse < j_dense);
    CHECK_OK(greenai_energy_co2e_grams(3.6e6, 475.0, 1.0, &g));
    CHECK(fabs(g - 475.0) < 1e-9);
    CHECK_STATUS(greenai_energy_co2e_grams(1.0, 475.0, 0.5, &g), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_OK(greenai_grid_intensity(GREENAI_GRID_WIND, &wind));
    CHECK(wind == 26.0);
    greenai_flops_model_free(m);
    greenai_flops_model_free(NULL);
}

static void test_zoo(void) {
    greenai_flops_model *m = NULL;
    greenai_cost cost;
    CHECK_OK(greenai_flops_zoo("resnet50", 1, 0, &m));
    CHECK_OK(greenai_flops_model_cost(m, NULL, &cost));
    CHECK(cost.params == 25557032u);
    greenai_flops_model_free(m);
    m = NULL;
    CHECK_STATUS(greenai_flops_zoo("resnet19", 1, 0, &m), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL);
}

int main(void) {
    test_conv_and_linear_and_attention();
    test_model_handle();
    test_zoo();
    CHECK_DONE();
}
