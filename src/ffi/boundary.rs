//! The plumbing every exported function shares: the panic boundary, the thread's last error,
//! and checked conversion of C pointers into Rust references.

use super::status::greenai_status;
use crate::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::ptr::NonNull;

/// Why a C call failed before or inside the core.
#[derive(Debug)]
pub(crate) enum FfiError {
    /// A required pointer was NULL; names the argument.
    Null(&'static str),
    /// The core refused the call.
    Core(Error),
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        FfiError::Core(e)
    }
}

/// What an exported body returns inside [`ffi_boundary!`].
pub(crate) type FfiResult<T> = Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A C string of `text`, its NUL bytes written as `\0`.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).unwrap_or_default()
}

fn set_last_error(message: String) {
    let message = c_string(&message);
    LAST_ERROR.with(|slot| *slot.borrow_mut() = message);
}

/// Turns the outcome of an exported body (or its panic) into a status, recording the message.
pub(crate) fn finish(outcome: std::thread::Result<FfiResult<()>>) -> greenai_status {
    match outcome {
        Ok(Ok(())) => greenai_status::GREENAI_OK,
        Ok(Err(FfiError::Null(name))) => {
            set_last_error(format!("argument `{name}` is NULL"));
            greenai_status::GREENAI_ERR_NULL_POINTER
        }
        Ok(Err(FfiError::Core(e))) => {
            set_last_error(e.to_string());
            greenai_status::from(&e)
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_last_error(format!("internal error (panic caught at the C boundary): {what}"));
            greenai_status::GREENAI_ERR_PANIC
        }
    }
}

/// Runs an exported function's body (returning [`FfiResult`]) so that no panic crosses into C;
/// evaluates to the [`greenai_status`].
macro_rules! ffi_boundary {
    ($($body:tt)*) => {
        $crate::ffi::boundary::finish(::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> $crate::ffi::FfiResult<()> { $($body)* },
        )))
    };
}

fn check_extent<T>(ptr: *const T, len: usize, name: &'static str) -> FfiResult<bool> {
    if len == 0 {
        return Ok(false);
    }
    if ptr.is_null() {
        return Err(FfiError::Null(name));
    }
    if !ptr.is_aligned() {
        return Err(
            Error::invalid(name, format!("{ptr:p}"), "pointer not aligned for its element type").into()
        );
    }
    let fits = len.checked_mul(std::mem::size_of::<T>()).is_some_and(|bytes| bytes <= isize::MAX as usize);
    if !fits {
        return Err(Error::Overflow { context: name, detail: format!("{len} elements").to_string() }.into());
    }
    Ok(true)
}

/// Borrows `(ptr, len)` from C as a slice; `(NULL, 0)` and `(any, 0)` are the empty slice.
///
/// # Safety
/// When `len > 0`, `ptr` must point to `len` initialised `T` that stay valid and unmodified for `'a`.
pub(crate) unsafe fn slice_in<'a, T>(ptr: *const T, len: usize, name: &'static str) -> FfiResult<&'a [T]> {
    if !check_extent(ptr, len, name)? {
        return Ok(&[]);
    }
    // SAFETY: ptr is non-null and aligned, len * size_of::<T>() <= isize::MAX, and the caller
    // guarantees the memory is valid for reads of len elements for 'a.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows `(ptr, len)` from C as a mutable slice; `(NULL, 0)` is the empty slice.
///
/// # Safety
/// When `len > 0`, `ptr` must point to `len` writable `T`, not aliased by any other argument, valid for `'a`.
pub(crate) unsafe fn slice_out<'a, T>(ptr: *mut T, len: usize, name: &'static str) -> FfiResult<&'a mut [T]> {
    if !check_extent(ptr, len, name)? {
        return Ok(&mut []);
    }
    // SAFETY: as in slice_in, and the caller guarantees exclusive access for writes.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Borrows a C string as UTF-8; NULL is `None`.
///
/// # Safety
/// `ptr`, when non-NULL, must point to a NUL-terminated string valid for the call.
pub(crate) unsafe fn str_in<'a>(ptr: *const c_char, name: &'static str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, and the caller guarantees NUL termination and validity.
    let s = unsafe { std::ffi::CStr::from_ptr(ptr) };
    Ok(Some(s.to_str().map_err(|_| Error::invalid(name, "(bytes)", "not UTF-8"))?))
}

/// A C out-pointer, checked non-NULL and aligned up front, written once on success.
pub(crate) struct OutPtr<T>(NonNull<T>);

