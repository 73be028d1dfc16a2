#!/usr/bin/env python3
"""Peers of greenai's GGUF for tests/llama_cpp.rs: llama.cpp itself (through its PyPI binding
llama-cpp-python, low-level API) embedding sentences with a GGUF sentence encoder, and
sentence-transformers on the original model directory (to check the float64 reference).

usage:
  llama_cpp_embed.py embed GGUF SENTENCES_FILE MAX_LEN OUT
      llama.cpp tokenizes each sentence with the GGUF's vocabulary (its special tokens added),
      truncates to MAX_LEN tokens as sentence-transformers does (the first MAX_LEN - 1 and the
      last), and pools with the GGUF's own pooling type (which must be mean). OUT (safetensors):
      `embeddings` (float64, L2-normalised, sentences x n_embd), `ids` (int64, all sentences'
      token ids concatenated), `lengths` (int64, tokens per sentence).
  llama_cpp_embed.py quantize GGUF OUT FTYPE
      llama.cpp's own quantizer (llama-quantize's llama_model_quantize) from GGUF to OUT with the
      llama_ftype number FTYPE (2 Q4_0, 3 Q4_1, 7 Q8_0, 8 Q5_0, 15 Q4_K_M, 18 Q6_K).
  llama_cpp_embed.py st MODEL_DIR SENTENCES_FILE OUT
      sentence-transformers' normalised embeddings of MODEL_DIR into OUT (`embeddings`, float64).

Exit status 3, with a message, when the package a command needs is not installed.
"""
import ctypes
import os
import sys

import numpy as np
from safetensors.numpy import save_file

MISSING = 3


def sentences(path):
    return [line.strip() for line in open(path, encoding="utf-8") if line.strip()]


def quiet_logs(llama_cpp):
    """Forwards llama.cpp's warnings and errors to stderr, drops its info lines."""

    @llama_cpp.llama_log_callback
    def log(level, text, _user):
        if level in (3, 4):  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR
            sys.stderr.write(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(log, ctypes.c_void_p(0))
    return log  # the callback must outlive every llama.cpp call


def tokenize(llama_cpp, vocab, text):
    raw = text.encode("utf-8")
    cap = len(raw) + 8
    while True:
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(vocab, raw, len(raw), buf, cap, True, False)
        if n >= 0:
            return list(buf[:n])
        cap = -n


def embed(gguf, sentences_file, max_len, out):
    llama_cpp = import_llama_cpp()
    keep = quiet_logs(llama_cpp)
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(gguf.encode(), llama_cpp.llama_model_default_params())
    if not model:
        sys.exit(f"llama.cpp could not load {gguf}")
    params = llama_cpp.llama_context_default_params()
    params.embeddings = True
    params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED  # the file's own
    n_ctx = llama_cpp.llama_model_n_ctx_train(model)
    params.n_ctx = params.n_batch = params.n_ubatch = n_ctx
    params.n_threads = params.n_threads_batch = 2
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        sys.exit("llama.cpp could not make a context")
    pooling = llama_cpp.llama_pooling_type(ctx)
    if pooling != llama_cpp.LLAMA_POOLING_TYPE_MEAN:
        sys.exit(f"the GGUF's pooling type is {pooling}, not mean")
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_embd = llama_cpp.llama_model_n_embd(model)
    batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)
    embeddings, all_ids, lengths = [], [], []
    for s in sentences(sentences_file):
        ids = tokenize(llama_cpp, vocab, s)
        if len(ids) > max_len:
            ids = ids[: max_len - 1] + ids[-1:]
        all_ids += ids
        lengths.append(len(ids))
        batch.n_tokens = len(ids)
        for i, t in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = t, i, 1, True
            batch.seq_id[i][0] = 0
        if llama_cpp.llama_encode(ctx, batch) != 0:
            sys.exit(f"llama_encode failed on {s!r}")
        e = np.array(llama_cpp.llama_get_embeddings_seq(ctx, 0)[:n_embd], dtype=np.float64)
        embeddings.append(e / max(np.linalg.norm(e), 1e-12))
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    del keep
    save_file({"embeddings": np.stack(embeddings), "ids": np.array(all_ids, dtype=np.int64),
               "lengths": np.array(lengths, dtype=np.int64)}, out)


def import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as e:
        print(f"llama_cpp is not installed ({e})", file=sys.stderr)
        sys.exit(MISSING)
    return llama_cpp


def quantize(gguf, out, ftype):
    llama_cpp = import_llama_cpp()
    keep = quiet_logs(llama_cpp)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    if llama_cpp.llama_model_quantize(gguf.encode(), out.encode(), ctypes.byref(params)) != 0:
        sys.exit(f"llama_model_quantize failed on {gguf}")
    del keep


def sentence_transformers(model_dir, sentences_file, out):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        print(f"sentence_transformers is not installed ({e})", file=sys.stderr)
        sys.exit(MISSING)
    model = SentenceTransformer(model_dir, device="cpu")
    e = model.encode(sentences(sentences_file), normalize_embeddings=True, convert_to_numpy=True)
    save_file({"embeddings": e.astype(np.float64)}, out)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "embed":
        embed(args[0], args[1], int(args[2]), args[3])
    elif cmd == "quantize":
        quantize(args[0], args[1], int(args[2]))
    elif cmd == "st":
        sentence_transformers(*args[:3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
