/* bf16 x bf16 -> f32 GEMM through the C ABI: plain (small m streams B, larger m packs it) and
   prepacked, leading dimensions, checked against a double-precision product; then bad input
   (NULL, short leading dimensions, buffers whose size overflows), which must write nothing. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "check.h"

#define MMAX 61
#define N 37
#define K 41
#define LDA (K + 3)
#define LDB (N + 2)
#define LDC (N + 5)

static uint16_t a[MMAX * LDA], b[K * LDB];
static float c[MMAX * LDC];

/* The bfloat16 bits of f, truncated (every bfloat16 value is such a truncation). */
static uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}
static double bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return (double)f;
}

/* exact: small multiples of 1/8, so every product and sum is exact in f32 and C must equal the
   double product; otherwise values of every exponent in [-1, 1], checked within the f32 bound. */
static void fill(int exact) {
    uint32_t s = 12345;
    for (size_t i = 0; i < MMAX * LDA; i++) {
        s = s * 1664525u + 1013904223u;
        a[i] = bf16_bits(exact ? (float)((int)(s >> 28) - 8) * 0.125f : (float)((int32_t)s) / 2147483648.0f);
    }
    for (size_t i = 0; i < K * LDB; i++) {
        s = s * 1664525u + 1013904223u;
        b[i] = bf16_bits(exact ? (float)((int)(s >> 28) - 8) * 0.125f : (float)((int32_t)s) / 2147483648.0f);
    }
}

/* |c - sum| <= k 2^-24 (1 + 2^-10) sum |a b| (any f32 summation order), and C's padding untouched. */
static int c_matches_product(size_t m, int exact) {
    int ok = 1;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (size_t p = 0; p < K; p++) {
                double t = bf16_value(a[i * LDA + p]) * bf16_value(b[p * LDB + j]);
                s += t;
                mag += fabs(t);
            }
            double bound = exact ? 0.0 : K * ldexp(1.0, -24) * (1.0 + ldexp(1.0, -10)) * mag;
            if (fabs((double)c[i * LDC + j] - s) > bound) ok = 0;
        }
        for (size_t j = N; j < LDC && i + 1 < m; j++)
            if (c[i * LDC + j] != -1.0f) ok = 0;
    }
    return ok;
}

static void test_gemm(void) {
    const size_t ms[] = {1, 5, MMAX};
    for (int exact = 1; exact >= 0; exact--) {
        fill(exact);
        greenai_bf16_packed *packed = NULL;
        CHECK_OK(greenai_bf16_packed_new(K, N, b, LDB, &packed));
        CHECK(packed != NULL);
        for (size_t t = 0; t < sizeof ms / sizeof ms[0]; t++) {
            for (size_t i = 0; i < MMAX * LDC; i++) c[i] = -1.0f;
            CHECK_OK(greenai_gemm_bf16bf16_f32(ms[t], N, K, a, LDA, b, LDB, c, LDC));
            CHECK(c_matches_product(ms[t], exact));
            for (size_t i = 0; i < MMAX * LDC; i++) c[i] = -1.0f;
            CHECK_OK(greenai_gemm_bf16_packed_f32(ms[t], a, LDA, packed, c, LDC));
            CHECK(c_matches_product(ms[t], exact));
        }
        greenai_bf16_packed_free(packed);
    }
    greenai_bf16_packed_free(NULL);

    /* k = 0 zeroes C; empty products accept NULL. */
    c[0] = 3.0f;
    CHECK_OK(greenai_gemm_bf16bf16_f32(1, 1, 0, NULL, 0, NULL, 1, c, 1));
    CHECK(c[0] == 0.0f);
    CHECK_OK(greenai_gemm_bf16bf16_f32(0, 0, 0, NULL, 0, NULL, 0, NULL, 0));
}

static void test_bad_input_writes_nothing(void) {
    fill(1);
    for (size_t i = 0; i < MMAX * LDC; i++) c[i] = -1.0f;
    const size_t m = 5;
    CHECK_STATUS(greenai_gemm_bf16bf16_f32(m, N, K, a, K - 1, b, LDB, c, LDC), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_bf16bf16_f32(m, N, K, a, LDA, b, N - 1, c, LDC), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_bf16bf16_f32(m, N, K, a, LDA, b, LDB, c, N - 1), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_bf16bf16_f32(m, N, K, NULL, LDA, b, LDB, c, LDC), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_bf16bf16_f32(m, N, K, a, LDA, NULL, LDB, c, LDC), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_bf16bf16_f32(m, N, K, a, LDA, b, LDB, NULL, LDC), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_bf16bf16_f32(SIZE_MAX / 2, N, K, a, SIZE_MAX / 4, b, LDB, c, LDC), GREENAI_ERR_OVERFLOW);
    CHECK_STATUS(greenai_gemm_bf16bf16_f32(m, N, K, a, LDA, b, LDB, c, SIZE_MAX / 2), GREENAI_ERR_OVERFLOW);

    greenai_bf16_packed *packed = NULL;
    CHECK_STATUS(greenai_bf16_packed_new(K, N, b, N - 1, &packed), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(packed == NULL);
    CHECK_STATUS(greenai_bf16_packed_new(K, N, NULL, LDB, &packed), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_bf16_packed_new(SIZE_MAX / 2, N, b, SIZE_MAX / 4, &packed), GREENAI_ERR_OVERFLOW);
    CHECK(packed == NULL);
    CHECK_STATUS(greenai_bf16_packed_new(K, N, b, LDB, NULL), GREENAI_ERR_NULL_POINTER);

    CHECK_OK(greenai_bf16_packed_new(K, N, b, LDB, &packed));
    CHECK_STATUS(greenai_gemm_bf16_packed_f32(m, a, LDA, NULL, c, LDC), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_bf16_packed_f32(m, a, K - 1, packed, c, LDC), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_bf16_packed_f32(m, a, LDA, packed, c, N - 1), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_gemm_bf16_packed_f32(m, NULL, LDA, packed, c, LDC), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_bf16_packed_f32(m, a, LDA, packed, NULL, LDC), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_gemm_bf16_packed_f32(SIZE_MAX / 2, a, SIZE_MAX / 4, packed, c, LDC), GREENAI_ERR_OVERFLOW);
    greenai_bf16_packed_free(packed);
    for (size_t i = 0; i < MMAX * LDC; i++) CHECK(c[i] == -1.0f);
}

int main(void) {
    test_gemm();
    test_bad_input_writes_nothing();
    CHECK_DONE();
}
