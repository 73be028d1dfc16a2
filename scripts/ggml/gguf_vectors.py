#!/usr/bin/env python3
"""Writes test vectors of the PyPI `gguf` package's numpy quantizers (gguf.quants.quantize /
dequantize) for Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1, in the format of ref_vectors.c (see README.md).

Usage: gguf_vectors.py OUT.bin [--seed N] [--small]
"""
import argparse
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]


def cases(rng, small):
    """(name, matrix) pairs of the same kinds as ref_vectors.c, drawn with numpy."""
    shapes = [(1, 64), (2, 32)] if small else [(2, 256), (1, 96), (3, 32)]
    g = lambda s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    kinds = {
        "gauss": lambda s: g(s),
        "zeros": lambda s: np.zeros(s, np.float32),
        "huge": lambda s: g(s) * np.float32(1e30),
        "tiny": lambda s: g(s) * np.float32(1e-30),
        "outlier": lambda s: outlier(g(s)),
        "negative": lambda s: -np.abs(g(s)) - np.float32(0.001),
        "positive": lambda s: np.abs(g(s)) + np.float32(0.001),
        "sigma0.02": lambda s: g(s) * np.float32(0.02),
    }
    for kind, make in kinds.items():
        for s in shapes:
            yield f"{kind}_{s[0]}x{s[1]}", make(s)
    for anchor in [127.0, -127.0, -8.0, -16.0, 15.0, 31.0]:
        yield f"ties_{anchor:g}_1x128", ties(rng, anchor, 128)


def outlier(x):
    x = x * np.float32(0.01)
    x.flat[x.size // 3] = np.float32(100.0)
    return x


def ties(rng, anchor, n):
    """Halfway values k + 0.5 with the anchor first in each 16 (and 0 second for a positive one),
    so that each block's scale is exactly 1 for the type the anchor is meant for."""
    span = int(abs(anchor))
    r = rng.integers(0, span, n)
    x = (r + 0.5 if anchor > 0 else r - span // 2 + 0.5).astype(np.float32)
    x[0::16] = anchor
    if anchor > 0:
        x[1::16] = 0.0
    return x.reshape(1, n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--small", action="store_true", help="fewer, smaller cases (live test)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    all_cases = list(cases(rng, args.small))
    with np.errstate(all="ignore"), open(args.out, "wb") as f:
        f.write(b"GGMLTV01")
        f.write(struct.pack("<I", len(all_cases)))
        for name, x in all_cases:
            rows, cols = x.shape
            f.write(struct.pack("<I", len(name)) + name.encode())
            f.write(struct.pack("<II", rows, cols))
            f.write(x.astype("<f4").tobytes())
            f.write(struct.pack("<I", len(TYPES)))
            for t in TYPES:
                q = quants.quantize(x, t)
                y = quants.dequantize(q, t).astype("<f4")
                f.write(struct.pack("<II", int(t), q.nbytes))
                f.write(q.tobytes())
                f.write(y.tobytes())


if __name__ == "__main__":
    main()
