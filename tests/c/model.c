/* Reading a compressed model through the C ABI as an engine would: open greenai's int8 file and the
 * original f32 one (made by tests/c_abi.rs in $GREENAI_TEST_MODELS), list the tensors, read each as
 * f32 within int8's error bound of the original (computed here), build every weight into a ready int8
 * layer and run it against a double-precision product, and every bad input. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "check.h"

enum { MAX_ELEMS = 24 * 40, BATCH = 3 };

static greenai_model *open_fixture(const char *name) {
    char path[4096];
    const char *dir = getenv("GREENAI_TEST_MODELS");
    greenai_model *model = NULL;
    if (dir == NULL || strlen(dir) + strlen(name) + 2 > sizeof(path)) {
        fprintf(stderr, "GREENAI_TEST_MODELS is not set (tests/c_abi.rs sets it)\n");
        exit(EXIT_FAILURE);
    }
    sprintf(path, "%s/%s", dir, name);
    CHECK_OK(greenai_model_open(path, &model));
    CHECK(model != NULL);
    return model;
}

static float plain_values[MAX_ELEMS], int8_values[MAX_ELEMS], bias[64];

/* Reads tensor `name` of `model` as f32 into `out`; returns its info. */
static greenai_model_tensor read_named(const greenai_model *model, const char *name, float *out) {
    size_t index = 999;
    greenai_model_tensor info;
    memset(&info, 0, sizeof(info));
    CHECK_OK(greenai_model_find(model, name, &index));
    CHECK_OK(greenai_model_tensor_info(model, index, &info));
    CHECK(info.numel <= MAX_ELEMS);
    CHECK_OK(greenai_model_read_f32(model, index, out, info.numel));
    return info;
}

static void test_every_tensor_against_the_original(void) {
    greenai_model *plain = open_fixture("plain.safetensors");
    greenai_model *int8 = open_fixture("int8.safetensors");
    const char *format = NULL;
    size_t count = 0, plain_count = 0, i;
    CHECK_OK(greenai_model_format(int8, &format));
    CHECK(format != NULL && strcmp(format, "greenai") == 0);
    CHECK_OK(greenai_model_format(plain, &format));
    CHECK(format != NULL && strcmp(format, "safetensors") == 0);
    CHECK_OK(greenai_model_tensor_count(int8, &count));
    CHECK_OK(greenai_model_tensor_count(plain, &plain_count));
    CHECK(count == 4 && plain_count == 4); /* scales are folded into their weight */
    for (i = 0; i < count; i++) {
        greenai_model_tensor info, orig;
        size_t r, c, k;
        CHECK_OK(greenai_model_tensor_info(int8, i, &info));
        orig = read_named(plain, info.name, plain_values);
        CHECK(info.ndim == orig.ndim && info.numel == orig.numel);
        CHECK(memcmp(info.shape, orig.shape, sizeof(info.shape)) == 0);
        CHECK_OK(greenai_model_read_f32(int8, i, int8_values, info.numel));
        if (info.ndim == 1) {
            CHECK(strcmp(info.stored, "f32") == 0);
            CHECK(memcmp(int8_values, plain_values, info.numel * sizeof(float)) == 0);
            continue;
        }
        CHECK(info.ndim == 2 && strcmp(info.stored, "int8") == 0);
        CHECK(strstr(info.scheme, "per-channel") != NULL);
        CHECK(info.stored_bytes == info.numel + 4 * info.shape[0]); /* values + f32 scales */
        for (r = 0; r < info.shape[0]; r++) {
            double amax = 0.0, scale;
            for (c = 0; c < info.shape[1]; c++) {
                double v = fabs(plain_values[r * info.shape[1] + c]);
                if (v > amax) amax = v;
            }
            scale = amax / 127.0; /* symmetric int8: every value within half a step */
            for (c = 0; c < info.shape[1]; c++) {
                k = r * info.shape[1] + c;
                CHECK(fabs((double)int8_values[k] - plain_values[k]) <= scale * (0.5 + 1e-5));
            }
        }
    }
    greenai_model_free(plain);
    greenai_model_free(int8);
}

