#!/usr/bin/env python3
"""Writes tests/data/entropy_vectors.txt: TensorRT-style entropy calibration thresholds computed by an
independent numpy transcription of NVIDIA pytorch-quantization's `_compute_amax_entropy`
(pytorch_quantization/calib/histogram.py), on |x| histograms of 2048 bins.

Run: python3 tests/data/make_entropy_vectors.py   (needs numpy only)

Format, one case per line:  <num_bits> | <bin:count ...> | <chosen upper-edge bin index>
"""
import os
from collections import Counter

import numpy as np


def kl(p, q):
    # scipy.stats.entropy(p, q): both normalised, sum p log(p / q) over p > 0, inf where q == 0 < p.
    p = p / np.sum(p)
    q = q / np.sum(q)
    out = 0.0
    for a, b in zip(p, q):
        if a > 0:
            if b == 0:
                return np.inf
            out += a * np.log(a / b)
    return out


def compute_amax_entropy_bin(calib_hist, num_bits, unsigned, stride=1, start_bin=128):
    bins = calib_hist.astype(np.float64).copy()
    bins[0] = bins[1]
    divergences = []
    arguments = []
    nbins = 1 << (num_bits - 1 + int(unsigned))
    starting = start_bin
    stop = len(bins)
    new_density_counts = np.zeros(nbins, dtype=np.float64)
    for i in range(starting, stop + 1, stride):
        new_density_counts.fill(0)
        space = np.linspace(0, i, num=nbins + 1)
        digitized_space = np.digitize(range(i), space) - 1
        digitized_space[bins[:i] == 0] = -1
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density_counts[digitized] += bins[idx]
        counter = Counter(digitized_space)
        for key, val in counter.items():
            if key != -1:
                new_density_counts[key] = new_density_counts[key] / val
        new_density = np.zeros(i, dtype=np.float64)
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density[idx] = new_density_counts[digitized]
        reference_density = np.array(bins[: len(digitized_space)])
        reference_density[-1] += np.sum(bins[i:])
        divergences.append(kl(reference_density, new_density))
        arguments.append(i)
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    return last_argmin * stride + starting


def main():
    rng = np.random.default_rng(7)
    lines = ["# numpy %s transcription of pytorch-quantization _compute_amax_entropy" % np.__version__]
    # (num_bits, histogram): |x| histograms whose occupied bins end between 1024 and 2048 (as greenai's
    # power-of-two grid guarantees), trimmed to the last occupied bin, as greenai searches them.
    for num_bits, scale, n, tail in [(8, 150.0, 30000, 3), (8, 400.0, 20000, 5), (4, 60.0, 5000, 2), (8, 90.0, 8000, 0)]:
        x = np.abs(rng.laplace(scale=scale, size=n))
        x = np.concatenate([x, rng.uniform(1100, 2000, tail)])
        x = x[x < 2047]
        hist = np.bincount(x.astype(np.int64), minlength=2048)[:2048]
        if hist[1024:].sum() == 0:
            hist[1100] += 1
        stop = int(np.nonzero(hist)[0][-1]) + 1
        nbins = 1 << (num_bits - 1)
        chosen = compute_amax_entropy_bin(hist[:stop], num_bits, False, start_bin=nbins)
        sparse = " ".join(f"{j}:{c}" for j, c in enumerate(hist) if c)
        lines.append(f"{num_bits} | {sparse} | {chosen}")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entropy_vectors.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 1} cases to {path}")


if __name__ == "__main__":
    main()
