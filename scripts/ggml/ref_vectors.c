/*
 * Writes test vectors of ggml's reference quantizers and dequantizers (ggml-quants.c, compiled
 * from the ggml mirror, see README.md): for each input matrix, and for each of the nine block
 * types whose block divides its columns, ggml's quantized bytes and dequantized floats.
 *
 * File format (all little-endian):
 *   "GGMLTV01", u32 ncases, then per case:
 *     u32 name_len, name bytes, u32 rows, u32 cols, f32 x[rows*cols], u32 ntypes, then per type:
 *       u32 ggml_type, u32 nbytes, u8 q[nbytes], f32 y[rows*cols]
 */
#include "ggml-quants.h" /* declares the blocks (ggml-common.h) and the reference functions */
#include "ggml-impl.h"   /* GGML_FP16_TO_FP32 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ggml-quants.c references these from functions the reference quantizers never call. */
void ggml_abort(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d (%s)\n", file, line, fmt);
    abort();
}
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void)type; (void)ne; abort(); }
const char *ggml_type_name(enum ggml_type type) { (void)type; abort(); }
size_t ggml_type_size(enum ggml_type type) { (void)type; abort(); }

typedef void (*quant_fn)(const float *, void *, int64_t);
typedef void (*dequant_fn)(const void *, float *, int64_t);

/* ggml has no dequantize_row_q8_1: x = d * q, as Q8_0 (documented in README.md). */
static void dequantize_row_q8_1_local(const block_q8_1 *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK8_1; i++) {
        const float d = GGML_FP16_TO_FP32(x[i].d);
        for (int j = 0; j < QK8_1; j++) y[i * QK8_1 + j] = x[i].qs[j] * d;
    }
}

