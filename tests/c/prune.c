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

int main(void) {
    test_magnitude();
    test_n_m();
    test_ln_structured();
    CHECK_DONE();
}
