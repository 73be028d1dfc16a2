/* ggml's block formats through the C ABI: row sizes, quantize / dequantize of every type, a Q8_0
 * and a Q4_0 reference computed here from ggml's formulas, and every bad input. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "check.h"

static const uint32_t TYPES[] = {2, 3, 6, 7, 8, 9, 12, 14, 15};
static const size_t BLOCK[] = {32, 32, 32, 32, 32, 32, 256, 256, 256};
static const size_t BYTES[] = {18, 20, 22, 24, 34, 36, 144, 210, 292}; /* ggml's sizeof(block_*) */
#define NTYPES (sizeof(TYPES) / sizeof(TYPES[0]))

enum { ROWS = 3, COLS = 512 };
static float x[ROWS * COLS], y[ROWS * COLS];
static uint8_t q[ROWS * (COLS / 32) * 36 + 64];

static uint32_t rng_state = 2024u;
static float next_uniform(void) { /* in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 8388608.0f - 1.0f;
}

/* IEEE half bits of a float that is exactly representable as a normal half (the test's scales). */
static uint16_t half_bits(float f) {
    int e;
    float m = frexpf(f, &e); /* f = m * 2^e, 0.5 <= |m| < 1 */
    uint16_t sign = f < 0 ? 0x8000u : 0u;
    uint32_t mant = (uint32_t)(fabsf(m) * 2048.0f) - 1024u; /* 10 fraction bits */
    return (uint16_t)(sign | (uint16_t)((e - 1 + 15) << 10) | mant);
}

static void test_row_sizes(void) {
    size_t t, bytes = 77;
    for (t = 0; t < NTYPES; t++) {
        CHECK_OK(greenai_ggml_row_size(TYPES[t], 4 * BLOCK[t], &bytes));
        CHECK(bytes == 4 * BYTES[t]);
        CHECK_OK(greenai_ggml_row_size(TYPES[t], 0, &bytes));
        CHECK(bytes == 0);
        bytes = 77;
        CHECK_STATUS(greenai_ggml_row_size(TYPES[t], BLOCK[t] + 1, &bytes), GREENAI_ERR_INVALID_ARGUMENT);
        CHECK(strstr(greenai_last_error_message(), "multiple of") != NULL);
        CHECK(bytes == 77);
    }
    CHECK_STATUS(greenai_ggml_row_size(0, 32, &bytes), GREENAI_ERR_INVALID_ARGUMENT); /* F32 */
    CHECK_STATUS(greenai_ggml_row_size(13, 256, &bytes), GREENAI_ERR_INVALID_ARGUMENT); /* Q5_K */
    CHECK_STATUS(greenai_ggml_row_size(UINT32_MAX, 256, &bytes), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "Q4_0 = 2") != NULL);
    CHECK(bytes == 77);
    CHECK_STATUS(greenai_ggml_row_size(8, 32, NULL), GREENAI_ERR_NULL_POINTER);
}

/* Every type quantizes and dequantizes with a small error; out bytes past the matrix stay. */
static void test_round_trip_every_type(void) {
    size_t t, i;
    for (i = 0; i < ROWS * COLS; i++) x[i] = next_uniform();
    for (t = 0; t < NTYPES; t++) {
        size_t row = 0, need;
        float err = 0.0f;
        CHECK_OK(greenai_ggml_row_size(TYPES[t], COLS, &row));
        need = ROWS * row;
        memset(q, 0xA5, sizeof q);
        CHECK_OK(greenai_ggml_quantize(TYPES[t], x, ROWS, COLS, q, sizeof q));
        for (i = need; i < sizeof q; i++) CHECK(q[i] == 0xA5);
        CHECK_OK(greenai_ggml_dequantize(TYPES[t], q, need, ROWS, COLS, y));
        for (i = 0; i < ROWS * COLS; i++) err = fmaxf(err, fabsf(x[i] - y[i]));
        /* 4-bit types: a step of 2/15 at most; 8-bit: 1/127. */
        CHECK(err < (BYTES[t] <= 24 || TYPES[t] == 12 ? 0.15f : 0.02f));
    }
}

/* Q8_0 and Q4_0 recomputed here: scales that are exact in f16, so the bytes are known. */
static void test_known_bytes(void) {
    float row[32];
    uint8_t blk[34];
    size_t j;
    for (j = 0; j < 32; j++) row[j] = (float)j - 16.0f; /* amax 16 at j = 0 */
    CHECK_OK(greenai_ggml_quantize(8, row, 1, 32, blk, 34));
    {
        /* d = 16 / 127 rounded to f16; q = roundf(x * (1 / d)), d as f32. */
        const float d = 16.0f / 127.0f, id = 1.0f / d;
        for (j = 0; j < 32; j++) CHECK((int8_t)blk[2 + j] == (int8_t)roundf(row[j] * id));
        CHECK(blk[2] == (uint8_t)(int8_t)-127);
    }
    for (j = 0; j < 32; j++) row[j] = j == 5 ? -8.0f : (float)(j % 15) - 7.0f; /* max -8: d = 1 */
    CHECK_OK(greenai_ggml_quantize(2, row, 1, 32, blk, 18));
    CHECK(blk[0] == (half_bits(1.0f) & 0xff) && blk[1] == (half_bits(1.0f) >> 8));
    for (j = 0; j < 16; j++) {
        /* q = x + 8 (x / d + 8.5 truncated), low nibble element j, high nibble j + 16 */
        const unsigned lo = (unsigned)(row[j] + 8.0f), hi = (unsigned)(row[j + 16] + 8.0f);
        CHECK(blk[2 + j] == (uint8_t)(lo | (hi << 4)));
    }
    CHECK_OK(greenai_ggml_dequantize(2, blk, 18, 1, 32, y));
    for (j = 0; j < 32; j++) CHECK(y[j] == row[j]);
}