/* Each weight as a ready int8 layer, against x times the f32-read weights plus the bias, in double. */
static void test_layers_run(void) {
    static const char *const layers[] = {"fc1", "fc2"};
    greenai_model *int8 = open_fixture("int8.safetensors");
    size_t l;
    for (l = 0; l < 2; l++) {
        char name[32];
        greenai_model_tensor w, b;
        greenai_qlinear *layer = NULL;
        size_t index = 0, in_f = 0, out_f = 0, i, o, c;
        float x[BATCH * 40], y[BATCH * 24];
        sprintf(name, "%s.bias", layers[l]);
        b = read_named(int8, name, bias);
        sprintf(name, "%s.weight", layers[l]);
        w = read_named(int8, name, int8_values);
        CHECK_OK(greenai_model_find(int8, name, &index));
        CHECK_OK(greenai_model_read_qlinear(int8, index, bias, b.numel, &layer));
        CHECK_OK(greenai_qlinear_dims(layer, &in_f, &out_f));
        CHECK(in_f == w.shape[1] && out_f == w.shape[0]);
        for (i = 0; i < BATCH * in_f; i++) x[i] = (float)((int)(i * 37 % 101) - 50) / 25.0f;
        CHECK_OK(greenai_qlinear_forward(layer, x, BATCH, GREENAI_ACT_QUANT_U8_AFFINE, y));
        for (i = 0; i < BATCH; i++) {
            for (o = 0; o < out_f; o++) {
                double exact = bias[o], bound = 0.0;
                for (c = 0; c < in_f; c++) {
                    exact += (double)x[i * in_f + c] * int8_values[o * in_f + c];
                    bound += fabs(int8_values[o * in_f + c]);
                }
                /* x is quantized to u8 over a range of at most 4: half a step per input. */
                CHECK(fabs(y[i * out_f + o] - exact) <= bound * 4.0 / 255.0);
            }
        }
        greenai_qlinear_free(layer);
    }
    greenai_model_free(int8);
}

static void test_bad_input(void) {
    greenai_model *int8 = open_fixture("int8.safetensors");
    greenai_model *none = (greenai_model *)&bias; /* never written on failure */
    greenai_qlinear *layer = NULL;
    greenai_model_tensor info;
    size_t index = 77, count = 0;
    uint32_t type = 77;
    uint8_t blocks[16];
    CHECK_STATUS(greenai_model_open("no/such/model.safetensors", &none), GREENAI_ERR_IO);
    CHECK(none == (greenai_model *)&bias);
    CHECK_STATUS(greenai_model_open("tests/c/model.c", &none), GREENAI_ERR_FORMAT);
    CHECK_STATUS(greenai_model_open(NULL, &none), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_model_tensor_count(NULL, &count), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_model_find(int8, "no.such.tensor", &index), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(index == 77);
    CHECK_STATUS(greenai_model_tensor_info(int8, 4, &info), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK_OK(greenai_model_find(int8, "fc1.weight", &index));
    int8_values[0] = 12345.0f;
    CHECK_STATUS(greenai_model_read_f32(int8, index, int8_values, 24 * 40 - 1), GREENAI_ERR_BUFFER_TOO_SMALL);
    CHECK(int8_values[0] == 12345.0f);
    CHECK_STATUS(greenai_model_read_f32(int8, index, NULL, 24 * 40), GREENAI_ERR_NULL_POINTER);
    CHECK_STATUS(greenai_model_read_ggml(int8, index, &type, blocks, sizeof(blocks)), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "not in ggml blocks") != NULL);
    CHECK(type == 77);
    CHECK_STATUS(greenai_model_read_qlinear(int8, index, bias, 3, &layer), GREENAI_ERR_BUFFER_TOO_SMALL);
    CHECK(layer == NULL);
    CHECK_OK(greenai_model_find(int8, "fc1.bias", &index));
    CHECK_STATUS(greenai_model_read_qlinear(int8, index, NULL, 0, &layer), GREENAI_ERR_INVALID_ARGUMENT);
    CHECK(strstr(greenai_last_error_message(), "read it as f32") != NULL);
    CHECK(layer == NULL);
    greenai_model_free(NULL);
    greenai_model_free(int8);
}

int main(void) {
    test_every_tensor_against_the_original();
    test_layers_run();
    test_bad_input();
    CHECK_DONE();
}
