//! Vectorised elementwise math: exp, log-sum-exp, softmax.
