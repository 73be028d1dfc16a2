"""An independent reader and writer of compressed-tensors model directories (numpy only), written
from the format's published rules (compressed-tensors 0.20: pack_to_int32, calculate_qparams,
quantize/dequantize in the model dtype, config layout), never calling greenai.

  check ORIG_DIR OUT_DIR SCHEME GROUP_SIZE SYMMETRIC   every written tensor and the config; folders
                                                       with one model.safetensors or shards and
                                                       their index (each module's tensors in the
                                                       shard of its weight, the index exact)
  write DIR EXPECTED                                   a directory as the library lays it out
                                                       (asymmetric, g_idx, two formats) and its
                                                       dequantized tensors
  compare A.safetensors B.safetensors                  identical names, dtypes, shapes, values
"""
import json, os, struct, sys
import numpy as np

DT = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2), "I8": (np.int8, 1),
      "I32": (np.int32, 4), "I64": (np.int64, 8), "U8": (np.uint8, 1)}


def read_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        np_t, _ = DT[info["dtype"]]
        arr = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.dtype(np_t).newbyteorder("<"))
        out[name] = (info["dtype"], list(info["shape"]), arr.reshape(info["shape"]))
    return out


INDEX = "model.safetensors.index.json"


def read_model(folder):
    """Every tensor of a model folder by name, and the file holding each: model.safetensors, or the
    shards its index names (checked: every tensor listed once, in the shard that holds it, total_size
    the sum of their bytes)."""
    index_path = os.path.join(folder, INDEX)
    if not os.path.exists(index_path):
        t = read_st(os.path.join(folder, "model.safetensors"))
        return t, {name: "model.safetensors" for name in t}
    index = json.load(open(index_path))
    weight_map = index["weight_map"]
    tensors, where = {}, {}
    for shard in sorted(set(weight_map.values())):
        for name, t in read_st(os.path.join(folder, shard)).items():
            expect(name not in tensors, f"{name} in two shards")
            expect(weight_map.get(name) == shard, f"index puts {name} in {weight_map.get(name)}, {shard} holds it")
            tensors[name], where[name] = t, shard
    expect(set(weight_map) == set(tensors), f"index lists missing tensors {sorted(set(weight_map) - set(tensors))}")
    size = sum(t[2].nbytes for t in tensors.values())
    expect(index["metadata"]["total_size"] == size, f"total_size {index['metadata']['total_size']} != {size}")
    return tensors, where


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def to_f32(dtype, arr):
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def rounder(dtype):
    """Rounding of an f32 result to the model dtype, nearest even (what torch stores)."""
    if dtype == "F32":
        return lambda x: np.asarray(x, dtype=np.float32)
    if dtype == "F16":
        return lambda x: np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)

    def bf16(x):
        u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
        u = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
        return u.view(np.float32)
    return bf16


EPS = {"F32": np.float32(2.0 ** -23), "F16": np.float32(2.0 ** -10), "BF16": np.float32(2.0 ** -7)}
REL = {"F32": 2.0 ** -24, "F16": 2.0 ** -11, "BF16": 2.0 ** -8}


def unpack_bits(words, count, bits):
    """Element i of each row from bits [i*bits, (i+1)*bits) of the row's little-endian bit stream."""
    rows = words.shape[0]
    stream = np.unpackbits(words.astype("<i4").view(np.uint8).reshape(rows, -1), axis=1, bitorder="little")
    stream = stream[:, :count * bits].reshape(rows, count, bits).astype(np.int64)
    return (stream << np.arange(bits)).sum(-1) - (1 << (bits - 1))


