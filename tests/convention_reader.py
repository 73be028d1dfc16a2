#!/usr/bin/env python3
"""An independent reader of greenai's compressed-file convention, written from the README's section
"The compressed-file convention" alone (numpy and safetensors, no greenai code).

Usage: convention_reader.py COMPRESSED OUT

Writes OUT, a safetensors file with every logical tensor of COMPRESSED: changed tensors decoded to
float32 in their logical shape, tensors passed through as stored, companions left out.
"""

import json
import struct
import sys

import numpy as np
from safetensors.numpy import save_file

DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
    "BOOL": np.bool_,
}
F32 = np.float32


def read_safetensors(path):
    """The header's metadata and each tensor as (dtype name, shape, raw bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        tensors[name] = (info["dtype"], list(info["shape"]), body[a:b])
    return meta, tensors


def as_array(t):
    dtype, shape, raw = t
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).reshape(shape)


def lo(b):
    return (b & 0xF).astype(np.int32)


def hi(b):
    return (b >> 4).astype(np.int32)


def f16(raw2):
    """float32 of little-endian f16 byte pairs (an array of shape [..., 2])."""
    return np.ascontiguousarray(raw2).view("<f2").astype(F32)[..., 0]


# ggml block decoders: each takes the blocks as a uint8 array [nblocks, block bytes] and returns
# float32 [nblocks, elements], float32 operations in the README's order.
def q8_0(b):
    d = f16(b[:, 0:2])[:, None]
    return b[:, 2:34].view(np.int8).astype(F32) * d


def q4_0(b):
    d = f16(b[:, 0:2])[:, None]
    qs = b[:, 2:18]
    return np.concatenate([(lo(qs) - 8).astype(F32) * d, (hi(qs) - 8).astype(F32) * d], axis=1)


def q4_1(b):
    d, m = f16(b[:, 0:2])[:, None], f16(b[:, 2:4])[:, None]
    qs = b[:, 4:20]
    return np.concatenate([lo(qs).astype(F32) * d + m, hi(qs).astype(F32) * d + m], axis=1)


def q5_values(qh_bytes, qs):
    qh = np.ascontiguousarray(qh_bytes).view("<u4").astype(np.int64)  # [nblocks, 1]
    j = np.arange(16)
    x0 = lo(qs) | (((qh >> j) << 4) & 0x10)
    x1 = hi(qs) | ((qh >> (j + 12)) & 0x10)
    return x0.astype(np.int32), x1.astype(np.int32)


def q5_0(b):
    d = f16(b[:, 0:2])[:, None]
    x0, x1 = q5_values(b[:, 2:6], b[:, 6:22])
    return np.concatenate([(x0 - 16).astype(F32) * d, (x1 - 16).astype(F32) * d], axis=1)


def q5_1(b):
    d, m = f16(b[:, 0:2])[:, None], f16(b[:, 2:4])[:, None]
    x0, x1 = q5_values(b[:, 4:8], b[:, 8:24])
    return np.concatenate([x0.astype(F32) * d + m, x1.astype(F32) * d + m], axis=1)


def q4_k(b):
    d, dmin = f16(b[:, 0:2])[:, None], f16(b[:, 2:4])[:, None]
    scales = b[:, 4:16].astype(np.int32)
    qs = b[:, 16:144]

    def sc_mn(j):
        if j < 4:
            return scales[:, j] & 63, scales[:, j + 4] & 63
        return ((scales[:, j + 4] & 0xF) | ((scales[:, j - 4] >> 6) << 4),
                (scales[:, j + 4] >> 4) | ((scales[:, j] >> 6) << 4))

    out = np.empty((b.shape[0], 256), dtype=F32)
    for n in range(4):
        q = qs[:, 32 * n:32 * n + 32]
        (s1, n1), (s2, n2) = sc_mn(2 * n), sc_mn(2 * n + 1)
        d1, m1 = d * s1.astype(F32)[:, None], dmin * n1.astype(F32)[:, None]
        d2, m2 = d * s2.astype(F32)[:, None], dmin * n2.astype(F32)[:, None]
        out[:, 64 * n:64 * n + 32] = d1 * lo(q).astype(F32) - m1
        out[:, 64 * n + 32:64 * n + 64] = d2 * hi(q).astype(F32) - m2
    return out


def q6_k(b):
    d = f16(b[:, 208:210])[:, None]
    out = np.empty((b.shape[0], 256), dtype=F32)
    for h in range(2):
        ql = b[:, 64 * h:64 * h + 64].astype(np.int32)
        qh = b[:, 128 + 32 * h:128 + 32 * h + 32].astype(np.int32)
        sc = b[:, 192 + 8 * h:192 + 8 * h + 8].view(np.int8).astype(F32)
        l = np.arange(32)
        is_ = l // 16
        q1 = ((ql[:, l] & 0xF) | ((qh & 3) << 4)) - 32
        q2 = ((ql[:, l + 32] & 0xF) | (((qh >> 2) & 3) << 4)) - 32
        q3 = ((ql[:, l] >> 4) | (((qh >> 4) & 3) << 4)) - 32
        q4 = ((ql[:, l + 32] >> 4) | (((qh >> 6) & 3) << 4)) - 32
        base = 128 * h
        out[:, base + l] = d * sc[:, is_] * q1.astype(F32)
        out[:, base + l + 32] = d * sc[:, is_ + 2] * q2.astype(F32)
        out[:, base + l + 64] = d * sc[:, is_ + 4] * q3.astype(F32)
        out[:, base + l + 96] = d * sc[:, is_ + 6] * q4.astype(F32)
    return out


GGML = {  # name: (elements per block, bytes per block, decoder)
    "q8_0": (32, 34, q8_0), "q4_0": (32, 18, q4_0), "q4_1": (32, 20, q4_1), "q5_0": (32, 22, q5_0),
    "q5_1": (32, 24, q5_1), "q4_K": (256, 144, q4_k), "q6_K": (256, 210, q6_k),
}


def unpack4(packed, count, signed):
    """The 4-bit integers: element 2k in the low nibble of byte k, 2k+1 in the high nibble."""
    p = np.asarray(packed, dtype=np.uint8)
    nib = np.empty(p.size * 2, dtype=np.int32)
    nib[0::2] = p & 0xF
    nib[1::2] = p >> 4
    nib = nib[:count]
    if signed:
        nib = np.where(nib >= 8, nib - 16, nib)
    return nib


def param_index(shape, granularity, axis, block):
    """The parameter index of every element, row-major."""
    numel = int(np.prod(shape, dtype=np.int64))
    if granularity == "tensor":
        return np.zeros(numel, dtype=np.int64)
    idx = np.indices(shape).reshape(len(shape), -1)
    if granularity == "channel":
        return idx[axis]
    pshape = list(shape)
    pshape[axis] = -(-shape[axis] // block)
    idx[axis] //= block
    return np.ravel_multi_index(tuple(idx), pshape)


def decode_dense(kind, meta, shape, elems, tensors, name):
    """float32 values (flat) of a dense element array `elems` (the stored tensor's dtype/raw)."""
    numel = int(np.prod(shape, dtype=np.int64))
    if kind == "cast":
        return as_array(elems).astype(F32).reshape(-1)
    if kind == "pruned":
        return as_array(elems).astype(F32).reshape(-1)
    if kind == "ggml":
        per, size, decode = GGML[meta["type"]]
        blocks = np.frombuffer(elems[2], dtype=np.uint8).reshape(-1, size)
        return decode(blocks).reshape(-1)[:numel]
    qtype = meta["qtype"]
    if qtype in ("i4", "u4"):
        q = unpack4(np.frombuffer(elems[2], dtype=np.uint8), numel, qtype == "i4")
    else:
        q = as_array(elems).astype(np.int32).reshape(-1)
    g = param_index(shape, meta["granularity"], int(meta["axis"]), int(meta["block"]))
    scale = as_array(tensors[name + ".scale"]).reshape(-1)[g]
    if meta["mode"] == "symmetric":
        return (q).astype(F32) * scale
    zp_t = tensors[name + ".zero_point"]
    zp = as_array(zp_t).reshape(-1)[g]
    if zp_t[0] == "F32":
        return scale * (q.astype(F32) - zp)
    return (q - zp.astype(np.int32)).astype(F32) * scale


def elem_bits(kind, meta, dtype):
    if kind == "quant" and meta["qtype"] in ("i4", "u4"):
        return 4
    return np.dtype(DTYPES[dtype]).itemsize * 8 if dtype != "BF16" else 16


def get_elements(raw, bits, count):
    """The first `count` stored elements as an array of raw units (nibbles or bytes groups)."""
    if bits == 4:
        return unpack4(np.frombuffer(raw, dtype=np.uint8), count, False)
    w = bits // 8
    return np.frombuffer(raw, dtype=np.uint8)[:count * w].reshape(count, w)


def put_elements(dense_units, positions, values, bits):
    if bits == 4:
        dense_units[positions] = values
    else:
        dense_units[positions, :] = values


def densify(storage, meta, shape, t, tensors, name, bits):
    """(dense raw bytes, stored mask) of a sparse tensor."""
    numel = int(np.prod(shape, dtype=np.int64))
    cols = shape[-1] if shape else 1
    rows = numel // cols if cols else 0
    if storage == "csr":
        row_ptr = as_array(tensors[name + ".row_ptr"]).astype(np.int64)
        col_idx = as_array(tensors[name + ".col_idx"]).astype(np.int64)
        nnz = int(row_ptr[-1])
        row_of = np.repeat(np.arange(rows), np.diff(row_ptr))
        positions = row_of * cols + col_idx
        count = nnz
    else:
        n, m = int(meta["n"]), int(meta["m"])
        count = numel // m * n
        b = int(np.ceil(np.log2(m))) if m > 1 else 0
        stream = np.unpackbits(np.frombuffer(tensors[name + ".nm_index"][2], dtype=np.uint8), bitorder="little")
        slots = np.arange(count)
        pos = np.zeros(count, dtype=np.int64)
        for k in range(b):
            pos |= stream[slots * b + k].astype(np.int64) << k
        positions = slots // n * m + pos
    values = get_elements(t[2], bits, count)
    if bits == 4:
        dense = np.zeros(numel, dtype=np.int32)
        put_elements(dense, positions, values, bits)
        packed = np.zeros((numel + 1) // 2, dtype=np.uint8)
        d = dense.astype(np.uint8) & 0xF
        packed[:] = d[0::2]
        packed[: d[1::2].size] |= d[1::2] << 4
        raw = packed.tobytes()
    else:
        dense = np.zeros((numel, bits // 8), dtype=np.uint8)
        put_elements(dense, positions, values, bits)
        raw = dense.tobytes()
    stored = np.zeros(numel, dtype=bool)
    stored[positions] = True
    return raw, stored


def read_convention(path):
    meta, tensors = read_safetensors(path)
    if meta.get("greenai.format") not in ("1", "2"):
        raise ValueError(f"greenai.format {meta.get('greenai.format')!r}")
    entries = {}
    for key, text in meta.items():
        if key.startswith("greenai.tensor."):
            entries[key[len("greenai.tensor."):]] = dict(kv.split("=", 1) for kv in text.split(";"))
    companions = set()
    for name, m in entries.items():
        for suffix in (".scale", ".zero_point", ".row_ptr", ".col_idx", ".nm_index"):
            if name + suffix in tensors and (
                (suffix in (".scale", ".zero_point") and m["kind"] == "quant")
                or (suffix in (".row_ptr", ".col_idx") and m.get("storage") == "csr")
                or (suffix == ".nm_index" and m.get("storage") == "nm")
            ):
                companions.add(name + suffix)
    out = {}
    for name, t in tensors.items():
        if name in companions:
            continue
        m = entries.get(name)
        if m is None:
            out[name] = np.array(as_array(t))
            continue
        shape = [int(d) for d in m["shape"].split(",") if d]
        kind = m["kind"]
        storage = m.get("storage", "dense")
        if storage == "dense":
            values = decode_dense(kind, m, shape, t, tensors, name)
        else:
            dense_dtype = t[0]
            bits = elem_bits(kind, m, dense_dtype)
            raw, stored = densify(storage, m, shape, t, tensors, name, bits)
            numel = int(np.prod(shape, dtype=np.int64))
            dense_shape = [(numel + 1) // 2] if bits == 4 else shape
            values = decode_dense(kind, m, shape, (dense_dtype, dense_shape, raw), tensors, name)
            values = np.where(stored, values, F32(0.0))
        out[name] = np.ascontiguousarray(values.astype(F32).reshape(shape))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    save_file(read_convention(sys.argv[1]), sys.argv[2])


if __name__ == "__main__":
    main()
