//! The one error type of greenai.

use crate::tensor::DType;

/// Everything that can go wrong in greenai, with what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two shapes that must agree do not.
    #[error("shape mismatch in {context}: expected {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// The operation or argument that checked the shapes.
        context: &'static str,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        actual: Vec<usize>,
    },
    /// An argument has a value the operation cannot accept.
    #[error("invalid argument `{name}` = {value}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// The value that was given, formatted.
        value: String,
        /// Why it is not accepted.
        reason: String,
    },
    /// A buffer is shorter than its dimensions require.
    #[error("buffer `{name}` too small: needs {needed} elements, has {actual}")]
    BufferTooSmall {
        /// The buffer's name.
        name: &'static str,
        /// Elements required by the dimensions.
        needed: usize,
        /// Elements present.
        actual: usize,
    },
    /// The operation does not support this element type.
    #[error("unsupported dtype {dtype} for {operation}")]
    UnsupportedDType {
        /// The element type that was given.
        dtype: DType,
        /// The operation that refused it.
        operation: &'static str,
    },
    /// A NaN (or, where refused, an infinity) in the input.
    #[error("non-finite value {value} at index {index} of `{name}`")]
    NonFinite {
        /// The input's name.
        name: &'static str,
        /// Flat index of the first offending element.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A size computation (shape product, byte count, index) overflows `usize`.
    #[error("size overflow in {context}: {detail}")]
    Overflow {
        /// What was being computed.
        context: &'static str,
        /// The operands, formatted.
        detail: String,
    },
    /// An allocation failed.
    #[error("out of memory allocating {bytes} bytes")]
    OutOfMemory {
        /// Bytes requested.
        bytes: usize,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file or text is malformed.
    #[error("format error in {context}: {detail}")]
    Format {
        /// The file, field or format concerned.
        context: String,
        /// What is wrong.
        detail: String,
    },
}

/// `Result` with greenai's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidArgument`] for `name = value`, refused because of `reason`.
    pub fn invalid(name: &'static str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { name, value: value.to_string(), reason: reason.into() }
    }

    /// An [`Error::Format`] about `context`.
    pub fn format(context: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Format { context: context.into(), detail: detail.into() }
    }

    /// An [`Error::Io`] on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// Checks that a buffer of `actual` elements holds at least `needed`.
pub fn check_len(name: &'static str, actual: usize, needed: usize) -> Result<()> {
    if actual < needed {
        return Err(Error::BufferTooSmall { name, needed, actual });
    }
    Ok(())
}

/// Multiplies sizes with overflow checking (any zero makes the product zero).
pub fn checked_product(context: &'static str, dims: &[usize]) -> Result<usize> {
    if dims.contains(&0) {
        return Ok(0);
    }
    dims.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d).ok_or_else(|| Error::Overflow { context, detail: format!("product of {dims:?}") })
    })
}

/// Allocates a vector of `len` copies of `value`, reporting allocation failure as an error.
pub fn try_vec<T: Clone>(len: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| Error::OutOfMemory { bytes: len.saturating_mul(std::mem::size_of::<T>()) })?;
    v.resize(len, value);
    Ok(v)
}
