/* Exact int8 GEMM, the packed B handle and the quantized linear layer through the C ABI. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "check.h"

static uint32_t rng_state = 12345u;
static uint32_t next_u32(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* The naive loop, in 64-bit: the independent reference. */
static void naive(size_t m, size_t n, size_t k, const uint8_t *au, const int8_t *ai, size_t lda,
                  const int8_t *b, size_t ldb, int64_t *c) {
    size_t i, j, p;
    for (i = 0; i < m; i++) {
        for (j = 0; j < n; j++) {
            int64_t sum = 0;
            for (p = 0; p < k; p++) {
                int64_t a = au ? (int64_t)au[i * lda + p] : (int64_t)ai[i * lda + p];
                sum += a * (int64_t)b[p * ldb + j];
            }
            c[i * n + j] = sum;
        }
    }
}

static int same(size_t m, size_t n, const int32_t *c, size_t ldc, const int64_t *want, int64_t offset) {
    size_t i, j;
    for (i = 0; i < m; i++)
        for (j = 0; j < n; j++)
            if ((int64_t)c[i * ldc + j] != want[i * n + j] + offset) return 0;
    return 1;
}

enum { M = 23, N = 37, K = 301, LDA = K + 3, LDB = N + 1, LDC = N + 2 };
static uint8_t a_u8[M * LDA];
static int8_t a_i8[M * LDA];
static int8_t b[K * LDB];
static int32_t c[M * LDC];
static int64_t want[M * N];

static void fill(int extremes) {
    size_t i;
    for (i = 0; i < sizeof a_u8; i++) {
        a_u8[i] = extremes ? 255 : (uint8_t)next_u32();
        a_i8[i] = extremes ? -128 : (int8_t)(next_u32() & 0xff);
    }
    for (i = 0; i < sizeof b; i++) b[i] = extremes ? -128 : (int8_t)(next_u32() & 0xff);
}

static void test_gemm_matches_naive(void) {
    int extremes;
    for (extremes = 0; extremes < 2; extremes++) {
        fill(extremes);
        naive(M, N, K, a_u8, NULL, LDA, b, LDB, want);
        CHECK_OK(greenai_gemm_u8i8_i32(M, N, K, a_u8, LDA, b, LDB, c, LDC));
        CHECK(same(M, N, c, LDC, want, 0));
        CHECK_OK(greenai_gemm_u8i8_i32_acc(M, N, K, a_u8, LDA, b, LDB, c, LDC));
        naive(M, N, K, a_u8, NULL, LDA, b, LDB, want);
        {
            size_t i;
            for (i = 0; i < M * N; i++) want[i] *= 2;
        }
        CHECK(same(M, N, c, LDC, want, 0));

        naive(M, N, K, NULL, a_i8, LDA, b, LDB, want);
        CHECK_OK(greenai_gemm_i8i8_i32(M, N, K, a_i8, LDA, b, LDB, c, LDC));
        CHECK(same(M, N, c, LDC, want, 0));
        CHECK_OK(greenai_gemm_i8i8_i32_acc(M, N, K, a_i8, LDA, b, LDB, c, LDC));
        {
            size_t i;
            for (i = 0; i < M * N; i++) want[i] *= 2;
        }
        CHECK(same(M, N, c, LDC, want, 0));
    }
}

/* Few rows of A (the decode step and small batches): the plain API streams B without packing it.
   Every m up to past the streaming threshold, odd k across blocks, a column tail, padded leading
   dimensions, extremes (255 x -128) and random data, u8 and i8 A, overwrite and accumulate. */
enum { SK = 131, SN = 53, SLDA = SK + 5, SLDB = SN + 3, SLDC = SN + 1, SM = 36 };
static uint8_t s_au8[SM * SLDA];
static int8_t s_ai8[SM * SLDA];
static int8_t s_b[SK * SLDB];
static int32_t s_c[SM * SLDC];
static int64_t s_want[SM * SN];

