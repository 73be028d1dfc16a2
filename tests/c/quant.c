/* The quantizer through the C ABI: ONNX linear quantization, casts, spec-based and 4-bit
   quantization, observers and metrics; every failure leaves the outputs untouched. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "check.h"

static void test_quantize_linear(void) {
    /* x / 0.5: ties 0.5 -> 0 (even), 1.5 -> 2, -2.5 -> -2; 1000 saturates; -0.0 -> zero point. */
    const float x[7] = {0.25f, 0.75f, -1.25f, 1000.0f, -1000.0f, -0.0f, 1.0f};
    int8_t y[7];
    uint8_t u[7];
    float back[7];
    CHECK_OK(greenai_quantize_linear_i8(x, 7, 0.5f, 1, y));
    const int8_t expected[7] = {1, 3, -1, 127, -128, 1, 3};
    CHECK(memcmp(y, expected, sizeof y) == 0);
    CHECK_OK(greenai_quantize_linear_u8(x, 7, 0.5f, 128, u));
    const uint8_t expected_u[7] = {128, 130, 126, 255, 0, 128, 130};
    CHECK(memcmp(u, expected_u, sizeof u) == 0);
    CHECK_OK(greenai_dequantize_linear_i8(y, 7, 0.5f, 1, back));
    CHECK(back[0] == 0.0f && back[1] == 1.0f && back[2] == -1.0f && back[3] == 63.0f);
    CHECK_OK(greenai_dequantize_linear_u8(u, 7, 0.5f, 128, back));
    CHECK(back[4] == -64.0f && back[6] == 1.0f);

    /* Errors: NaN (nothing written), bad scales, NULL; an empty buffer may be NULL. */
    const float with_nan[3] = {1.0f, NAN, 2.0f};
    int8_t untouched[3] = {9, 9, 9};
    CHECK_STATUS(greenai_quantize_linear_i8(with_nan, 3, 1.0f, 0, untouched), GREENAI_ERR_NON_FINITE);
    CHECK(strstr(greenai_last_error_message(), "index 1") != NULL);
    CHECK(untouched[0] == 9 && untouched[2] == 9);
    CHECK_STATUS(greenai_quantize_linear_i8(x, 3, 0.0f, 0, untouched), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_quantize_linear_i8(x, 3, -1.0f, 0, untouched), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_quantize_linear_i8(x, 3, INFINITY, 0, untouched), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_quantize_linear_i8(x, 3, 1e-40f, 0, untouched), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_dequantize_linear_u8(u, 3, NAN, 0, back), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(untouched[0] == 9 && untouched[1] == 9 && untouched[2] == 9);
    CHECK_STATUS(greenai_quantize_linear_i8(NULL, 3, 1.0f, 0, untouched), GREENAI_ERR_NULL_POINTER);
    CHECK_OK(greenai_quantize_linear_i8(NULL, 0, 1.0f, 0, NULL));
}

