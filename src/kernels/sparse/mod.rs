//! Sparse x dense products: CSR and N:M compressed.
