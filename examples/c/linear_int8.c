/* How an inference engine uses greenai for one int8 linear layer:
 * quantize the f32 weights per output channel, pack them once into a layer, run it on f32 inputs
 * (quantized per row on the fly), and measure the error against the f32 product.
 *
 * Build: cc -std=c99 -Iinclude examples/c/linear_int8.c target/release/libgreenai.a -lpthread -ldl -lm */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "greenai.h"

enum { OUT = 64, IN = 256, BATCH = 8 };

/* A deterministic stand-in for real weights and activations: roughly Gaussian (sum of uniforms). */
static float noise(uint32_t *state) {
    float sum = 0.0f;
    for (int i = 0; i < 12; i++) {
        *state = *state * 1664525u + 1013904223u;
        sum += (float)(*state >> 8) / 16777216.0f;
    }
    return sum - 6.0f;
}

static int fail(const char *what, greenai_status status) {
    fprintf(stderr, "%s: %s: %s\n", what, greenai_status_str(status), greenai_last_error_message());
    return EXIT_FAILURE;
}

int main(void) {
    static float w[OUT * IN], bias[OUT], x[BATCH * IN], y[BATCH * OUT], reference[BATCH * OUT];
    static float scales[OUT];
    static int32_t zero_points[OUT];
    static int8_t wq[OUT * IN];
    uint32_t state = 42;
    for (int i = 0; i < OUT * IN; i++) w[i] = 0.05f * noise(&state);
    for (int i = 0; i < OUT; i++) bias[i] = 0.1f * noise(&state);
    for (int i = 0; i < BATCH * IN; i++) x[i] = noise(&state);

    /* 1. Quantize the weights per output channel in one call (PyTorch's per-channel convention):
          the scales, zero points and int8 values come back together. */
    greenai_quant_spec spec;
    greenai_status s = greenai_quant_spec_preset(GREENAI_PRESET_PYTORCH_WEIGHT_I8_PER_CHANNEL, &spec);
    if (s != GREENAI_OK) return fail("preset", s);
    const size_t shape[2] = {OUT, IN};
    s = greenai_quantize_min_max(&spec, w, shape, 2, scales, zero_points, OUT, wq, sizeof wq);
    if (s != GREENAI_OK) return fail("quantize weights", s);

    /* 2. Pack the int8 weights once into a layer (the engine keeps this handle). */
    greenai_qlinear *layer = NULL;
    s = greenai_qlinear_from_int8(wq, OUT, IN, scales, zero_points, bias, &layer);
    if (s != GREENAI_OK) return fail("pack layer", s);

    /* 3. Run it: inputs quantized per row to u8 (ONNX Runtime's dynamic quantization), f32 out. */
    s = greenai_qlinear_forward(layer, x, BATCH, GREENAI_ACT_QUANT_U8_AFFINE, y);
    greenai_qlinear_free(layer);
    if (s != GREENAI_OK) return fail("forward", s);

    /* 4. Compare with the f32 layer computed here in double precision. */
    for (int b = 0; b < BATCH; b++) {
        for (int o = 0; o < OUT; o++) {
            double acc = bias[o];
            for (int i = 0; i < IN; i++) acc += (double)x[b * IN + i] * (double)w[o * IN + i];
            reference[b * OUT + o] = (float)acc;
        }
    }
    greenai_error_metrics m;
    s = greenai_quant_error_metrics(reference, y, BATCH * OUT, &m);
    if (s != GREENAI_OK) return fail("metrics", s);
    printf("int8 linear %dx%d, batch %d: SQNR %.1f dB, cosine %.6f, max |err| %.4f (weights %d -> %d bytes)\n",
           OUT, IN, BATCH, m.sqnr_db, m.cosine, m.max_abs, (int)(sizeof w), (int)(sizeof wq + sizeof scales));

    /* Relative Frobenius error below 1% is an SQNR above 40 dB. */
    return m.sqnr_db > 40.0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