impl<T> OutPtr<T> {
    /// Writes the result through the pointer.
    pub(crate) fn write(self, value: T) {
        // SAFETY: out_ptr checked the pointer non-null and aligned; its caller guarantees it is
        // valid for a write of one T. `write` does not read or drop the old (possibly uninitialised) value.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// Checks a C out-pointer before any work is done.
///
/// # Safety
/// `ptr`, when non-NULL, must be valid for writing one `T` until the returned [`OutPtr`] is written.
pub(crate) unsafe fn out_ptr<T>(ptr: *mut T, name: &'static str) -> FfiResult<OutPtr<T>> {
    let ptr = NonNull::new(ptr).ok_or(FfiError::Null(name))?;
    if !ptr.as_ptr().is_aligned() {
        return Err(Error::invalid(name, format!("{ptr:p}"), "pointer not aligned").into());
    }
    Ok(OutPtr(ptr))
}

/// The library version, `"MAJOR.MINOR.PATCH"`, as a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn greenai_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The kernel tier in use (`"scalar"`, `"avx2"`, `"avx512"`, `"neon"`, `"dotprod"` or `"i8mm"`), as
/// a static NUL-terminated string: the highest this CPU has, or the one `GREENAI_ISA` asked for
/// (lowered to the highest tier below it that the CPU has).
#[no_mangle]
pub extern "C" fn greenai_active_isa() -> *const c_char {
    const NAMES: [&std::ffi::CStr; 6] = [c"scalar", c"avx2", c"avx512", c"neon", c"dotprod", c"i8mm"];
    let active = crate::kernels::Isa::active().name();
    NAMES.iter().find(|name| name.to_bytes() == active.as_bytes()).map_or(c"scalar", |name| name).as_ptr()
}

/// The name of a status (`"GREENAI_OK"`, ...), as a static NUL-terminated string; any other value
/// (a status from a newer greenai, or garbage) gives `"GREENAI_UNKNOWN_STATUS"`.
///
/// The parameter is an `int`, not `greenai_status`: a C caller may pass any integer, and an
/// undeclared value in a Rust enum is undefined behaviour. Passing a `greenai_status` still compiles.
#[no_mangle]
pub extern "C" fn greenai_status_str(status: std::ffi::c_int) -> *const c_char {
    greenai_status::from_int(status).map_or(c"GREENAI_UNKNOWN_STATUS".as_ptr(), |s| s.name().as_ptr().cast())
}

/// The detailed message of the calling thread's last failed greenai call, or `""` when none failed.
///
/// The string belongs to greenai and stays valid until the next failing call on the same thread.
#[no_mangle]
pub extern "C" fn greenai_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// Reads the options struct `*ptr` (of C type `T`) as `R`, its twin with every `bool` declared `u8`:
/// a C caller may store any byte in a `bool`, and reading a byte other than 0 or 1 as a Rust `bool`
/// would be undefined behaviour. NULL or misaligned pointers are errors.
///
/// # Safety
/// A non-NULL, aligned `ptr` must point to a readable `T`; `R` must have `T`'s size, alignment and
/// field offsets (checked at compile time next to each pair).
pub(crate) unsafe fn read_options<T, R: Copy>(ptr: *const T, name: &'static str) -> FfiResult<R> {
    if ptr.is_null() {
        return Err(FfiError::Null(name));
    }
    if !ptr.is_aligned() {
        return Err(Error::invalid(name, format!("{ptr:p}"), "pointer not aligned").into());
    }
    // SAFETY: non-NULL and aligned; the caller guarantees a readable T with R's layout, read as bytes.
    Ok(unsafe { ptr.cast::<R>().read() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_message() -> String {
        // SAFETY: greenai_last_error_message returns a valid NUL-terminated string owned by this thread.
        unsafe { CStr::from_ptr(greenai_last_error_message()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = ffi_boundary! {
            let v: Vec<u8> = Vec::new();
            let _ = v[usize::MAX / 2];
            Ok(())
        };
        assert_eq!(status, greenai_status::GREENAI_ERR_PANIC);
        assert!(last_message().contains("index out of bounds"), "{}", last_message());
    }

    #[test]
    fn errors_map_to_statuses_and_messages_persist_until_the_next_failure() {
        let status = ffi_boundary! { Err(Error::invalid("alpha", 2.0, "must lie in [0, 1]").into()) };
        assert_eq!(status, greenai_status::GREENAI_ERR_INVALID_ARGUMENT);
        assert_eq!(last_message(), "invalid argument `alpha` = 2: must lie in [0, 1]");
        assert_eq!(ffi_boundary! { Ok(()) }, greenai_status::GREENAI_OK);
        assert!(last_message().contains("alpha"));
        assert_eq!(ffi_boundary! { Err(FfiError::Null("x")) }, greenai_status::GREENAI_ERR_NULL_POINTER);
        assert_eq!(last_message(), "argument `x` is NULL");
    }

    #[test]
    fn empty_and_null_slices() {
        // SAFETY: length 0 never dereferences the pointer.
        let empty = unsafe { slice_in::<f32>(std::ptr::null(), 0, "x") }.unwrap();
        assert!(empty.is_empty());
        // SAFETY: a NULL pointer with a nonzero length is refused before any access.
        let null = unsafe { slice_in::<f32>(std::ptr::null(), 3, "x") };
        assert!(matches!(null, Err(FfiError::Null("x"))));
        let buf = [0u32; 4];
        let misaligned = buf.as_ptr().cast::<u8>().wrapping_add(1).cast::<u32>();
        // SAFETY: a misaligned pointer is refused before any access.
        let refused = unsafe { slice_in(misaligned, 2, "x") };
        assert!(matches!(refused, Err(FfiError::Core(Error::InvalidArgument { .. }))));
        // SAFETY: a length whose byte size exceeds isize::MAX is refused before any access.
        let huge = unsafe { slice_in(buf.as_ptr(), usize::MAX / 2, "x") };
        assert!(matches!(huge, Err(FfiError::Core(Error::Overflow { .. }))));
    }

    #[test]
    fn every_status_has_a_distinct_name_and_other_values_a_fixed_one() {
        let name = |v| {
            // SAFETY: greenai_status_str returns a static NUL-terminated string.
            unsafe { CStr::from_ptr(greenai_status_str(v)) }.to_str().unwrap().to_owned()
        };
        let names: std::collections::HashSet<_> = (0..=11).map(name).collect();
        assert_eq!(names.len(), 12);
        assert!(names.iter().all(|n| n.starts_with("GREENAI_") && n != "GREENAI_UNKNOWN_STATUS"));
        for v in [-1, 12, 999, i32::MIN, i32::MAX] {
            assert_eq!(name(v), "GREENAI_UNKNOWN_STATUS");
        }
        for v in 0..=11 {
            assert_eq!(greenai_status::from_int(v).map(|s| s as i32), Some(v));
        }
    }
}