static void test_bad_input(void) {
    size_t row = 0, need, i;
    for (i = 0; i < ROWS * COLS; i++) x[i] = next_uniform();
    CHECK_OK(greenai_ggml_row_size(8, COLS, &row));
    need = ROWS * row;
    memset(q, 0xA5, sizeof q);
    /* Quantize: type, cols, lengths, NULLs, non-finite, overflow; nothing written. */
    CHECK_STATUS(greenai_ggml_quantize(1, x, ROWS, COLS, q, sizeof q), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_ggml_quantize(8, x, ROWS, COLS - 1, q, sizeof q), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "multiple of 32") != NULL);
    CHECK_STATUS(greenai_ggml_quantize(12, x, 1, 96, q, sizeof q), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "multiple of 256") != NULL);
    CHECK_STATUS(greenai_ggml_quantize(8, x, ROWS, COLS, q, need - 1), GREENAI_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(greenai_ggml_quantize(8, NULL, ROWS, COLS, q, sizeof q), GREENAI_ERR_NULL_POINTER);
    CHECK(strstr(greenai_last_error_message(), "`x`") != NULL);
    CHECK_STATUS(greenai_ggml_quantize(8, x, ROWS, COLS, NULL, sizeof q), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_ggml_quantize(8, x, SIZE_MAX / 2, COLS, q, sizeof q), GREENAI_ERR_OVERFLOW);
    x[COLS + 7] = NAN;
    CHECK_STATUS(greenai_ggml_quantize(8, x, ROWS, COLS, q, sizeof q), GREENAI_ERR_NON_FINITE);
    CHECK(strstr(greenai_last_error_message(), "index 519") != NULL);
    x[COLS + 7] = -INFINITY;
    CHECK_STATUS(greenai_ggml_quantize(14, x, ROWS, COLS, q, sizeof q), GREENAI_ERR_NON_FINITE);
    x[COLS + 7] = 0.25f;
    for (i = 0; i < sizeof q; i++) CHECK(q[i] == 0xA5);
    /* Empty matrices with NULL buffers are fine. */
    CHECK_OK(greenai_ggml_quantize(8, NULL, 0, COLS, NULL, 0));
    CHECK_OK(greenai_ggml_quantize(8, NULL, ROWS, 0, NULL, 0));
    CHECK_OK(greenai_ggml_dequantize(8, NULL, 0, 0, COLS, NULL));

    /* Dequantize: type, cols, lengths, NULLs, a non-finite scale; nothing written. */
    CHECK_OK(greenai_ggml_quantize(8, x, ROWS, COLS, q, need));
    for (i = 0; i < ROWS * COLS; i++) y[i] = 3.0f;
    CHECK_STATUS(greenai_ggml_dequantize(16, q, need, ROWS, COLS, y), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_ggml_dequantize(8, q, need, ROWS, COLS + 1, y), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_ggml_dequantize(8, q, need - 1, ROWS, COLS, y), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_ggml_dequantize(8, q, need + 1, ROWS, COLS, y), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "exactly") != NULL);
    CHECK_STATUS(greenai_ggml_dequantize(8, NULL, need, ROWS, COLS, y), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_ggml_dequantize(8, q, need, ROWS, COLS, NULL), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_ggml_dequantize(8, q, need, SIZE_MAX / 4, 64, y), GREENAI_ERR_OVERFLOW);
    /* Block 17 = row 1, block 1: its f16 scale set to +inf (0x7C00), then NaN (0x7E00). */
    q[17 * 34 + 0] = 0x00;
    q[17 * 34 + 1] = 0x7C;
    CHECK_STATUS(greenai_ggml_dequantize(8, q, need, ROWS, COLS, y), GREENAI_ERR_FORMAT);
    CHECK(strstr(greenai_last_error_message(), "q8_0 block 17 (row 1, block 1") != NULL);
    q[17 * 34 + 1] = 0x7E;
    CHECK_STATUS(greenai_ggml_dequantize(8, q, need, ROWS, COLS, y), GREENAI_ERR_FORMAT);
    for (i = 0; i < ROWS * COLS; i++) CHECK(y[i] == 3.0f);
}

