//! Low-rank factorization of weight matrices by truncated SVD.