static void test_small_m_plain(void) {
    size_t m, i;
    int extremes;
    for (extremes = 0; extremes < 2; extremes++) {
        for (i = 0; i < sizeof s_au8; i++) {
            s_au8[i] = extremes ? 255 : (uint8_t)next_u32();
            s_ai8[i] = extremes ? -128 : (int8_t)(next_u32() & 0xff);
        }
        for (i = 0; i < sizeof s_b; i++) s_b[i] = extremes ? -128 : (int8_t)(next_u32() & 0xff);
        for (m = 1; m <= SM; m += (m < 8 ? 1 : 7)) {
            for (i = 0; i < SM * SLDC; i++) s_c[i] = 77;
            naive(m, SN, SK, s_au8, NULL, SLDA, s_b, SLDB, s_want);
            CHECK_OK(greenai_gemm_u8i8_i32(m, SN, SK, s_au8, SLDA, s_b, SLDB, s_c, SLDC));
            CHECK(same(m, SN, s_c, SLDC, s_want, 0));
            /* the padding column of each row stays untouched */
            for (i = 0; i + 1 < m; i++) CHECK(s_c[i * SLDC + SN] == 77);
            CHECK_OK(greenai_gemm_u8i8_i32_acc(m, SN, SK, s_au8, SLDA, s_b, SLDB, s_c, SLDC));
            for (i = 0; i < m * SN; i++) s_want[i] *= 2;
            CHECK(same(m, SN, s_c, SLDC, s_want, 0));
            naive(m, SN, SK, NULL, s_ai8, SLDA, s_b, SLDB, s_want);
            CHECK_OK(greenai_gemm_i8i8_i32(m, SN, SK, s_ai8, SLDA, s_b, SLDB, s_c, SLDC));
            CHECK(same(m, SN, s_c, SLDC, s_want, 0));
            CHECK_OK(greenai_gemm_i8i8_i32_acc(m, SN, SK, s_ai8, SLDA, s_b, SLDB, s_c, SLDC));
            for (i = 0; i < m * SN; i++) s_want[i] *= 2;
            CHECK(same(m, SN, s_c, SLDC, s_want, 0));
        }
    }
    /* a short B (ldb below the row) is refused and C is left as it was */
    for (i = 0; i < SM * SLDC; i++) s_c[i] = 5;
    CHECK_STATUS(greenai_gemm_u8i8_i32(1, SN, SK, s_au8, SLDA, s_b, SN - 1, s_c, SLDC), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_i8i8_i32(2, SN, SK, s_ai8, SK - 1, s_b, SLDB, s_c, SLDC), GREENAI_ERR_INVALID_ARGUMENT);
    for (i = 0; i < SM * SLDC; i++) CHECK(s_c[i] == 5);
}

static void test_packed(void) {
    greenai_packed_i8 *p = NULL;
    size_t k = 0, n = 0, j, i;
    int32_t sums[N];
    fill(0);
    CHECK_OK(greenai_packed_i8_pack(K, N, b, LDB, &p));
    CHECK_OK(greenai_packed_i8_dims(p, &k, &n));
    CHECK(k == K && n == N);
    CHECK_OK(greenai_packed_i8_col_sums(p, sums, N));
    for (j = 0; j < N; j++) {
        int32_t s = 0;
        for (i = 0; i < K; i++) s += b[i * LDB + j];
        CHECK(sums[j] == s);
    }
    naive(M, N, K, a_u8, NULL, LDA, b, LDB, want);
    CHECK_OK(greenai_gemm_u8_packed_i32(M, a_u8, LDA, p, c, LDC));
    CHECK(same(M, N, c, LDC, want, 0));
    naive(M, N, K, NULL, a_i8, LDA, b, LDB, want);
    CHECK_OK(greenai_gemm_i8_packed_i32(M, a_i8, LDA, p, c, LDC));
    CHECK(same(M, N, c, LDC, want, 0));
    CHECK_OK(greenai_gemm_i8_packed_i32_acc(M, a_i8, LDA, p, c, LDC));
    for (i = 0; i < M * N; i++) want[i] *= 2;
    CHECK(same(M, N, c, LDC, want, 0));
    CHECK_STATUS(greenai_gemm_u8_packed_i32(M, a_u8, K - 1, p, c, LDC), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_u8_packed_i32(M, a_u8, LDA, NULL, c, LDC), GREENAI_ERR_NULL_POINTER);
    greenai_packed_i8_free(p);
    greenai_packed_i8_free(NULL);

    /* W = B^T packed transposed gives the same product */
    {
        static int8_t w[N * K];
        for (j = 0; j < N; j++)
            for (i = 0; i < K; i++) w[j * K + i] = b[i * LDB + j];
        p = NULL;
        CHECK_OK(greenai_packed_i8_pack_transposed(N, K, w, K, &p));
        naive(M, N, K, a_u8, NULL, LDA, b, LDB, want);
        CHECK_OK(greenai_gemm_u8_packed_i32_acc(M, a_u8, LDA, p, c, LDC));
        CHECK_OK(greenai_gemm_u8_packed_i32(M, a_u8, LDA, p, c, LDC));
        CHECK(same(M, N, c, LDC, want, 0));
        greenai_packed_i8_free(p);
    }
}