static const struct {
    int type, block, bytes;
    quant_fn q;
    dequant_fn dq;
} TYPES[] = {
    {GGML_TYPE_Q4_0, QK4_0, sizeof(block_q4_0), (quant_fn)quantize_row_q4_0_ref, (dequant_fn)dequantize_row_q4_0},
    {GGML_TYPE_Q4_1, QK4_1, sizeof(block_q4_1), (quant_fn)quantize_row_q4_1_ref, (dequant_fn)dequantize_row_q4_1},
    {GGML_TYPE_Q5_0, QK5_0, sizeof(block_q5_0), (quant_fn)quantize_row_q5_0_ref, (dequant_fn)dequantize_row_q5_0},
    {GGML_TYPE_Q5_1, QK5_1, sizeof(block_q5_1), (quant_fn)quantize_row_q5_1_ref, (dequant_fn)dequantize_row_q5_1},
    {GGML_TYPE_Q8_0, QK8_0, sizeof(block_q8_0), (quant_fn)quantize_row_q8_0_ref, (dequant_fn)dequantize_row_q8_0},
    {GGML_TYPE_Q8_1, QK8_1, sizeof(block_q8_1), (quant_fn)quantize_row_q8_1_ref, (dequant_fn)dequantize_row_q8_1_local},
    {GGML_TYPE_Q4_K, QK_K, sizeof(block_q4_K), (quant_fn)quantize_row_q4_K_ref, (dequant_fn)dequantize_row_q4_K},
    {GGML_TYPE_Q6_K, QK_K, sizeof(block_q6_K), (quant_fn)quantize_row_q6_K_ref, (dequant_fn)dequantize_row_q6_K},
    {GGML_TYPE_Q8_K, QK_K, sizeof(block_q8_K), (quant_fn)quantize_row_q8_K_ref, (dequant_fn)dequantize_row_q8_K},
};
#define NTYPES (sizeof(TYPES) / sizeof(TYPES[0]))

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform(void) { return ((next_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static float gauss(void) { return (float)(sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform())); }

static FILE *out;
static void put_u32(uint32_t v) { fwrite(&v, 4, 1, out); }

static void emit(const char *name, int rows, int cols, const float *x) {
    put_u32((uint32_t)strlen(name));
    fwrite(name, 1, strlen(name), out);
    put_u32((uint32_t)rows);
    put_u32((uint32_t)cols);
    fwrite(x, sizeof(float), (size_t)rows * cols, out);
    uint32_t ntypes = 0;
    for (size_t t = 0; t < NTYPES; t++) ntypes += cols % TYPES[t].block == 0;
    put_u32(ntypes);
    float *y = malloc(sizeof(float) * rows * cols);
    for (size_t t = 0; t < NTYPES; t++) {
        if (cols % TYPES[t].block) continue;
        const size_t row_bytes = (size_t)cols / TYPES[t].block * TYPES[t].bytes;
        /* Zeroed first: quantize_row_q8_K_ref leaves bsums unwritten for an all-zero block. */
        uint8_t *q = calloc(rows, row_bytes);
        for (int r = 0; r < rows; r++) {
            TYPES[t].q(x + (size_t)r * cols, q + r * row_bytes, cols);
            TYPES[t].dq(q + r * row_bytes, y + (size_t)r * cols, cols);
        }
        put_u32((uint32_t)TYPES[t].type);
        put_u32((uint32_t)(rows * row_bytes));
        fwrite(q, 1, rows * row_bytes, out);
        fwrite(y, sizeof(float), (size_t)rows * cols, out);
        free(q);
    }
    free(y);
}

enum kind { GAUSS, ZEROS, HUGE_, TINY, SUBNORMAL, OUTLIER, NEG, POS, TIES, RAMP };

static void fill(enum kind k, float *x, int n, float anchor) {
    for (int i = 0; i < n; i++) {
        const float g = gauss();
        switch (k) {
        case GAUSS: x[i] = g; break;
        case ZEROS: x[i] = 0.0f; break;
        case HUGE_: x[i] = g * 1e30f; break;
        case TINY: x[i] = g * 1e-30f; break;
        case SUBNORMAL: x[i] = g * 1e-39f; break;
        case OUTLIER: x[i] = g * 0.01f; break;
        case NEG: x[i] = -fabsf(g) - 0.001f; break;
        case POS: x[i] = fabsf(g) + 0.001f; break;
        case RAMP: x[i] = (float)(i % 97) - 48.0f; break;
        case TIES: {
            /* Halfway values k + 0.5 in (-|anchor|, |anchor|) (or (0, anchor) for a positive anchor of
             * the min/max types), with the anchor first in each 16 so every block's scale is 1
             * (or a power of two). */
            const int span = (int)fabsf(anchor);
            const long r = (long)(next_u64() % (uint64_t)span);
            if (i % 16 == 0) x[i] = anchor;
            else if (anchor > 0 && i % 16 == 1) x[i] = 0.0f; /* minimum 0: the Q4_1/Q5_1 scale is 1 */
            else x[i] = anchor > 0 ? (float)r + 0.5f : (float)(r - span / 2) + 0.5f;
            break;
        }
        }
    }
    if (k == OUTLIER) x[n / 3] = 100.0f;
}

struct shape { int rows, cols; };

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.bin\n", argv[0]);
        return 2;
    }
    out = fopen(argv[1], "wb");
    if (!out) return 1;
    fwrite("GGMLTV01", 1, 8, out);
    long ncases_at = ftell(out);
    put_u32(0);
    uint32_t ncases = 0;
    static float x[2 * 512];
    char name[64];
    const struct { enum kind k; const char *name; } kinds[] = {
        {GAUSS, "gauss"}, {ZEROS, "zeros"}, {HUGE_, "huge"}, {TINY, "tiny"}, {SUBNORMAL, "subnormal"},
        {OUTLIER, "outlier"}, {NEG, "negative"}, {POS, "positive"}, {RAMP, "ramp"},
    };
    const struct shape shapes[] = {{1, 256}, {1, 512}, {2, 32}, {1, 96}};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            const int n = shapes[s].rows * shapes[s].cols;
            fill(kinds[k].k, x, n, 0.0f);
            snprintf(name, sizeof name, "%s_%dx%d", kinds[k].name, shapes[s].rows, shapes[s].cols);
            emit(name, shapes[s].rows, shapes[s].cols, x);
            ncases++;
        }
    }
    /* Ties: anchors that make the scale exactly 1 for Q8 (127), Q4_0 (-8), Q5_0 (-16), Q4_1 (15),
     * Q5_1 (31), Q8_K (-127), and a few others. */
    const float anchors[] = {127.0f, -127.0f, -8.0f, 8.0f, -16.0f, 16.0f, 15.0f, 31.0f, 63.0f};
    for (size_t a = 0; a < sizeof(anchors) / sizeof(anchors[0]); a++) {
        fill(TIES, x, 256, anchors[a]);
        snprintf(name, sizeof name, "ties_%g_1x256", anchors[a]);
        emit(name, 1, 256, x);
        ncases++;
    }
    /* Scaled Gaussians as in model weights, several widths. */
    const float sigmas[] = {0.02f, 3.0f, 1e4f};
    for (size_t s = 0; s < 3; s++) {
        for (int i = 0; i < 2 * 256; i++) x[i] = gauss() * sigmas[s];
        snprintf(name, sizeof name, "gauss_sigma%g_2x256", sigmas[s]);
        emit(name, 2, 256, x);
        ncases++;
    }
    fseek(out, ncases_at, SEEK_SET);
    put_u32(ncases);
    fclose(out);
    return 0;
}
