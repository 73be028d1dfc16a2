#!/usr/bin/env python3
"""An independent float64 reference of the BERT sentence encoder in bert.rs, with numpy, the
PyPI `tokenizers` and `safetensors` packages: the weights of MODEL_DIR/model.safetensors, the
tokenizer of MODEL_DIR/tokenizer.json truncated at sentence-transformers' max_seq_length, the
erf GELU from math.erf, mean pooling and L2 normalisation.

usage: reference.py MODEL_DIR SENTENCES_FILE OUT_DIR
writes OUT_DIR/reference.safetensors: `embeddings` (float64, sentences x hidden) and `ids`
(int64, the token ids of every sentence, concatenated) with `lengths` (int64, tokens per sentence).
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer


def layer_norm(x, g, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def main():
    model_dir, sentences_file, out_dir = sys.argv[1:4]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    max_len = cfg["max_position_embeddings"]
    st_cfg = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.exists(st_cfg):
        max_len = min(max_len, json.load(open(st_cfg))["max_seq_length"])
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(max_length=max_len)
    tok.no_padding()
    sentences = [l.strip() for l in open(sentences_file, encoding="utf-8") if l.strip()]
    w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()
         if v.dtype != np.int64}
    p = "" if "embeddings.word_embeddings.weight" in w else "bert."
    h, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    dh = h // heads
    erf = np.vectorize(math.erf)

    def linear(x, name):
        return x @ w[f"{p}{name}.weight"].T + w[f"{p}{name}.bias"]

    embeddings, all_ids, lengths = [], [], []
    for s in sentences:
        ids = tok.encode(s).ids
        all_ids += ids
        lengths.append(len(ids))
        n = len(ids)
        x = (w[f"{p}embeddings.word_embeddings.weight"][ids]
             + w[f"{p}embeddings.position_embeddings.weight"][:n]
             + w[f"{p}embeddings.token_type_embeddings.weight"][0])
        x = layer_norm(x, w[f"{p}embeddings.LayerNorm.weight"], w[f"{p}embeddings.LayerNorm.bias"], eps)
        for l in range(cfg["num_hidden_layers"]):
            a = f"encoder.layer.{l}"
            q = linear(x, f"{a}.attention.self.query").reshape(n, heads, dh).transpose(1, 0, 2)
            k = linear(x, f"{a}.attention.self.key").reshape(n, heads, dh).transpose(1, 0, 2)
            v = linear(x, f"{a}.attention.self.value").reshape(n, heads, dh).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, h)
            x = layer_norm(x + linear(ctx, f"{a}.attention.output.dense"),
                           w[f"{p}{a}.attention.output.LayerNorm.weight"],
                           w[f"{p}{a}.attention.output.LayerNorm.bias"], eps)
            up = linear(x, f"{a}.intermediate.dense")
            up = 0.5 * up * (1.0 + erf(up / math.sqrt(2.0)))
            x = layer_norm(x + linear(up, f"{a}.output.dense"),
                           w[f"{p}{a}.output.LayerNorm.weight"], w[f"{p}{a}.output.LayerNorm.bias"], eps)
        e = x.mean(axis=0)
        embeddings.append(e / max(np.linalg.norm(e), 1e-12))
    os.makedirs(out_dir, exist_ok=True)
    save_file({"embeddings": np.stack(embeddings), "ids": np.array(all_ids, dtype=np.int64),
               "lengths": np.array(lengths, dtype=np.int64)},
              os.path.join(out_dir, "reference.safetensors"))


if __name__ == "__main__":
    main()
