/* The foundation of the C ABI: version, statuses, messages, and the tensor handle. */
#include <stdint.h>
#include <string.h>
#include "check.h"

static void test_version_and_status_names(void) {
    char expected[32];
    sprintf(expected, "%d.%d.%d", GREENAI_VERSION_MAJOR, GREENAI_VERSION_MINOR, GREENAI_VERSION_PATCH);
    CHECK(strcmp(greenai_version(), expected) == 0);
    CHECK(strcmp(greenai_status_str(GREENAI_OK), "GREENAI_OK") == 0);
    CHECK(strcmp(greenai_status_str(GREENAI_ERR_NULL_POINTER), "GREENAI_ERR_NULL_POINTER") == 0);
    CHECK(strcmp(greenai_status_str(GREENAI_ERR_PANIC), "GREENAI_ERR_PANIC") == 0);
}

static void test_tensor_round_trip(void) {
    const size_t shape[2] = {2, 3};
    const float values[6] = {1.0f, -2.0f, 3.5f, 0.0f, -0.0f, 6.25f};
    greenai_tensor *t = NULL;
    CHECK_OK(greenai_tensor_from_data(GREENAI_DTYPE_F32, shape, 2, values, sizeof values, &t));
    CHECK(t != NULL);

    greenai_dtype dtype = 99;
    size_t ndim = 0, byte_len = 0, got_shape[4] = {0, 0, 0, 0};
    void *data = NULL;
    CHECK_OK(greenai_tensor_dtype(t, &dtype));
    CHECK(dtype == GREENAI_DTYPE_F32);
    CHECK_OK(greenai_tensor_ndim(t, &ndim));
    CHECK(ndim == 2);
    CHECK_OK(greenai_tensor_shape(t, got_shape, 4));
    CHECK(got_shape[0] == 2 && got_shape[1] == 3 && got_shape[2] == 0);
    CHECK_OK(greenai_tensor_byte_len(t, &byte_len));
    CHECK(byte_len == sizeof values);
    CHECK_OK(greenai_tensor_data(t, &data));
    CHECK(data != NULL && data != (const void *)values && memcmp(data, values, sizeof values) == 0);
    ((float *)data)[5] = 7.0f;
    CHECK_OK(greenai_tensor_data(t, &data));
    CHECK(((const float *)data)[5] == 7.0f);
    greenai_tensor_free(t);
}

static void test_new_is_zeroed_and_packed_sizes_round_up(void) {
    const size_t shape[3] = {3, 1, 5};
    greenai_tensor *t = NULL;
    size_t byte_len = 0;
    void *data = NULL;
    CHECK_OK(greenai_tensor_new(GREENAI_DTYPE_I4, shape, 3, &t));
    CHECK_OK(greenai_tensor_byte_len(t, &byte_len));
    CHECK(byte_len == 8); /* 15 nibbles */
    CHECK_OK(greenai_tensor_data(t, &data));
    for (size_t i = 0; i < byte_len; i++) CHECK(((const uint8_t *)data)[i] == 0);
    greenai_tensor_free(t);

    /* A scalar: ndim 0 with a NULL shape. */
    CHECK_OK(greenai_tensor_new(GREENAI_DTYPE_F16, NULL, 0, &t));
    CHECK_OK(greenai_tensor_byte_len(t, &byte_len));
    CHECK(byte_len == 2);
    greenai_tensor_free(t);
}

static void test_bad_arguments_write_nothing(void) {
    const size_t shape[2] = {2, 2};
    const size_t huge[2] = {SIZE_MAX / 2, 3};
    const float values[4] = {1, 2, 3, 4};
    greenai_tensor *sentinel = (greenai_tensor *)&shape; /* must stay untouched on failure */
    greenai_tensor *t = sentinel;

    CHECK_STATUS(greenai_tensor_new(42, shape, 2, &t), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(t == sentinel);
    CHECK(strstr(greenai_last_error_message(), "dtype") != NULL);

    CHECK_STATUS(greenai_tensor_new(GREENAI_DTYPE_F32, huge, 2, &t), GREENAI_ERR_OVERFLOW);
    CHECK(t == sentinel);
    CHECK(strlen(greenai_last_error_message()) > 0);

    CHECK_STATUS(greenai_tensor_new(GREENAI_DTYPE_F32, NULL, 2, &t), GREENAI_ERR_NULL_POINTER);
    CHECK(strstr(greenai_last_error_message(), "shape") != NULL);
    CHECK_STATUS(greenai_tensor_new(GREENAI_DTYPE_F32, shape, 2, NULL), GREENAI_ERR_NULL_POINTER);
    CHECK(strstr(greenai_last_error_message(), "out") != NULL);

    CHECK_STATUS(greenai_tensor_from_data(GREENAI_DTYPE_F32, shape, 2, values, 15, &t),
                 GREENAI_ERR_SHAPE_MISMATCH);
    CHECK_STATUS(greenai_tensor_from_data(GREENAI_DTYPE_F32, shape, 2, NULL, 16, &t),
                 GREENAI_ERR_NULL_POINTER);
    CHECK(t == sentinel);

    size_t small[1];
    CHECK_OK(greenai_tensor_new(GREENAI_DTYPE_U8, shape, 2, &t));
    CHECK_STATUS(greenai_tensor_shape(t, small, 1), GREENAI_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(greenai_tensor_dtype(t, NULL), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_tensor_dtype(NULL, NULL), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_tensor_ndim(NULL, small), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_tensor_data(NULL, NULL), GREENAI_ERR_NULL_POINTER);
    greenai_tensor_free(t);
    greenai_tensor_free(NULL);
}

int main(void) {
    test_version_and_status_names();
    test_tensor_round_trip();
    test_new_is_zeroed_and_packed_sizes_round_up();
    test_bad_arguments_write_nothing();
    CHECK_DONE();
}
