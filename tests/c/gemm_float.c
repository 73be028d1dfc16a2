/* Float GEMM and GEMV through the C ABI: f16/bf16 weights as uint16_t bit patterns, leading
   dimensions, prepacked weights (and their layout), the few-rows path that reads B in place,
   int8 GEMV, and bad input (nothing written). Values are small
   integers and halves, so every product is exact and the expected results are computed in double. */
#include <stdint.h>
#include <string.h>
#include "check.h"

#define M 5
#define N 19
#define K 7
#define LDA (K + 2)
#define LDB (N + 3)
#define LDC (N + 1)

/* IEEE binary16 and bfloat16 bits of v, for v an integer or half-integer with |v| < 64. */
static uint16_t f16_bits(double v) {
    uint16_t sign = v < 0 ? 0x8000 : 0;
    double a = v < 0 ? -v : v;
    int e = 0;
    if (a == 0) return sign;
    while (a >= 2) { a /= 2; e++; }
    while (a < 1) { a *= 2; e--; }
    return (uint16_t)(sign | (uint16_t)((e + 15) << 10) | (uint16_t)((a - 1) * 1024));
}
static uint16_t bf16_bits(double v) {
    float f = (float)v;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

static float a[M * LDA];
static double bv[K * LDB];
static uint16_t b16[K * LDB], bb16[K * LDB];
static float c[M * LDC];

static void fill(void) {
    for (size_t i = 0; i < M * LDA; i++) a[i] = (float)((int)(i * 7 % 11) - 5) * 0.5f;
    for (size_t i = 0; i < K * LDB; i++) {
        bv[i] = (double)((int)(i * 5 % 13) - 6);
        b16[i] = f16_bits(bv[i]);
        bb16[i] = bf16_bits(bv[i]);
    }
}

static int c_matches_product(void) {
    int ok = 1;
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double s = 0;
            for (size_t p = 0; p < K; p++) s += (double)a[i * LDA + p] * bv[p * LDB + j];
            if ((double)c[i * LDC + j] != s) ok = 0;
        }
    return ok;
}

static void test_gemm(void) {
    fill();
    CHECK_OK(greenai_gemm_f32_f16w(M, N, K, a, LDA, b16, LDB, c, LDC));
    CHECK(c_matches_product());
    memset(c, 0, sizeof c);
    CHECK_OK(greenai_gemm_f32_bf16w(M, N, K, a, LDA, bb16, LDB, c, LDC));
    CHECK(c_matches_product());

    greenai_packed_f16 *packed = NULL;
    CHECK_OK(greenai_packed_f16_new(K, N, b16, LDB, &packed));
    memset(c, 0, sizeof c);
    CHECK_OK(greenai_gemm_f32_packed_f16(M, a, LDA, packed, c, LDC));
    CHECK(c_matches_product());
    greenai_packed_f16_free(packed);
    greenai_packed_f16_free(NULL);

    /* k = 0 zeroes C; empty products accept NULL. */
    c[0] = 3.0f;
    CHECK_OK(greenai_gemm_f32_f16w(1, 1, 0, NULL, 0, NULL, 1, c, 1));
    CHECK(c[0] == 0.0f);
    CHECK_OK(greenai_gemm_f32_f16w(0, 0, 0, NULL, 0, NULL, 0, NULL, 0));
}