static void test_per_axis_and_dynamic(void) {
    /* shape [2, 3], axis 1: column c uses scales[c], zero_points[c]. */
    const float x[6] = {1.0f, 1.0f, 1.0f, -2.0f, 0.25f, 5.0f};
    const size_t shape[2] = {2, 3};
    const float scales[3] = {1.0f, 0.5f, 0.25f};
    const int8_t zps[3] = {0, 10, -100};
    int8_t y[6];
    CHECK_OK(greenai_quantize_per_axis_i8(x, shape, 2, 1, scales, zps, y));
    const int8_t expected[6] = {1, 12, -96, -2, 10, -80};
    CHECK(memcmp(y, expected, sizeof y) == 0);
    int8_t untouched[6] = {7, 7, 7, 7, 7, 7};
    CHECK_STATUS(greenai_quantize_per_axis_i8(x, shape, 2, 2, scales, zps, untouched), GREENAI_ERR_INVALID_ARGUMENT);
    const float bad_scales[3] = {1.0f, 0.0f, 1.0f};
    CHECK_STATUS(greenai_quantize_per_axis_i8(x, shape, 2, 1, bad_scales, zps, untouched),
                 GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(untouched[0] == 7 && untouched[5] == 7);

    /* DynamicQuantizeLinear: range [-1, 1.55] -> scale 0.01, zero point 100. */
    const float d[4] = {-1.0f, 0.0f, 1.55f, 0.5f};
    uint8_t q[4];
    float scale = 0.0f;
    uint8_t zp = 0;
    CHECK_OK(greenai_dynamic_quantize_u8(d, 4, q, &scale, &zp));
    CHECK(scale == (1.55f - -1.0f) / 255.0f);
    CHECK(zp == 100);
    CHECK(q[0] == 0 && q[1] == 100 && q[2] == 255 && q[3] == 150);
    const float d_nan[2] = {0.0f, NAN};
    scale = 42.0f;
    zp = 42;
    CHECK_STATUS(greenai_dynamic_quantize_u8(d_nan, 2, q, &scale, &zp), GREENAI_ERR_NON_FINITE);
    CHECK(scale == 42.0f && zp == 42);
    CHECK_STATUS(greenai_dynamic_quantize_u8(d, 4, q, NULL, &zp), GREENAI_ERR_NULL_POINTER);
}

static void test_casts(void) {
    const float x[4] = {1.0f, -2.0f, 65520.0f, 1.0f + 1.0f / 2048.0f};
    uint16_t h[4], b[4];
    float back[4];
    CHECK_OK(greenai_f32_to_f16(x, 4, h));
    CHECK(h[0] == 0x3C00 && h[1] == 0xC000 && h[2] == 0x7C00 && h[3] == 0x3C00); /* tie to even */
    CHECK_OK(greenai_f16_to_f32(h, 4, back));
    CHECK(back[0] == 1.0f && back[1] == -2.0f && isinf(back[2]));
    CHECK_OK(greenai_f32_to_bf16(x, 4, b));
    CHECK(b[0] == 0x3F80 && b[1] == 0xC000);
    CHECK_OK(greenai_bf16_to_f32(b, 4, back));
    CHECK(back[0] == 1.0f && back[1] == -2.0f);
    CHECK_STATUS(greenai_f32_to_f16(x, 4, NULL), GREENAI_ERR_NULL_POINTER);
}

static void test_spec_block_4bit(void) {
    greenai_quant_spec spec;
    CHECK_OK(greenai_quant_spec_preset(GREENAI_PRESET_ONNX_WEIGHT_I4_BLOCK32, &spec));
    CHECK(spec.qtype == GREENAI_DTYPE_I4 && spec.granularity == GREENAI_GRANULARITY_PER_BLOCK);
    /* Blocks of 2 along axis 1 of [2, 3]: the last block of each row is short. */
    spec.axis = 1;
    spec.block_size = 2;
    const size_t shape[2] = {2, 3};
    const float x[6] = {7.0f, -3.5f, 1.0f, 0.0f, 0.0f, -14.0f};
    size_t count = 0;
    CHECK_OK(greenai_quant_param_count(&spec, shape, 2, &count));
    CHECK(count == 4);
    float scales[4];
    int32_t zps[4];
    CHECK_OK(greenai_quant_choose_params(&spec, x, shape, 2, scales, zps, 4));
    /* ONNX Runtime symmetric int4 on [-8, 7]: scale = 2 max|x| / 15, zero point round(-0.5) = 0. */
    CHECK(scales[0] == (float)(14.0 / 15.0) && scales[1] == (float)(2.0 / 15.0));
    CHECK(scales[2] == 1.0f && scales[3] == (float)(28.0 / 15.0));
    CHECK(zps[0] == 0 && zps[3] == 0);
    uint8_t packed[3];
    CHECK_OK(greenai_quantize(&spec, x, shape, 2, scales, zps, 4, packed, sizeof packed));
    /* values 7.5 -> 8 saturates to 7, -3.75 -> -4, 7.5 -> 7; 0, 0, -7.5 -> -8 */
    CHECK(packed[0] == (uint8_t)(0x7 | (0xC << 4)));
    CHECK(packed[1] == (uint8_t)(0x7 | (0x0 << 4)));
    CHECK(packed[2] == (uint8_t)(0x0 | (0x8 << 4)));
    float back[6];
    CHECK_OK(greenai_dequantize(&spec, packed, sizeof packed, shape, 2, scales, zps, 4, back));
    CHECK(back[0] == 7.0f * scales[0] && back[1] == -4.0f * scales[0] && back[5] == -8.0f * scales[3]);

    /* Errors: block 0, axis out of range, wrong byte count, zero point outside int4, bad enum. */
    uint8_t untouched[3] = {0xAA, 0xAA, 0xAA};
    greenai_quant_spec bad = spec;
    bad.block_size = 0;
    CHECK_STATUS(greenai_quantize(&bad, x, shape, 2, scales, zps, 4, untouched, 3), GREENAI_ERR_INVALID_ARGUMENT);
    bad = spec;
    bad.axis = 2;
    CHECK_STATUS(greenai_quantize(&bad, x, shape, 2, scales, zps, 4, untouched, 3), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_quantize(&spec, x, shape, 2, scales, zps, 4, untouched, 2), GREENAI_ERR_SHAPE_MISMATCH);
    CHECK_STATUS(greenai_quantize(&spec, x, shape, 2, scales, zps, 3, untouched, 3), GREENAI_ERR_SHAPE_MISMATCH);
    const int32_t bad_zps[4] = {0, 8, 0, 0};
    CHECK_STATUS(greenai_quantize(&spec, x, shape, 2, scales, bad_zps, 4, untouched, 3),
                 GREENAI_ERR_INVALID_ARGUMENT);
    const float x_nan[6] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, NAN};
    CHECK_STATUS(greenai_quantize(&spec, x_nan, shape, 2, scales, zps, 4, untouched, 3), GREENAI_ERR_NON_FINITE);
    bad = spec;
    bad.rounding = 9;
    CHECK_STATUS(greenai_quantize(&bad, x, shape, 2, scales, zps, 4, untouched, 3), GREENAI_ERR_INVALID_ARGUMENT);
    bad = spec;
    bad.qtype = GREENAI_DTYPE_F32;
    CHECK_STATUS(greenai_quantize(&bad, x, shape, 2, scales, zps, 4, untouched, 3), GREENAI_ERR_UNSUPPORTED_DTYPE);
    CHECK(untouched[0] == 0xAA && untouched[1] == 0xAA && untouched[2] == 0xAA);
    CHECK_STATUS(greenai_quant_spec_preset(99, &spec), GREENAI_ERR_INVALID_ARGUMENT);
}

