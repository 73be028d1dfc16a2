//! The status code every C function returns.

use crate::Error;

/// The outcome of a greenai C function. Values are fixed forever; retired values are never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum greenai_status {
    /// Success.
    GREENAI_OK = 0,
    /// A pointer that must point to data was NULL.
    GREENAI_ERR_NULL_POINTER = 1,
    /// An argument has a value the function cannot accept.
    GREENAI_ERR_INVALID_ARGUMENT = 2,
    /// Two shapes or sizes that must agree do not.
    GREENAI_ERR_SHAPE_MISMATCH = 3,
    /// The element type is not supported by this function.
    GREENAI_ERR_UNSUPPORTED_DTYPE = 4,
    /// The input holds a NaN (or a refused infinity).
    GREENAI_ERR_NON_FINITE = 5,
    /// A size computation overflows.
    GREENAI_ERR_OVERFLOW = 6,
    /// An allocation failed.
    GREENAI_ERR_OUT_OF_MEMORY = 7,
    /// Reading or writing a file failed.
    GREENAI_ERR_IO = 8,
    /// A file or text is malformed.
    GREENAI_ERR_FORMAT = 9,
    /// A buffer is shorter than its dimensions require.
    GREENAI_ERR_BUFFER_TOO_SMALL = 10,
    /// A bug in greenai: a Rust panic was caught at the boundary.
    GREENAI_ERR_PANIC = 11,
}

impl greenai_status {
    /// Every status, in value order (the value is the index).
    const ALL: [greenai_status; 12] = [
        greenai_status::GREENAI_OK,
        greenai_status::GREENAI_ERR_NULL_POINTER,
        greenai_status::GREENAI_ERR_INVALID_ARGUMENT,
        greenai_status::GREENAI_ERR_SHAPE_MISMATCH,
        greenai_status::GREENAI_ERR_UNSUPPORTED_DTYPE,
        greenai_status::GREENAI_ERR_NON_FINITE,
        greenai_status::GREENAI_ERR_OVERFLOW,
        greenai_status::GREENAI_ERR_OUT_OF_MEMORY,
        greenai_status::GREENAI_ERR_IO,
        greenai_status::GREENAI_ERR_FORMAT,
        greenai_status::GREENAI_ERR_BUFFER_TOO_SMALL,
        greenai_status::GREENAI_ERR_PANIC,
    ];

    /// The status whose value is `v`, if there is one (no transmute: any integer is safe).
    pub(crate) fn from_int(v: std::ffi::c_int) -> Option<Self> {
        let s = *Self::ALL.get(usize::try_from(v).ok()?)?;
        (s as std::ffi::c_int == v).then_some(s)
    }

    /// The status's name as a NUL-terminated string.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            greenai_status::GREENAI_OK => "GREENAI_OK\0",
            greenai_status::GREENAI_ERR_NULL_POINTER => "GREENAI_ERR_NULL_POINTER\0",
            greenai_status::GREENAI_ERR_INVALID_ARGUMENT => "GREENAI_ERR_INVALID_ARGUMENT\0",
            greenai_status::GREENAI_ERR_SHAPE_MISMATCH => "GREENAI_ERR_SHAPE_MISMATCH\0",
            greenai_status::GREENAI_ERR_UNSUPPORTED_DTYPE => "GREENAI_ERR_UNSUPPORTED_DTYPE\0",
            greenai_status::GREENAI_ERR_NON_FINITE => "GREENAI_ERR_NON_FINITE\0",
            greenai_status::GREENAI_ERR_OVERFLOW => "GREENAI_ERR_OVERFLOW\0",
            greenai_status::GREENAI_ERR_OUT_OF_MEMORY => "GREENAI_ERR_OUT_OF_MEMORY\0",
            greenai_status::GREENAI_ERR_IO => "GREENAI_ERR_IO\0",
            greenai_status::GREENAI_ERR_FORMAT => "GREENAI_ERR_FORMAT\0",
            greenai_status::GREENAI_ERR_BUFFER_TOO_SMALL => "GREENAI_ERR_BUFFER_TOO_SMALL\0",
            greenai_status::GREENAI_ERR_PANIC => "GREENAI_ERR_PANIC\0",
        }
    }
}

impl From<&Error> for greenai_status {
    fn from(e: &Error) -> Self {
        match e {
            Error::ShapeMismatch { .. } => greenai_status::GREENAI_ERR_SHAPE_MISMATCH,
            Error::InvalidArgument { .. } => greenai_status::GREENAI_ERR_INVALID_ARGUMENT,
            Error::BufferTooSmall { .. } => greenai_status::GREENAI_ERR_BUFFER_TOO_SMALL,
            Error::UnsupportedDType { .. } => greenai_status::GREENAI_ERR_UNSUPPORTED_DTYPE,
            Error::NonFinite { .. } => greenai_status::GREENAI_ERR_NON_FINITE,
            Error::Overflow { .. } => greenai_status::GREENAI_ERR_OVERFLOW,
            Error::OutOfMemory { .. } => greenai_status::GREENAI_ERR_OUT_OF_MEMORY,
            Error::Io { .. } => greenai_status::GREENAI_ERR_IO,
            Error::Format { .. } => greenai_status::GREENAI_ERR_FORMAT,
        }
    }
}