def pack_bits(values, bits):
    rows, count = values.shape
    u = (values.astype(np.int64) + (1 << (bits - 1))).astype(np.uint64)
    bitsarr = ((u[:, :, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8).reshape(rows, -1)
    nwords = -(-count * bits // 32)
    bitsarr = np.pad(bitsarr, ((0, 0), (0, nwords * 32 - bitsarr.shape[1])))
    return np.packbits(bitsarr, axis=1, bitorder="little").view("<i4").reshape(rows, nwords)


def rtn(w, dtype, bits, gs, symmetric):
    """calculate_qparams + quantize for one weight, in the model dtype."""
    rd = rounder(dtype)
    rows, cols = w.shape
    g = w.reshape(rows, cols // gs, gs)
    qmin, qmax = np.float32(-(1 << (bits - 1))), np.float32((1 << (bits - 1)) - 1)
    mn = np.minimum(g.min(-1), np.float32(0))
    mx = np.maximum(g.max(-1), np.float32(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        if symmetric:
            scale = rd(np.maximum(-mn, mx) / ((qmax - qmin) / np.float32(2)))
            zp = np.zeros_like(scale)
        else:
            scale = rd(rd(mx - mn) / (qmax - qmin))
            zp = np.round(np.clip(rd(qmin - rd(mn / scale)), qmin, qmax))
            zp = np.where(np.isnan(zp), np.float32(0), zp).astype(np.float32)
    scale = np.where(scale == 0, EPS[dtype], scale).astype(np.float32)
    q = np.round(np.clip(rd(rd(g / scale[..., None]) + zp[..., None]), qmin, qmax))
    return q.reshape(rows, cols).astype(np.int64), scale, zp.astype(np.int64)


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def check(orig_dir, out_dir, scheme, group_size, symmetric):
    bits = 4 if scheme == "w4a16" else 8
    packed = scheme != "w8a8"
    orig, orig_where = read_model(orig_dir)
    out, out_where = read_model(out_dir)
    expect(sorted(set(orig_where.values())) == sorted(set(out_where.values())),
           f"shards {sorted(set(out_where.values()))} != {sorted(set(orig_where.values()))}")
    cfg0 = json.load(open(os.path.join(orig_dir, "config.json")))
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    seen, ignore, modules = set(), set(), 0
    for name, (dtype, shape, arr) in orig.items():
        module = name[:-len(".weight")] if name.endswith(".weight") else None
        last = module.split(".")[-1] if module else ""
        linear = (module is not None and len(shape) == 2 and "embed" not in module
                  and last not in ("lm_head", "embed_out", "wte", "wpe"))
        if not linear:
            expect(name in out, f"{name} missing")
            o = out[name]
            expect(o[0] == dtype and o[1] == shape and o[2].tobytes() == arr.tobytes(), f"{name} changed")
            expect(out_where[name] == orig_where[name], f"{name} moved to {out_where[name]}")
            seen.add(name)
            if module is not None and len(shape) == 2:
                ignore.add(module)
            continue
        modules += 1
        rows, cols = shape
        gs = cols if group_size == 0 else group_size
        groups = cols // gs
        w = to_f32(dtype, arr)
        q, scale, zp = rtn(w, dtype, bits, gs, symmetric)
        sc = out[module + ".weight_scale"]
        expect(sc[0] == dtype and sc[1] == [rows, groups], f"{module}.weight_scale {sc[:2]}")
        expect(np.array_equal(to_f32(sc[0], sc[2]), scale), f"{module}: scales differ from RTN")
        names = {module + ".weight_scale"}
        if packed:
            p = out[module + ".weight_packed"]
            expect(p[0] == "I32" and p[1] == [rows, -(-cols * bits // 32)], f"{module}.weight_packed {p[:2]}")
            got = unpack_bits(p[2], cols, bits)
            ws = out[module + ".weight_shape"]
            expect(ws[0] == "I64" and ws[2].tolist() == [rows, cols], f"{module}.weight_shape {ws}")
            names |= {module + ".weight_packed", module + ".weight_shape"}
        else:
            p = out[module + ".weight"]
            expect(p[0] == "I8" and p[1] == [rows, cols], f"{module}.weight {p[:2]}")
            got = p[2].astype(np.int64)
            names.add(module + ".weight")
        expect(np.array_equal(got, q), f"{module}: levels differ from RTN ({np.sum(got != q)} of {q.size})")
        zname = module + ".weight_zero_point"
        if symmetric:
            expect(zname not in out, f"{zname} written for a symmetric scheme")
        else:
            z = out[zname]
            if packed:
                expect(z[0] == "I32" and z[1] == [-(-rows * bits // 32), groups], f"{zname} {z[:2]}")
                zgot = unpack_bits(np.ascontiguousarray(z[2].T), rows, bits).T
            else:
                expect(z[0] == "I8" and z[1] == [rows, groups], f"{zname} {z[:2]}")
                zgot = z[2].astype(np.int64)
            expect(np.array_equal(zgot, zp), f"{module}: zero points differ")
            names.add(zname)
        expect(module + ".weight_g_idx" not in out, "g_idx without act order")
        for n in names:
            expect(out_where[n] == orig_where[name], f"{n} in {out_where[n]}, its weight was in {orig_where[name]}")
        seen |= names
        # error bound: half a step (a step for values an asymmetric range clips), plus the dtype's roundings
        rd = rounder(dtype)
        deq = rd(rd((got - np.repeat(zp, gs, 1)).astype(np.float32)) * np.repeat(scale, gs, 1))
        step = np.repeat(scale, gs, 1)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        exact = w / step + np.repeat(zp, gs, 1)
        clipped = (exact < lo - 0.5) | (exact > hi + 0.5)
        # the dtype rounds x / scale, x / scale + zero point and the product
        zrep = np.abs(np.repeat(zp, gs, 1))
        slack = REL[dtype] * (2 * np.abs(w) + zrep * step + np.abs(deq)) * 1.01
        bound = np.where(clipped, 1.0, 0.5) * step + slack
        expect(np.all(np.abs(w - deq) <= bound), f"{module}: |w - deq| above the bound (max excess {np.max(np.abs(w - deq) - bound)})")
    expect(set(out) == seen, f"unexpected tensors: {sorted(set(out) - seen)}")
    if any(a.endswith("ForCausalLM") for a in cfg0.get("architectures", [])):
        ignore.add("lm_head")
    qc = cfg.pop("quantization_config")
    expect(cfg == cfg0, "config.json changed outside quantization_config")
    expect(set(qc) == {"config_groups", "format", "global_compression_ratio", "ignore", "kv_cache_scheme",
                       "moe_sparsity_config", "quant_method", "quantization_status", "sparsity_config",
                       "transform_config", "version"}, f"quantization_config keys {sorted(qc)}")
    fmt = "pack-quantized" if packed else "int-quantized"
    expect(qc["quant_method"] == "compressed-tensors" and qc["format"] == fmt, "quant_method/format")
    expect(qc["quantization_status"] == "compressed" and qc["version"] == "0.20.1", "status/version")
    expect(qc["ignore"] == sorted(ignore), f"ignore {qc['ignore']} != {sorted(ignore)}")
    expect(qc["kv_cache_scheme"] is None and qc["sparsity_config"] == {} and qc["transform_config"] == {}, "extras")
    expect(list(qc["config_groups"]) == ["group_0"], "one config group")
    g = qc["config_groups"]["group_0"]
    expect(g["targets"] == ["Linear"] and g["format"] == fmt and g["output_activations"] is None, "group")
    want = {"num_bits": bits, "type": "int", "symmetric": symmetric, "dynamic": False,
            "group_size": None if group_size == 0 else group_size,
            "strategy": "channel" if group_size == 0 else "group"}
    expect(g["weights"] == want, f"weights {g['weights']} != {want}")
    if packed:
        expect(g["input_activations"] is None, "input_activations of a weight-only scheme")
    else:
        expect(g["input_activations"] == {"num_bits": 8, "type": "int", "symmetric": True, "group_size": None,
                                          "strategy": "token", "dynamic": True}, "input_activations")
    for f in os.listdir(orig_dir):
        if f not in set(orig_where.values()) | {INDEX, "config.json"} and not f.startswith("."):
            expect(os.path.exists(os.path.join(out_dir, f)), f"{f} not copied")
    print(f"ok {modules} modules, ignore {len(ignore)}, {len(set(out_where.values()))} safetensors file(s)")


def write(out_dir, expected):
    """A compressed-tensors directory as llm-compressor lays it out, made here: f16 model; module
    a.proj pack-quantized 4-bit, groups of 16, asymmetric, act order with g_idx; module b.proj
    int-quantized 8-bit per channel, asymmetric; plus dense tensors and an activation scale."""
    rng = np.random.default_rng(5)
    os.makedirs(out_dir)
    rd = rounder("F16")
    rows, cols, gs = 12, 64, 16
    perm = rng.permutation(cols)
    g_idx = np.empty(cols, dtype=np.int32)
    g_idx[perm] = np.arange(cols) // gs
    qa = rng.integers(-8, 8, size=(rows, cols))
    za = rng.integers(-8, 8, size=(rows, cols // gs))
    sa = rd(rng.uniform(0.001, 0.1, size=(rows, cols // gs)).astype(np.float32))
    deq_a = rd(rd((qa - za[:, g_idx]).astype(np.float32)) * sa[:, g_idx])
    qb = rng.integers(-128, 128, size=(8, 12))
    zb = rng.integers(-20, 20, size=(8, 1))
    sb = rd(rng.uniform(0.001, 0.1, size=(8, 1)).astype(np.float32))
    deq_b = rd(rd((qb - zb).astype(np.float32)) * sb)
    emb = rng.standard_normal((10, 12)).astype(np.float16)
    norm = rng.standard_normal(12).astype(np.float16)
    bias = rng.standard_normal(8).astype(np.float16)
    write_st(os.path.join(out_dir, "model.safetensors"), {
        "norm.weight": ("F16", norm),
        "b.proj.weight_zero_point": ("I8", zb.astype(np.int8)),
        "a.proj.weight_g_idx": ("I32", g_idx),
        "a.proj.weight_zero_point": ("I32", np.ascontiguousarray(pack_bits(np.ascontiguousarray(za.T), 4).T)),
        "b.proj.weight": ("I8", qb.astype(np.int8)),
        "a.proj.weight_scale": ("F16", sa.astype(np.float16)),
        "a.proj.input_scale": ("F16", np.ones(1, dtype=np.float16)),
        "emb.weight": ("F16", emb),
        "a.proj.weight_shape": ("I32", np.array([rows, cols], dtype=np.int32)),
        "b.proj.bias": ("F16", bias),
        "a.proj.weight_packed": ("I32", pack_bits(qa, 4)),
        "b.proj.weight_scale": ("F16", sb.astype(np.float16)),
    })
    args = lambda bits, gs, strat, order: dict(num_bits=bits, type="int", symmetric=False, group_size=gs,
                                                strategy=strat, dynamic=False, **order)
    config = {
        "model_type": "toy", "torch_dtype": "float16",
        "quantization_config": {
            "quant_method": "compressed-tensors", "format": "mixed-precision", "version": "0.10.2",
            "quantization_status": "compressed", "ignore": ["emb"],
            "config_groups": {
                "group_1": {"targets": ["re:.*b\\.proj$"], "format": "int-quantized",
                            "weights": args(8, None, "channel", {}), "input_activations": None},
                "group_0": {"targets": ["re:.*a\\.proj$"], "format": "pack-quantized",
                            "weights": args(4, 16, "group", {"actorder": "group"})},
            },
        },
        "hidden_size": 12,
    }
    open(os.path.join(out_dir, "config.json"), "w").write(json.dumps(config))
    open(os.path.join(out_dir, "tokenizer.json"), "w").write("{}")
    write_st(expected, {"a.proj.weight": ("F16", deq_a.astype(np.float16)), "b.proj.weight": ("F16", deq_b.astype(np.float16)),
                        "emb.weight": ("F16", emb), "norm.weight": ("F16", norm), "b.proj.bias": ("F16", bias)})
    print("ok written")


def compare(a, b):
    x, y = read_st(a), read_st(b)
    expect(sorted(x) == sorted(y), f"names {sorted(x)} != {sorted(y)}")
    for k in x:
        expect(x[k][0] == y[k][0] and x[k][1] == y[k][1], f"{k}: {x[k][:2]} != {y[k][:2]}")
        expect(x[k][2].tobytes() == y[k][2].tobytes(), f"{k}: values differ")
    print(f"ok {len(x)} tensors equal")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6] == "1")
    elif cmd == "write":
        write(sys.argv[2], sys.argv[3])
    elif cmd == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        fail(f"unknown command {cmd}")