static void test_gemm_bad_input_writes_nothing(void) {
    fill();
    for (size_t i = 0; i < M * LDC; i++) c[i] = -1.0f;
    CHECK_STATUS(greenai_gemm_f32_f16w(M, N, K, a, K - 1, b16, LDB, c, LDC), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_f32_f16w(M, N, K, a, LDA, b16, N - 1, c, LDC), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_f32_bf16w(M, N, K, a, LDA, bb16, LDB, c, N - 1), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_f32_f16w(M, N, K, NULL, LDA, b16, LDB, c, LDC), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_f32_f16w(M, N, K, a, LDA, NULL, LDB, c, LDC), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_f32_f16w(M, N, K, a, LDA, b16, LDB, NULL, LDC), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_f32_f16w(SIZE_MAX / 2, N, K, a, SIZE_MAX / 4, b16, LDB, c, LDC), GREENAI_ERR_OVERFLOW);
    CHECK_STATUS(greenai_gemm_f32_packed_f16(M, a, LDA, NULL, c, LDC), GREENAI_ERR_NULL_POINTER);
    for (size_t i = 0; i < M * LDC; i++) CHECK(c[i] == -1.0f);
    greenai_packed_f16 *packed = NULL;
    CHECK_STATUS(greenai_packed_f16_new(K, N, b16, N - 1, &packed), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(packed == NULL);
    CHECK_STATUS(greenai_packed_f16_new(K, N, b16, LDB, NULL), GREENAI_ERR_NULL_POINTER);
}

static void test_gemv(void) {
    fill();
    /* W = B viewed as K rows of N (leading dimension LDB); x = the first N values of a. */
    float y[K + 1], x[N];
    int8_t w8[K * LDB];
    float scales[K];
    for (size_t j = 0; j < N; j++) x[j] = (float)((int)(j % 9) - 4) * 0.25f;
    for (size_t i = 0; i < K * LDB; i++) w8[i] = (int8_t)bv[i];
    for (size_t i = 0; i < K; i++) scales[i] = 0.5f * (float)(i + 1);
    const float *wf = NULL;
    float wf32[K * LDB];
    for (size_t i = 0; i < K * LDB; i++) wf32[i] = (float)bv[i];
    wf = wf32;
    for (int kind = 0; kind < 4; kind++) {
        y[K] = 99.0f;
        switch (kind) {
            case 0: CHECK_OK(greenai_gemv_f32(K, N, wf, LDB, x, y)); break;
            case 1: CHECK_OK(greenai_gemv_f32_f16w(K, N, b16, LDB, x, y)); break;
            case 2: CHECK_OK(greenai_gemv_f32_bf16w(K, N, bb16, LDB, x, y)); break;
            default: CHECK_OK(greenai_gemv_f32_i8w(K, N, w8, LDB, scales, x, y)); break;
        }
        for (size_t i = 0; i < K; i++) {
            double s = 0;
            for (size_t j = 0; j < N; j++) s += bv[i * LDB + j] * (double)x[j];
            if (kind == 3) s *= (double)scales[i];
            CHECK((double)y[i] == s);
        }
        CHECK(y[K] == 99.0f);
    }
    y[0] = 5.0f;
    CHECK_STATUS(greenai_gemv_f32(K, N, wf, N - 1, x, y), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemv_f32_f16w(K, N, b16, LDB, NULL, y), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemv_f32_i8w(K, N, w8, LDB, NULL, x, y), GREENAI_ERR_NULL_POINTER);
    CHECK(y[0] == 5.0f);
    CHECK_OK(greenai_gemv_f32_bf16w(0, 0, NULL, 0, NULL, NULL));
}

/* m = 1 and 3 (B read in place): n with a partial last panel, k deeper than one sweep of B, every
   leading dimension padded. Exact products, so any summation order gives the double result. */
#define SK 300
#define SN 37
#define SLDA (SK + 3)
#define SLDB (SN + 5)
#define SLDC (SN + 2)
static float sa[3 * SLDA], sc[3 * SLDC];
static uint16_t sb16[SK * SLDB], sbb16[SK * SLDB];
static double sbv[SK * SLDB];

static int small_matches(size_t m) {
    int ok = 1;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < SLDC; j++) {
            double s = 0;
            for (size_t p = 0; p < SK; p++) s += (double)sa[i * SLDA + p] * sbv[p * SLDB + j];
            if (j < SN && (double)sc[i * SLDC + j] != s) ok = 0;
            if (j >= SN && sc[i * SLDC + j] != -1.0f) ok = 0; /* the padding is never written */
        }
    return ok;
}

static void test_small_m_reads_b_in_place(void) {
    for (size_t i = 0; i < 3 * SLDA; i++) sa[i] = (float)((int)(i * 7 % 11) - 5) * 0.5f;
    for (size_t i = 0; i < SK * SLDB; i++) {
        sbv[i] = (double)((int)(i * 5 % 13) - 6);
        sb16[i] = f16_bits(sbv[i]);
        sbb16[i] = bf16_bits(sbv[i]);
    }
    for (size_t m = 1; m <= 3; m += 2) {
        for (size_t i = 0; i < 3 * SLDC; i++) sc[i] = -1.0f;
        CHECK_OK(greenai_gemm_f32_f16w(m, SN, SK, sa, SLDA, sb16, SLDB, sc, SLDC));
        CHECK(small_matches(m));
        for (size_t i = 0; i < 3 * SLDC; i++) sc[i] = -1.0f;
        CHECK_OK(greenai_gemm_f32_bf16w(m, SN, SK, sa, SLDA, sbb16, SLDB, sc, SLDC));
        CHECK(small_matches(m));
    }
}

static void test_packed_layout_is_checked(void) {
    fill();
    greenai_packed_f16 *scalar = NULL, *active = NULL;
    size_t cols = 0;
    CHECK_OK(greenai_packed_f16_new_for("scalar", K, N, b16, LDB, &scalar));
    CHECK_OK(greenai_packed_f16_panel_cols(scalar, &cols));
    CHECK(cols == 8);
    CHECK_OK(greenai_packed_f16_new_for(NULL, K, N, b16, LDB, &active));
    CHECK_OK(greenai_packed_f16_panel_cols(active, &cols));
    int active_is_scalar = strcmp(greenai_active_isa(), "scalar") == 0;
    CHECK(cols == (active_is_scalar ? 8u : 16u));
    memset(c, 0, sizeof c);
    CHECK_OK(greenai_gemm_f32_packed_f16(M, a, LDA, active, c, LDC));
    CHECK(c_matches_product());
    /* Weights packed for the scalar kernel's layout: refused by any other kernel, C untouched. */
    for (size_t i = 0; i < M * LDC; i++) c[i] = -1.0f;
    greenai_status st = greenai_gemm_f32_packed_f16(M, a, LDA, scalar, c, LDC);
    if (active_is_scalar) {
        CHECK(st == GREENAI_OK && c_matches_product());
    } else {
        CHECK(st == GREENAI_ERR_INVALID_ARGUMENT);
        for (size_t i = 0; i < M * LDC; i++) CHECK(c[i] == -1.0f);
    }
    greenai_packed_f16 *none = NULL;
    CHECK_STATUS(greenai_packed_f16_new_for("sse9", K, N, b16, LDB, &none), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(none == NULL);
    CHECK_STATUS(greenai_packed_f16_panel_cols(NULL, &cols), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_packed_f16_panel_cols(scalar, NULL), GREENAI_ERR_NULL_POINTER);
    greenai_packed_f16_free(scalar);
    greenai_packed_f16_free(active);
}

int main(void) {
    test_small_m_reads_b_in_place();
    test_packed_layout_is_checked();
    test_gemm();
    test_gemm_bad_input_writes_nothing();
    test_gemv();
    return check_failures == 0 ? 0 : 1;
}