static void test_errors_write_nothing(void) {
    int32_t small[6] = {9, 9, 9, 9, 9, 9};
    size_t i;
    const uint8_t a2[6] = {1, 2, 3, 4, 5, 6};
    const int8_t b2[6] = {1, 2, 3, 4, 5, 6};
    CHECK_STATUS(greenai_gemm_u8i8_i32(2, 3, 3, a2, 2, b2, 3, small, 3), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_u8i8_i32(2, 3, 2, a2, 2, b2, 3, small, 2), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_u8i8_i32(2, 3, 2, NULL, 2, b2, 3, small, 3), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_i8i8_i32(2, 3, 2, (const int8_t *)a2, 2, NULL, 3, small, 3), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_u8i8_i32(2, 3, 2, a2, 2, b2, 3, NULL, 3), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_u8i8_i32(SIZE_MAX, 3, 2, a2, SIZE_MAX, b2, 3, small, 3), GREENAI_ERR_OVERFLOW);
    /* C overlapping A */
    CHECK_STATUS(greenai_gemm_i8i8_i32(1, 1, 2, (const int8_t *)small, 2, b2, 1, small, 1), GREENAI_ERR_INVALID_ARGUMENT);
    for (i = 0; i < 6; i++) CHECK(small[i] == 9);
    /* empty products: NULL is fine; k == 0 zeroes C */
    CHECK_OK(greenai_gemm_u8i8_i32(0, 0, 0, NULL, 0, NULL, 0, NULL, 0));
    CHECK_OK(greenai_gemm_u8i8_i32(2, 3, 0, NULL, 0, NULL, 3, small, 3));
    for (i = 0; i < 6; i++) CHECK(small[i] == 0);
}

static void test_qlinear(void) {
    enum { B = 5, IN = 64, OUT = 24 };
    static float w[OUT * IN], x[B * IN], bias[OUT], y[B * OUT];
    greenai_qlinear *layer = NULL;
    size_t i, j, p, in_f = 0, out_f = 0;
    double err = 0.0, norm = 0.0;
    for (i = 0; i < OUT * IN; i++) w[i] = (float)((double)next_u32() / 16777216.0 - 0.5);
    for (i = 0; i < B * IN; i++) x[i] = (float)((double)next_u32() / 16777216.0 * 2.0 - 1.0);
    for (i = 0; i < OUT; i++) bias[i] = (float)i * 0.01f;
    CHECK_OK(greenai_qlinear_from_float(w, OUT, IN, bias, 0, &layer));
    CHECK_OK(greenai_qlinear_dims(layer, &in_f, &out_f));
    CHECK(in_f == IN && out_f == OUT);
    CHECK_OK(greenai_qlinear_forward(layer, x, B, GREENAI_ACT_QUANT_U8_AFFINE, y));
    for (i = 0; i < B; i++)
        for (j = 0; j < OUT; j++) {
            double exact = bias[j];
            for (p = 0; p < IN; p++) exact += (double)x[i * IN + p] * (double)w[j * IN + p];
            err += (y[i * OUT + j] - exact) * (y[i * OUT + j] - exact);
            norm += exact * exact;
        }
    CHECK(sqrt(err / norm) < 0.01);
    CHECK_OK(greenai_qlinear_forward(layer, x, B, GREENAI_ACT_QUANT_I8_SYMMETRIC, y));
    CHECK_STATUS(greenai_qlinear_forward(layer, x, B, 7, y), GREENAI_ERR_INVALID_ARGUMENT);
    x[3] = NAN;
    y[0] = 42.0f;
    CHECK_STATUS(greenai_qlinear_forward(layer, x, B, GREENAI_ACT_QUANT_U8_AFFINE, y), GREENAI_ERR_NON_FINITE);
    CHECK(y[0] == 42.0f);
    CHECK_STATUS(greenai_qlinear_forward(NULL, x, B, 0, y), GREENAI_ERR_NULL_POINTER);
    greenai_qlinear_free(layer);
    greenai_qlinear_free(NULL);
    {
        const int8_t wq[4] = {1, -2, 3, -4};
        const float scales[2] = {0.5f, -1.0f};
        layer = NULL;
        CHECK_STATUS(greenai_qlinear_from_int8(wq, 2, 2, scales, NULL, NULL, &layer), GREENAI_ERR_INVALID_ARGUMENT);
        CHECK(layer == NULL);
        const float good[2] = {0.5f, 1.0f};
        const int32_t outside[2] = {0, 128};
        CHECK_STATUS(greenai_qlinear_from_int8(wq, 2, 2, good, outside, NULL, &layer), GREENAI_ERR_INVALID_ARGUMENT);
        CHECK(layer == NULL);
    }
}

