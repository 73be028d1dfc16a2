"""Independent checks of greenai's GGUF files with the PyPI `gguf` package (llama.cpp's gguf-py).

  gguf_check.py make DIR ARCH            a tiny llama/qwen2 model: random weights, BPE tokenizer
  gguf_check.py check MODEL GGUF FTYPE   metadata, names, types, shapes and bytes of a written file
  gguf_check.py peer OUT.gguf OUT.npz    a file written by gguf-py's GGUFWriter, and its values
  gguf_check.py same A.safetensors B.npz the decompressed tensors equal the expected ones

The expectations are written here from llama.cpp's rules (convert_hf_to_gguf.py, llama-quant.cpp),
not from greenai's code; tensor bytes are compared with gguf.quants.quantize of the f32 weights.
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType as Q
import gguf.quants
from safetensors.numpy import load_file, save_file

FTYPES = {"f16": (1, Q.F16), "bf16": (32, Q.BF16), "q8_0": (7, Q.Q8_0), "q4_0": (2, Q.Q4_0),
          "q4_1": (3, Q.Q4_1), "q5_0": (8, Q.Q5_0), "q4_k": (15, Q.Q4_K), "q6_k": (18, Q.Q6_K)}
BLOCK = {Q.Q8_0: 32, Q.Q4_0: 32, Q.Q4_1: 32, Q.Q5_0: 32, Q.Q4_K: 256, Q.Q6_K: 256}


def make(d, arch):
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders
    os.makedirs(d, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["the quick brown fox jumps over the lazy dog %d" % i for i in range(200)]
    tok.train_from_iterator(corpus, trainer)
    tok.save(os.path.join(d, "tokenizer.json"))
    n_tok = tok.get_vocab_size()
    hidden, heads, kv, inter, layers, vocab = 256, 4, 2, 512, 2, n_tok + 13
    arch_name = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[arch]
    cfg = {"architectures": [arch_name], "model_type": arch, "hidden_size": hidden,
           "num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": inter,
           "num_hidden_layers": layers, "vocab_size": vocab, "max_position_embeddings": 1024,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": arch == "qwen2",
           "bos_token_id": 0, "eos_token_id": 1}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False},
              open(os.path.join(d, "tokenizer_config.json"), "w"))
    rng = np.random.default_rng(7)
    hd = hidden // heads
    w = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if arch == "llama":
        w["lm_head.weight"] = (vocab, hidden)
    for i in range(layers):
        p = "model.layers.%d." % i
        w.update({p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
                  p + "self_attn.q_proj.weight": (heads * hd, hidden), p + "self_attn.k_proj.weight": (kv * hd, hidden),
                  p + "self_attn.v_proj.weight": (kv * hd, hidden), p + "self_attn.o_proj.weight": (hidden, heads * hd),
                  p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
                  p + "mlp.down_proj.weight": (hidden, inter)})
        if arch == "qwen2":
            w.update({p + "self_attn.q_proj.bias": (heads * hd,), p + "self_attn.k_proj.bias": (kv * hd,),
                      p + "self_attn.v_proj.bias": (kv * hd,)})
    save_file({k: (rng.standard_normal(s) * 0.05).astype(np.float32) for k, s in w.items()},
              os.path.join(d, "model.safetensors"))


def field(r, key):
    f = r.get_field(key)
    if f is None:
        raise AssertionError("missing metadata key " + key)
    return f.contents()


def permute(w, n_head, n_head_kv):
    # convert_hf_to_gguf.py LlamaModel.permute, written again with numpy
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


BERT_NAMES = {"attention.self.query": "attn_q", "attention.self.key": "attn_k", "attention.self.value": "attn_v",
              "attention.output.dense": "attn_output", "attention.output.LayerNorm": "attn_output_norm",
              "intermediate.dense": "ffn_up", "output.dense": "ffn_down", "output.LayerNorm": "layer_output_norm"}
LLAMA_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
               "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}


def gguf_name(arch, name):
    if name == "embeddings.position_ids":
        return None
    stem, suffix = name.rsplit(".", 1)
    if arch == "bert":
        if stem in ("embeddings.position_ids",) or stem.startswith("pooler"):
            return None
        top = {"embeddings.word_embeddings": "token_embd", "embeddings.token_type_embeddings": "token_types",
               "embeddings.position_embeddings": "position_embd", "embeddings.LayerNorm": "token_embd_norm"}
        if stem in top:
            return top[stem] + "." + suffix
        _, _, n, part = stem.split(".", 3)
        return "blk.%s.%s.%s" % (n, BERT_NAMES[part], suffix)
    top = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    if stem in top:
        return top[stem] + "." + suffix
    _, _, n, part = stem.split(".", 3)
    return "blk.%s.%s.%s" % (n, LLAMA_NAMES[part], suffix)


def more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def expected_type(name, shape, ftype, tied, n_layer):
    """convert_hf_to_gguf (f32 out) then llama-quantize, for these file types."""
    if len(shape) <= 1 or name.endswith("_norm.weight") or name in ("position_embd.weight", "token_types.weight") \
            or not name.endswith(".weight"):
        return Q.F32
    default = FTYPES[ftype][1]
    if default in (Q.F16, Q.BF16):
        return default
    cols = shape[-1]
    t = default
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        t = Q.Q8_0 if cols % BLOCK[default] else (default if default == Q.Q8_0 else Q.Q6_K)
    elif ftype == "q4_k" and ("attn_v.weight" in name or "ffn_down" in name):
        if more_bits(int(name.split(".")[1]), n_layer):
            t = Q.Q6_K
    if cols % BLOCK[t]:
        t = {Q.Q4_K: Q.Q5_0, Q.Q6_K: Q.Q8_0}[t]
        if cols % BLOCK[t]:
            t = Q.F16
    return t


def check(model, path, ftype):
    cfg = json.load(open(os.path.join(model, "config.json")))
    arch = {"BertModel": "bert", "LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}[cfg["architectures"][0]]
    r = GGUFReader(path)
    assert r.get_field("GGUF.version").contents() == 3
    assert field(r, "general.architecture") == arch
    assert field(r, "general.file_type") == FTYPES[ftype][0]
    assert field(r, "general.quantization_version") == 2
    a = arch
    assert field(r, a + ".block_count") == cfg["num_hidden_layers"]
    assert field(r, a + ".context_length") == cfg["max_position_embeddings"]
    assert field(r, a + ".embedding_length") == cfg["hidden_size"]
    assert field(r, a + ".feed_forward_length") == cfg["intermediate_size"]
    assert field(r, a + ".attention.head_count") == cfg["num_attention_heads"]
    toks = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    assert len(toks) == len(types) == cfg["vocab_size"], (len(toks), cfg["vocab_size"])
    tj = json.load(open(os.path.join(model, "tokenizer.json")))
    added = {t["id"]: t for t in tj["added_tokens"]}
    if arch == "bert":
        assert np.float32(field(r, a + ".attention.layer_norm_epsilon")) == np.float32(cfg["layer_norm_eps"])
        assert field(r, a + ".attention.causal") is False
        assert field(r, a + ".pooling_type") == 1  # sentence-transformers mean pooling
        assert field(r, "tokenizer.ggml.model") == "bert"
        assert field(r, "tokenizer.ggml.token_type_count") == cfg["type_vocab_size"]
        vocab = open(os.path.join(model, "vocab.txt"), encoding="utf-8").read().split("\n")
        for i in range(cfg["vocab_size"]):
            tok = vocab[i]
            want = tok if i in added else (tok[2:] if tok.startswith("##") else "\u2581" + tok)
            assert toks[i] == want, (i, toks[i], want)
            assert types[i] == (3 if i in added else 1)
        ids = {"bos": 101, "eos": 102, "unknown": 100, "seperator": 102, "padding": 0, "mask": 103}
        adds = {"bos": True, "eos": True, "sep": False}
        # gguf-py's SpecialVocab reads the BertNormalizer's flags; llama.cpp lowercases without the key.
        assert field(r, "tokenizer.ggml.normalizer.lowercase") is tj["normalizer"]["lowercase"]
    else:
        assert field(r, a + ".attention.head_count_kv") == cfg["num_key_value_heads"]
        assert np.float32(field(r, a + ".attention.layer_norm_rms_epsilon")) == np.float32(cfg["rms_norm_eps"])
        assert field(r, a + ".rope.freq_base") == cfg["rope_theta"]
        if arch == "llama":
            assert field(r, a + ".vocab_size") == cfg["vocab_size"]
            assert field(r, a + ".rope.dimension_count") == cfg["hidden_size"] // cfg["num_attention_heads"]
        assert field(r, "tokenizer.ggml.model") == "gpt2"
        assert field(r, "tokenizer.ggml.pre") == ("qwen2" if arch == "qwen2" else "gpt-2")
        inv = {i: t for t, i in tj["model"]["vocab"].items()}
        for i in range(cfg["vocab_size"]):
            if i in added:
                assert toks[i] == added[i]["content"] and types[i] == 3
            elif i in inv:
                assert toks[i] == inv[i] and types[i] == 1
            else:
                assert toks[i] == "[PAD%d]" % i and types[i] == 5
        merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
        assert field(r, "tokenizer.ggml.merges") == merges
        ids = {"bos": 0, "eos": 1}
        adds = {"bos": True, "eos": False}
    for k, v in ids.items():
        assert field(r, "tokenizer.ggml.%s_token_id" % k) == v, k
    for k, v in adds.items():
        assert field(r, "tokenizer.ggml.add_%s_token" % k) is v, k

    src = load_file(os.path.join(model, "model.safetensors"))
    want = {}
    for name, w in src.items():
        g = gguf_name(arch, name)
        if g is None:
            continue
        w = w.astype(np.float32)
        if arch == "llama" and g.endswith("attn_q.weight"):
            w = permute(w, cfg["num_attention_heads"], cfg["num_attention_heads"])
        if arch == "llama" and g.endswith("attn_k.weight"):
            w = permute(w, cfg["num_attention_heads"], cfg["num_key_value_heads"])
        want[g] = w
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    tied = "output.weight" not in want
    counts = {}
    for name, w in want.items():
        t = got[name]
        assert list(t.shape) == list(reversed(w.shape)), (name, t.shape, w.shape)
        ty = expected_type(name, w.shape, ftype, tied, cfg["num_hidden_layers"])
        assert t.tensor_type == ty, (name, t.tensor_type.name, ty.name)
        counts[ty.name] = counts.get(ty.name, 0) + 1
        data = np.asarray(t.data).tobytes()
        try:
            ref = gguf.quants.quantize(w, ty).tobytes()
        except NotImplementedError:
            # Q4_K / Q6_K: gguf-py cannot quantize; its dequantizer reads our blocks back.
            back = gguf.quants.dequantize(np.frombuffer(data, dtype=np.uint8).reshape(w.shape[0], -1), ty)
            rel = np.sqrt(np.mean((back - w) ** 2) / np.mean(w ** 2))
            assert rel < {Q.Q4_K: 0.12, Q.Q6_K: 0.03}[ty], (name, rel)
            continue
        assert data == ref, "tensor %s (%s): bytes differ from gguf.quants.quantize" % (name, ty.name)
    print("ok", arch, ftype, len(want), "tensors", counts)


def peer(path, npz):
    rng = np.random.default_rng(3)
    w = GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_string("test.string", "héllo")
    w.add_array("test.ints", [1, -2, 3])
    w.add_float64("test.f64", 0.125)
    expect = {}
    for name, ty in [("a", Q.F32), ("b", Q.F16), ("c", Q.Q8_0), ("d", Q.Q4_0), ("e", Q.Q5_0), ("f", Q.BF16)]:
        x = rng.standard_normal((3, 64)).astype(np.float32)
        q = gguf.quants.quantize(x, ty)
        w.add_tensor(name, q, raw_dtype=ty)
        expect[name] = gguf.quants.dequantize(q, ty).astype(np.float32).reshape(3, 64)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    np.savez(npz, **expect)


def same(st, npz):
    got = load_file(st)
    want = dict(np.load(npz))
    assert set(got) == set(want), (sorted(got), sorted(want))
    for k in want:
        assert got[k].dtype == np.float32 and got[k].shape == want[k].shape, k
        assert np.array_equal(got[k], want[k]), (k, np.abs(got[k] - want[k]).max())
    print("ok same", len(want))


if __name__ == "__main__" and sys.argv[1] != "same-gguf":
    cmd = sys.argv[1]
    {"make": lambda: make(sys.argv[2], sys.argv[3]), "check": lambda: check(*sys.argv[2:5]),
     "peer": lambda: peer(*sys.argv[2:4]), "same": lambda: same(*sys.argv[2:4])}[cmd]()


def same_gguf(path, st):
    """greenai's decompress of a GGUF file equals gguf-py's dequantization of every tensor."""
    got = load_file(st)
    r = GGUFReader(path)
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(list(t.shape)))
        want = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(shape)
        assert got[t.name].shape == shape, t.name
        assert np.allclose(got[t.name], want, rtol=1e-6, atol=1e-7), (t.name, np.abs(got[t.name] - want).max())
    assert len(got) == len(r.tensors)
    print("ok same-gguf", len(got))


if __name__ == "__main__" and sys.argv[1] == "same-gguf":
    same_gguf(*sys.argv[2:4])