/* GEMV: each weight type against a double-precision sum of the dequantized weights and the
 * dequantized activations (x quantized to Q8_0 or Q8_K through the ABI); bad input writes nothing. */
static void test_gemv(void) {
    static const uint32_t GEMV_TYPES[] = {2, 8, 12, 14};
    static float wf[ROWS * COLS], xq[COLS], out[ROWS + 1];
    static uint8_t act[(COLS / 256) * 292];
    size_t t, r, c, i;
    for (i = 0; i < ROWS * COLS; i++) x[i] = next_uniform();
    for (t = 0; t < sizeof GEMV_TYPES / sizeof GEMV_TYPES[0]; t++) {
        const uint32_t ty = GEMV_TYPES[t], at = (ty == 12 || ty == 14) ? 15u : 8u;
        size_t row = 0, arow = 0;
        CHECK_OK(greenai_ggml_row_size(ty, COLS, &row));
        CHECK_OK(greenai_ggml_quantize(ty, x, ROWS, COLS, q, sizeof q));
        CHECK_OK(greenai_ggml_dequantize(ty, q, ROWS * row, ROWS, COLS, wf));
        CHECK_OK(greenai_ggml_row_size(at, COLS, &arow));
        CHECK_OK(greenai_ggml_quantize(at, y, 1, COLS, act, sizeof act));
        CHECK_OK(greenai_ggml_dequantize(at, act, arow, 1, COLS, xq));
        out[ROWS] = 9.0f;
        CHECK_OK(greenai_ggml_gemv(ty, q, ROWS * row, ROWS, COLS, y, out));
        for (r = 0; r < ROWS; r++) {
            double want = 0.0, mag = 0.0;
            for (c = 0; c < COLS; c++) {
                want += (double)wf[r * COLS + c] * (double)xq[c];
                mag += fabs((double)wf[r * COLS + c] * (double)xq[c]);
            }
            CHECK(fabs((double)out[r] - want) <= 1e-4 * mag + 1e-6);
        }
        CHECK(out[ROWS] == 9.0f);
    }
    /* Bad input: nothing written. */
    {
        size_t row = 0;
        CHECK_OK(greenai_ggml_row_size(2, COLS, &row));
        CHECK_OK(greenai_ggml_quantize(2, x, ROWS, COLS, q, sizeof q));
        for (i = 0; i < ROWS; i++) out[i] = 3.0f;
        CHECK_STATUS(greenai_ggml_gemv(3, q, sizeof q, ROWS, COLS, y, out), GREENAI_ERR_INVALID_ARGUMENT);
        CHECK(strstr(greenai_last_error_message(), "Q4_0 = 2, Q8_0 = 8") != NULL);
        CHECK_STATUS(greenai_ggml_gemv(0, q, sizeof q, ROWS, COLS, y, out), GREENAI_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(greenai_ggml_gemv(15, q, sizeof q, ROWS, COLS, y, out), GREENAI_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(greenai_ggml_gemv(2, q, sizeof q, ROWS, 48, y, out), GREENAI_ERR_INVALID_ARGUMENT);
        CHECK(strstr(greenai_last_error_message(), "multiple of 32") != NULL);
        CHECK_STATUS(greenai_ggml_gemv(12, q, sizeof q, 1, 128, y, out), GREENAI_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(greenai_ggml_gemv(2, q, ROWS * row - 1, ROWS, COLS, y, out), GREENAI_ERR_BUFFER_TOO_SMALL);
        CHECK_STATUS(greenai_ggml_gemv(2, NULL, ROWS * row, ROWS, COLS, y, out), GREENAI_ERR_NULL_POINTER);
        CHECK_STATUS(greenai_ggml_gemv(2, q, ROWS * row, ROWS, COLS, NULL, out), GREENAI_ERR_NULL_POINTER);
        CHECK_STATUS(greenai_ggml_gemv(2, q, ROWS * row, ROWS, COLS, y, NULL), GREENAI_ERR_NULL_POINTER);
        CHECK_STATUS(greenai_ggml_gemv(2, q, ROWS * row, SIZE_MAX / 2, COLS, y, out), GREENAI_ERR_OVERFLOW);
        y[7] = NAN;
        CHECK_STATUS(greenai_ggml_gemv(2, q, ROWS * row, ROWS, COLS, y, out), GREENAI_ERR_NON_FINITE);
        y[7] = 0.5f;
        for (i = 0; i < ROWS; i++) CHECK(out[i] == 3.0f);
        /* Empty products: zero rows, and zero columns (y is zeroed). */
        CHECK_OK(greenai_ggml_gemv(2, NULL, 0, 0, COLS, y, NULL));
        CHECK_OK(greenai_ggml_gemv(2, NULL, 0, ROWS, 0, NULL, out));
        for (i = 0; i < ROWS; i++) CHECK(out[i] == 0.0f);
    }
}

int main(void) {
    test_row_sizes();
    test_round_trip_every_type();
    test_known_bytes();
    test_bad_input();
    test_gemv();
    CHECK_DONE();
}