/* Affine int8 weights q with zero points z per channel give exactly the layer of q - z (symmetric):
   the integer sums are the same. The deprecated names still build the same layers. */
static void test_qlinear_zero_points(void) {
    enum { B = 3, IN = 37, OUT = 6 };
    static int8_t q[OUT * IN], centred[OUT * IN];
    static float x[B * IN], ya[B * OUT], ys[B * OUT], yf[B * OUT], yd[B * OUT];
    const int32_t zps[OUT] = {-20, 0, 7, 19, -3, 11};
    const float scales[OUT] = {0.01f, 0.02f, 0.015f, 0.03f, 0.005f, 0.02f};
    float w[OUT * IN];
    greenai_qlinear *affine = NULL, *symmetric = NULL, *old = NULL, *fresh = NULL;
    size_t i;
    for (i = 0; i < OUT * IN; i++) {
        q[i] = (int8_t)((int)(next_u32() % 201) - 100);
        centred[i] = (int8_t)(q[i] - zps[i / IN]);
        w[i] = (float)((double)next_u32() / 16777216.0 - 0.5);
    }
    for (i = 0; i < B * IN; i++) x[i] = (float)((double)next_u32() / 16777216.0 * 2.0 - 1.0);
    CHECK_OK(greenai_qlinear_from_int8(q, OUT, IN, scales, zps, NULL, &affine));
    CHECK_OK(greenai_qlinear_from_int8(centred, OUT, IN, scales, NULL, NULL, &symmetric));
    CHECK_OK(greenai_qlinear_forward(affine, x, B, GREENAI_ACT_QUANT_U8_AFFINE, ya));
    CHECK_OK(greenai_qlinear_forward(symmetric, x, B, GREENAI_ACT_QUANT_U8_AFFINE, ys));
    CHECK(memcmp(ya, ys, sizeof ya) == 0);
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    CHECK_OK(greenai_qlinear_from_i8(centred, OUT, IN, scales, NULL, &old));
    CHECK_OK(greenai_qlinear_forward(old, x, B, GREENAI_ACT_QUANT_U8_AFFINE, yd));
    CHECK(memcmp(yd, ys, sizeof yd) == 0);
    greenai_qlinear_free(old);
    old = NULL;
    CHECK_OK(greenai_qlinear_from_f32(w, OUT, IN, NULL, 0, &old));
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
    CHECK_OK(greenai_qlinear_from_float(w, OUT, IN, NULL, 0, &fresh));
    CHECK_OK(greenai_qlinear_forward(old, x, B, GREENAI_ACT_QUANT_I8_SYMMETRIC, yd));
    CHECK_OK(greenai_qlinear_forward(fresh, x, B, GREENAI_ACT_QUANT_I8_SYMMETRIC, yf));
    CHECK(memcmp(yd, yf, sizeof yd) == 0);
    greenai_qlinear_free(affine);
    greenai_qlinear_free(symmetric);
    greenai_qlinear_free(old);
    greenai_qlinear_free(fresh);
}

int main(void) {
    test_gemm_matches_naive();
    test_small_m_plain();
    test_packed();
    test_errors_write_nothing();
    test_qlinear();
    test_qlinear_zero_points();
    CHECK_DONE();
}