/* One call from floats to per-channel int8 and its parameters (PyTorch's per-channel preset):
   scale max|row| / 127.5 in f32, zero point 0, x * (1 / scale) rounded half to even. */
static void test_quantize_min_max(void) {
    greenai_quant_spec spec;
    CHECK_OK(greenai_quant_spec_preset(GREENAI_PRESET_PYTORCH_WEIGHT_I8_PER_CHANNEL, &spec));
    const size_t shape[2] = {2, 3};
    const float x[6] = {0.5f, -1.0f, 0.25f, 2.0f, 0.0f, -0.5f};
    float scales[2];
    int32_t zps[2];
    int8_t y[6];
    CHECK_OK(greenai_quantize_min_max(&spec, x, shape, 2, scales, zps, 2, y, sizeof y));
    CHECK(scales[0] == 1.0f / 127.5f && scales[1] == 2.0f / 127.5f);
    CHECK(zps[0] == 0 && zps[1] == 0);
    /* x * RN(1 / scale): 0.5 -> 63.75 -> 64; -1 -> -127.49999 -> -127 (numpy float32 gives the same) */
    const int8_t expected[6] = {64, -127, 32, 127, 0, -32};
    CHECK(memcmp(y, expected, sizeof y) == 0);
    /* Wrong counts and NaN leave every output untouched. */
    int8_t untouched[6] = {5, 5, 5, 5, 5, 5};
    float s_untouched[2] = {9.0f, 9.0f};
    CHECK_STATUS(greenai_quantize_min_max(&spec, x, shape, 2, s_untouched, zps, 1, untouched, 6), GREENAI_ERR_SHAPE_MISMATCH);
    CHECK_STATUS(greenai_quantize_min_max(&spec, x, shape, 2, s_untouched, zps, 2, untouched, 5), GREENAI_ERR_SHAPE_MISMATCH);
    const float x_nan[6] = {0.0f, NAN, 0.0f, 0.0f, 0.0f, 0.0f};
    CHECK_STATUS(greenai_quantize_min_max(&spec, x_nan, shape, 2, s_untouched, zps, 2, untouched, 6), GREENAI_ERR_NON_FINITE);
    CHECK_STATUS(greenai_quantize_min_max(NULL, x, shape, 2, s_untouched, zps, 2, untouched, 6), GREENAI_ERR_NULL_POINTER);
    CHECK(untouched[0] == 5 && untouched[5] == 5 && s_untouched[0] == 9.0f && s_untouched[1] == 9.0f);
}

