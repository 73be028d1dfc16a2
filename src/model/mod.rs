//! Model files: safetensors in and out, and the compressed-file convention.
