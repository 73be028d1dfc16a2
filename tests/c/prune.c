/* Pruning masks, sparse storage and SVD factorization through the C ABI. */
#include <math.h>
#include <string.h>
#include "check.h"

static void test_magnitude(void) {
    const float w[6] = {0.5f, -3.0f, 1.0f, -1.0f, 2.0f, 0.0f};
    uint8_t mask[6];
    const uint8_t expect[6] = {0, 1, 0, 1, 1, 0}; /* 3 pruned; tie |1| = |-1| prunes index 2 first */
    CHECK_OK(greenai_prune_magnitude(w, 6, 0.5f, mask));
    CHECK(memcmp(mask, expect, 6) == 0);

    memset(mask, 7, sizeof mask);
    CHECK_STATUS(greenai_prune_magnitude(w, 6, 1.5f, mask), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(mask[0] == 7); /* nothing written on failure */
    CHECK_STATUS(greenai_prune_magnitude(NULL, 6, 0.5f, mask), GREENAI_ERR_NULL_POINTER);
    CHECK_OK(greenai_prune_magnitude(NULL, 0, 0.5f, NULL));
    {
        const float bad[2] = {1.0f, NAN};
        CHECK_STATUS(greenai_prune_magnitude(bad, 2, 0.5f, mask), GREENAI_ERR_NON_FINITE);
    }
}

static void test_n_m(void) {
    const float w[8] = {1.0f, -4.0f, 3.0f, 2.0f, 0.0f, 0.0f, -1.0f, 1.0f};
    uint8_t mask[8];
    const uint8_t expect[8] = {0, 1, 1, 0, 0, 0, 1, 1};
    CHECK_OK(greenai_prune_n_m(w, 2, 4, 2, 4, mask));
    CHECK(memcmp(mask, expect, 8) == 0);
    CHECK_STATUS(greenai_prune_n_m(w, 2, 4, 3, 2, mask), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_prune_n_m(w, 2, 4, 0, 0, mask), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_prune_n_m(w, 1, 8, 2, 3, mask), GREENAI_ERR_INVALID_ARGUMENT);
}

static void test_ln_structured(void) {
    /* linear (3 out, 2 in): rows have L2 norms 5, 1, 2 -> pruning one row removes row 1 */
    const float w[6] = {3.0f, 4.0f, 1.0f, 0.0f, 0.0f, -2.0f};
    const size_t shape[2] = {3, 2};
    uint8_t mask[6];
    const uint8_t expect[6] = {1, 1, 0, 0, 1, 1};
    CHECK_OK(greenai_prune_ln_structured(w, shape, 2, 0, 2.0f, 0.34f, mask));
    CHECK(memcmp(mask, expect, 6) == 0);
    CHECK_STATUS(greenai_prune_ln_structured(w, shape, 2, 2, 2.0f, 0.34f, mask), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_prune_ln_structured(w, shape, 2, 0, 3.0f, 0.34f, mask), GREENAI_ERR_INVALID_ARGUMENT);
}

static void test_csr(void) {
    /* [[1 0 2], [0 0 3]] * [[1 2], [3 4], [5 6]] = [[11 14], [15 18]] */
    const float a[6] = {1.0f, 0.0f, 2.0f, 0.0f, 0.0f, 3.0f};
    const float x[6] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
    const float expect[4] = {11.0f, 14.0f, 15.0f, 18.0f};
    float y[4] = {0};
    float back[6] = {0};
    size_t nnz = 0, bytes = 0;
    greenai_csr *csr = NULL;
    CHECK_OK(greenai_csr_from_dense(a, 2, 3, &csr));
    CHECK_OK(greenai_csr_info(csr, &nnz, &bytes));
    CHECK(nnz == 3 && bytes == 3 * 8 + 3 * 4);
    CHECK_OK(greenai_csr_spmm(csr, x, 2, y));
    CHECK(memcmp(y, expect, sizeof y) == 0);
    CHECK_OK(greenai_csr_to_dense(csr, back, 6));
    CHECK(memcmp(back, a, sizeof back) == 0);
    CHECK_STATUS(greenai_csr_to_dense(csr, back, 5), GREENAI_ERR_SHAPE_MISMATCH);
    CHECK_STATUS(greenai_csr_spmm(NULL, x, 2, y), GREENAI_ERR_NULL_POINTER);
    greenai_csr_free(csr);
    greenai_csr_free(NULL);
}

static void test_nm(void) {
    const float w[8] = {1.0f, -4.0f, 3.0f, 2.0f, 0.5f, 0.0f, -1.0f, 1.0f};
    const float x[8] = {1.0f, 1.0f, 1.0f, 1.0f, 2.0f, 2.0f, 2.0f, 2.0f};
    uint8_t mask[8];
    float pruned[8], back[8], y[2];
    size_t bytes = 0, i;
    greenai_nm *nm = NULL;
    CHECK_OK(greenai_prune_n_m(w, 2, 4, 2, 4, mask));
    for (i = 0; i < 8; i++) pruned[i] = mask[i] ? w[i] : 0.0f;
    CHECK_STATUS(greenai_nm_from_dense(w, 2, 4, 2, 4, &nm), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(nm == NULL);
    CHECK_OK(greenai_nm_from_dense(pruned, 2, 4, 2, 4, &nm));
    CHECK_OK(greenai_nm_storage_bytes(nm, &bytes));
    CHECK(bytes == 4 * 4 + 1); /* four kept floats, four 2-bit positions */
    CHECK_OK(greenai_nm_to_dense(nm, back, 8));
    CHECK(memcmp(back, pruned, sizeof back) == 0);
    {
        float y2[4];
        CHECK_OK(greenai_nm_spmm(nm, x, 2, y2)); /* x is 4 x 2 */
        CHECK(y2[0] == -4.0f + 3.0f * 2.0f && y2[1] == -4.0f + 3.0f * 2.0f);
    }
    {
        const float xv[4] = {1.0f, 2.0f, 3.0f, 4.0f};
        CHECK_OK(greenai_nm_spmm(nm, xv, 1, y));
        CHECK(y[0] == -4.0f * 2.0f + 3.0f * 3.0f);
        CHECK(y[1] == -1.0f * 3.0f + 1.0f * 4.0f);
    }
    greenai_nm_free(nm);
    greenai_nm_free(NULL);
}

static void test_lowrank(void) {
    /* rank-1 matrix u v^T with u = (1, 2, 3), v = (1, -1, 2, 0.5) */
    float w[12], a[12], b[12];
    const float u[3] = {1.0f, 2.0f, 3.0f}, v[4] = {1.0f, -1.0f, 2.0f, 0.5f};
    size_t rank = 99, i, j;
    float err = -1.0f;
    for (i = 0; i < 3; i++)
        for (j = 0; j < 4; j++) w[i * 4 + j] = u[i] * v[j];
    CHECK_OK(greenai_lowrank_svd(w, 3, 4, 0, 0.999f, a, 12, b, 12, &rank, &err));
    CHECK(rank == 1);
    CHECK(err >= 0.0f && err < 1e-5f);
    for (i = 0; i < 3; i++)
        for (j = 0; j < 4; j++) CHECK(fabsf(a[i] * b[j] - w[i * 4 + j]) < 1e-4f);
    CHECK_OK(greenai_lowrank_svd(w, 3, 4, 3, 0.0f, a, 12, b, 12, &rank, &err));
    CHECK(rank == 3);
    CHECK_STATUS(greenai_lowrank_svd(w, 3, 4, 3, 0.0f, a, 8, b, 12, &rank, &err), GREENAI_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(greenai_lowrank_svd(w, 3, 4, 4, 0.0f, a, 12, b, 12, &rank, &err), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(greenai_lowrank_svd(w, 3, 4, 0, 1.5f, a, 12, b, 12, &rank, &err), GREENAI_ERR_INVALID_ARGUMENT);
}

int main(void) {
    test_csr();
    test_nm();
    test_lowrank();
    test_magnitude();
    test_n_m();
    test_ln_structured();
    CHECK_DONE();
}