static void test_observer_and_metrics(void) {
    greenai_quant_spec spec;
    CHECK_OK(greenai_quant_spec_preset(GREENAI_PRESET_ONNX_ACTIVATION_U8, &spec));
    greenai_observer *obs = NULL;
    CHECK_OK(greenai_observer_new(GREENAI_CALIBRATION_MIN_MAX, 0.0, &spec, &obs));
    const float a[3] = {-1.0f, 0.0f, 2.0f};
    const float b[2] = {3.0f, 0.5f};
    const size_t sa[1] = {3}, sb[1] = {2};
    float scale = -1.0f;
    int32_t zp = -1;
    CHECK_STATUS(greenai_observer_params(obs, &scale, &zp, 1), GREENAI_ERR_INVALID_ARGUMENT); /* no data */
    CHECK_OK(greenai_observer_feed(obs, a, sa, 1));
    CHECK_OK(greenai_observer_feed(obs, b, sb, 1));
    const float c[2] = {NAN, 100.0f};
    CHECK_STATUS(greenai_observer_feed(obs, c, sb, 1), GREENAI_ERR_NON_FINITE);
    CHECK_OK(greenai_observer_params(obs, &scale, &zp, 1));
    /* [-1, 3]: scale = 4 / 255 (computed in double), zero point round(255 / 4) = 64. */
    CHECK(scale == (float)(4.0 / 255.0));
    CHECK(zp == 64);
    float two_scales[2] = {-1.0f, -1.0f};
    int32_t two_zps[2] = {-1, -1};
    CHECK_STATUS(greenai_observer_params(obs, two_scales, two_zps, 2), GREENAI_ERR_SHAPE_MISMATCH);
    CHECK(two_scales[0] == -1.0f && two_zps[0] == -1);
    CHECK_STATUS(greenai_observer_params(obs, NULL, &zp, 1), GREENAI_ERR_NULL_POINTER);
    greenai_observer_free(obs);
    greenai_observer_free(NULL);
    CHECK_STATUS(greenai_observer_new(GREENAI_CALIBRATION_PERCENTILE, 120.0, &spec, &obs), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_observer_new(77, 0.0, &spec, &obs), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_OK(greenai_observer_new(GREENAI_CALIBRATION_ENTROPY, 0.0, &spec, &obs));
    CHECK_OK(greenai_observer_feed(obs, a, sa, 1));
    CHECK_OK(greenai_observer_params(obs, &scale, &zp, 1));
    CHECK(scale > 0.0f);
    greenai_observer_free(obs);

    const float r[4] = {1.0f, -2.0f, 3.0f, 0.0f};
    const float q[4] = {1.0f, -2.5f, 2.0f, 0.5f};
    greenai_error_metrics m;
    CHECK_OK(greenai_quant_error_metrics(r, q, 4, &m));
    CHECK(m.mse == 0.375 && m.max_abs == 1.0);
    CHECK(fabs(m.sqnr_db - 10.0 * log10(14.0 / 1.5)) < 1e-12);
    greenai_error_metrics per[2];
    const size_t shape[2] = {2, 2};
    CHECK_OK(greenai_quant_error_metrics_per_axis(r, q, shape, 2, 0, per, 2));
    CHECK(per[0].mse == 0.125 && per[1].mse == 0.625);
    CHECK_STATUS(greenai_quant_error_metrics_per_axis(r, q, shape, 2, 0, per, 3), GREENAI_ERR_SHAPE_MISMATCH);
    CHECK_STATUS(greenai_quant_error_metrics(r, q, 4, NULL), GREENAI_ERR_NULL_POINTER);
}

int main(void) {
    test_quantize_linear();
    test_per_axis_and_dynamic();
    test_casts();
    test_spec_block_4bit();
    test_quantize_min_max();
    test_observer_and_metrics();
    CHECK_DONE();
}
