//! The bytes of a model file, read by position: from the file itself (never memory-mapped, so a
//! process that truncates it cannot kill ours with SIGBUS) or from a copy already in memory.
//!
//! The size found at open is checked before every read from a file, and a read that finds the file
//! shorter is an error: a file that changes size while it is open is refused, never half read.

use crate::error::try_vec;
use crate::{Error, Result};
use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

enum Source {
    File(std::fs::File),
    Memory(Vec<u8>),
}

/// A file's bytes, read by position: `path` names it in errors.
pub(crate) struct Bytes {
    path: PathBuf,
    source: Source,
    size: u64,
    /// The last hole found in the file (start, end): reads inside it are zeros.
    hole: Mutex<(u64, u64)>,
}

impl Bytes {
    /// Opens a regular file (a directory or a device is refused).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::invalid("input", path.display(), "is not a regular file"));
        }
        Ok(Bytes {
            path: path.to_path_buf(),
            source: Source::File(file),
            size: meta.len(),
            hole: Mutex::default(),
        })
    }

    /// Bytes already in memory, named `path` in errors.
    pub(crate) fn from_vec(path: &Path, bytes: Vec<u8>) -> Self {
        Bytes {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            source: Source::Memory(bytes),
            hole: Mutex::default(),
        }
    }

    /// The path that names the bytes.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The size in bytes, as found at open.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Whether the bytes are held in memory.
    pub(crate) fn in_memory(&self) -> bool {
        matches!(self.source, Source::Memory(_))
    }

    /// The error for a file that is not the size it had when opened.
    pub(crate) fn changed_size(&self) -> Error {
        Error::format(
            self.path.display().to_string(),
            format!("the file changed size while it was read ({} bytes when opened)", self.size),
        )
    }

    /// Fills `buf` with the bytes at `offset`; a range beyond the end is an error.
    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.size);
        if end.is_none() {
            return Err(self.changed_size());
        }
        match &self.source {
            Source::Memory(all) => {
                let start = offset as usize;
                buf.copy_from_slice(&all[start..start + buf.len()]);
                Ok(())
            }
            Source::File(file) => {
                let now = file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
                if now != self.size {
                    return Err(self.changed_size());
                }
                read_at_skipping_holes(file, buf, offset, &self.hole).map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => self.changed_size(),
                    _ => Error::io(&self.path, e),
                })
            }
        }
    }

    /// The `len` bytes at `offset`: borrowed from memory, or read into a buffer of their own.
    pub(crate) fn read_range(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>> {
        let len = usize::try_from(len).map_err(|_| self.changed_size())?;
        if let Source::Memory(all) = &self.source {
            let start = usize::try_from(offset).ok();
            return match start.and_then(|s| Some(s..s.checked_add(len)?)).and_then(|r| all.get(r)) {
                Some(bytes) => Ok(Cow::Borrowed(bytes)),
                None => Err(self.changed_size()),
            };
        }
        let mut bytes = try_vec(len, 0u8)?;
        self.read_at(offset, &mut bytes)?;
        Ok(Cow::Owned(bytes))
    }
}

/// Fills `buf` with the bytes of `file` at `offset`, as [`read_exact_at`], but a range that lies in
/// a hole of a sparse file is filled with zeros without reading it; `hole` remembers the last hole
/// found (start, end), so a long hole costs one system call, not one per read.
pub(crate) fn read_at_skipping_holes(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    hole: &Mutex<(u64, u64)>,
) -> std::io::Result<()> {
    let end = offset.saturating_add(buf.len() as u64);
    let mut hole = hole.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (start, stop) = *hole;
    let in_hole = (start <= offset && end <= stop)
        || match next_data(file, offset) {
            Some(data) if data >= end && data > offset => {
                *hole = (offset, data);
                true
            }
            _ => false,
        };
    drop(hole);
    if in_hole {
        buf.fill(0);
        return Ok(());
    }
    read_exact_at(file, buf, offset)
}

/// The offset of the first stored byte of `file` at or after `offset` (its size when none is);
/// `None` where the system cannot tell.
#[cfg(target_os = "linux")]
fn next_data(file: &File, offset: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let at = libc::off_t::try_from(offset).ok()?;
    // SAFETY: lseek on an open descriptor only moves its position; every read here is positioned.
    let found = unsafe { libc::lseek(file.as_raw_fd(), at, libc::SEEK_DATA) };
    if found >= 0 {
        return Some(found as u64);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) => file.metadata().ok().map(|m| m.len()),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn next_data(_: &File, _: u64) -> Option<u64> {
    None
}

#[cfg(unix)]
pub(crate) fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
pub(crate) fn read_exact_at(
    file: &std::fs::File,
    mut buf: &mut [u8],
    mut offset: u64,
) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_across_holes_equal_the_files_bytes() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut f = File::create(&path).unwrap();
        // Data, a 3 MiB hole, data, a 5 MiB hole, data at the very end.
        for (at, byte) in [(0u64, 1u8), (3 << 20, 2), ((8 << 20) + 4097, 3)] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&[byte; 5000]).unwrap();
        }
        drop(f);
        let whole = std::fs::read(&path).unwrap();
        let bytes = Bytes::open(&path).unwrap();
        for step in [1 << 20, 4096, 777_777, whole.len()] {
            let mut read = Vec::new();
            let mut buf = vec![0xAAu8; step];
            for at in (0..whole.len()).step_by(step) {
                let n = step.min(whole.len() - at);
                bytes.read_at(at as u64, &mut buf[..n]).unwrap();
                read.extend_from_slice(&buf[..n]);
            }
            assert!(read == whole, "reads of {step} bytes differ from the file");
        }
        let mut one = [0u8; 1];
        assert!(bytes.read_at(whole.len() as u64, &mut one).is_err(), "a read past the end");
    }
}
