//! Writing files safely: the one way every greenai writer (models, reports) replaces a file.
//!
//! A [`Destination`] is checked before any work is done: its folder exists, and the path is either
//! absent or an existing regular file (a symbolic link, a device such as `/dev/null`, a FIFO or a
//! folder is refused, so nothing outside the destination is ever followed or replaced).
//! [`check_distinct`] refuses an output that is also an input or another output (compared after
//! resolving links, and by device and inode for hard links).
//! A [`StagedFile`] is a temporary file created exclusively (`O_CREAT | O_EXCL`, a random name, so
//! a link planted in a shared folder is never opened) in the destination's folder, named
//! `.NAME.greenai-XXXXXX.tmp` so a leftover is recognisable; [`StagedFile::commit`] flushes it,
//! fsyncs it, renames it over the destination and fsyncs the folder. Dropping a staged file without
//! committing (every error path) removes it. Every live temporary is listed in a process-wide
//! register, so that a program stopped by a signal can remove them all with [`close_staging`] (the
//! `greenai` command does on SIGINT and SIGTERM). A run killed outright (`kill -9`) leaves its
//! temporary behind; the next run writing the same destination removes it (a live run's temporary
//! is locked and left alone).

use crate::{Error, Result};
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// A tensor to write: dtype, shape and little-endian bytes (borrowed or owned).
#[derive(Clone, Debug)]
pub struct OutTensor<'a> {
    /// The safetensors dtype.
    pub dtype: Dtype,
    /// The shape.
    pub shape: Vec<usize>,
    /// The bytes: element count times the dtype's size.
    pub bytes: Cow<'a, [u8]>,
}

/// A path greenai may replace: its folder exists and it is absent or a regular file.
#[derive(Clone, Debug)]
pub struct Destination {
    path: PathBuf,
    dir: PathBuf,
    resolved: PathBuf,
}

fn refuse(path: &Path, why: &str) -> Error {
    Error::invalid("output", path.display(), why)
}

/// The path with links resolved: the file itself when it exists, else its resolved folder joined with
/// its name. `None` when even the folder cannot be resolved.
fn resolve(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Some(p);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

impl Destination {
    /// Checks `path` as a destination: it names a file, its folder exists and is a folder, and it is
    /// absent or a regular file (not a symbolic link, device, FIFO, socket or folder).
    pub fn check(path: &Path) -> Result<Self> {
        let name = path.file_name().ok_or_else(|| refuse(path, "names no file"))?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refuse(path, "its parent is not a folder")),
            Err(e) => return Err(Error::io(path, e)),
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(path, "is a symbolic link: give the path of the file itself"))
            }
            Ok(m) if !m.is_file() => {
                return Err(refuse(
                    path,
                    "exists and is not a regular file (a folder, device, FIFO or socket)",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        let resolved = std::fs::canonicalize(dir).map_err(|e| Error::io(path, e))?.join(name);
        Ok(Destination { path: path.to_path_buf(), dir: dir.to_path_buf(), resolved })
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// Refuses two paths of `paths` (each with its role, such as `"input"` or `"--report"`) that name the
/// same file: the same path after resolving links, or the same inode (hard links).
pub fn check_distinct(paths: &[(&'static str, &Path)]) -> Result<()> {
    for (i, (role_a, a)) in paths.iter().enumerate() {
        for (role_b, b) in &paths[i + 1..] {
            let same = match (resolve(a), resolve(b)) {
                (Some(x), Some(y)) => x == y,
                _ => a == b,
            } || same_inode(a, b);
            if same {
                return Err(Error::invalid(
                    role_b,
                    b.display(),
                    format!("names the same file as the {role_a} `{}`", a.display()),
                ));
            }
        }
    }
    Ok(())
}

/// The temporary-name prefix of a destination file name.
fn staging_prefix(name: &str) -> String {
    format!(".{name}.greenai-")
}

/// Removes what killed runs left beside `destination`: regular files named like its temporaries
/// (`.NAME.greenai-XXXXXX.tmp`) that no live process holds. Every staged file holds an exclusive
/// lock on itself while it lives, and the kernel drops the lock when its process dies (even by
/// `kill -9`), so a file whose lock can be taken belongs to nobody. Only names are removed (links are
/// skipped, nothing is opened for writing); failures are ignored: cleaning is a courtesy.
fn remove_leftovers(destination: &Destination) {
    let Some(name) = destination.resolved.file_name() else { return };
    let prefix = staging_prefix(&name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(&destination.dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if !file_name.starts_with(&prefix) || !file_name.ends_with(".tmp") {
            continue;
        }
        let path = entry.path();
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(file) = File::open(&path) else { continue };
        if file.try_lock().is_ok() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The temporaries of this process that exist now. Held while a temporary is created, renamed or
/// removed, so that what it lists is exactly what exists.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic while the list was held leaves it whole (every change is one push or one removal).
    LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Proof that every temporary of the process was removed; until it is dropped no staged file can be
/// created, committed or removed, so none appears. Made by [`close_staging`].
#[must_use = "staging reopens when this is dropped"]
pub struct StagingClosed {
    _live: MutexGuard<'static, Vec<PathBuf>>,
    removed: usize,
}

impl StagingClosed {
    /// How many temporaries were removed.
    pub fn removed(&self) -> usize {
        self.removed
    }
}

/// Removes every temporary file of this process that is not yet committed, and stops staging until
/// the returned value is dropped: what a program does on SIGINT or SIGTERM before it exits, so that a
/// stopped run leaves nothing behind (a commit already under way finishes first: its destination is
/// then whole). Safe to call from any thread; not from a signal handler (it takes a lock).
pub fn close_staging() -> StagingClosed {
    let mut live = live();
    let mut removed = 0;
    for path in live.drain(..) {
        if std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    StagingClosed { _live: live, removed }
}

/// A temporary file beside its destination, renamed over it by [`StagedFile::commit`] and removed
/// when dropped uncommitted.
pub struct StagedFile {
    /// `None` only once committed or removed.
    file: Option<BufWriter<tempfile::NamedTempFile>>,
    destination: Destination,
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            let mut live = live();
            let path = file.get_ref().path().to_path_buf();
            // Unflushed bytes are dropped with it; the file is removed by its own drop.
            let (tmp, _) = file.into_parts();
            drop(tmp);
            live.retain(|p| *p != path);
        }
    }
}

impl StagedFile {
    /// Creates the temporary file exclusively in the destination's folder (checked again here).
    pub fn create(destination: &Destination) -> Result<Self> {
        let destination = Destination::check(&destination.path)?;
        remove_leftovers(&destination);
        let name = destination.resolved.file_name().unwrap_or_default().to_string_lossy();
        let prefix = staging_prefix(&name);
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp").rand_bytes(12);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The permissions a plain `File::create` would give (the umask applies), not 0600.
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let mut live = live();
        let tmp = builder.tempfile_in(&destination.dir).map_err(|e| Error::io(&destination.path, e))?;
        live.push(tmp.path().to_path_buf());
        drop(live);
        // Held until the file is closed: tells a later run's cleaning that this file is alive. Where the
        // file system has no locks, nobody can take one, so nothing is cleaned: not an error.
        let _ = tmp.as_file().try_lock();
        Ok(StagedFile { file: Some(BufWriter::with_capacity(1 << 20, tmp)), destination })
    }

    fn writer(&mut self) -> &mut BufWriter<tempfile::NamedTempFile> {
        self.file.as_mut().expect("a staged file holds its file until commit or drop")
    }

    /// The path of the temporary file.
    pub fn temporary_path(&self) -> &Path {
        self.file.as_ref().expect("a staged file holds its file until commit or drop").get_ref().path()
    }

    /// Writes `bytes` (an error names the destination).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let path = self.destination.path.clone();
        self.writer().write_all(bytes).map_err(|e| Error::io(&path, e))
    }

    /// Flushes and fsyncs the file, renames it over the destination (refused if the destination became
    /// something other than a regular file meanwhile) and fsyncs the folder.
    pub fn commit(mut self) -> Result<()> {
        let path = self.destination.path.clone();
        let io = |e| Error::io(&path, e);
        self.writer().flush().map_err(io)?;
        self.writer().get_ref().as_file().sync_all().map_err(io)?;
        Destination::check(&path)?;
        let mut live = live();
        let file = self.file.take().expect("a staged file holds its file until commit or drop");
        let temporary = file.get_ref().path().to_path_buf();
        let (tmp, _) = file.into_parts(); // flushed above: nothing is left in the buffer
                                          // On failure the temporary is removed here, still under the lock.
        let persisted = tmp.persist(&path).map_err(|e| e.error);
        live.retain(|p| *p != temporary);
        drop(live);
        persisted.map_err(io)?;
        // Make the rename itself durable. Some file systems cannot fsync a folder: not an error.
        if let Ok(dir) = File::open(&self.destination.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// Writes `bytes` to `destination` through a [`StagedFile`].
pub fn write_file(destination: &Destination, bytes: &[u8]) -> Result<()> {
    let mut staged = StagedFile::create(destination)?;
    staged.write_all(bytes)?;
    staged.commit()
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn dtype_name(dtype: Dtype) -> Result<&'static str> {
    Ok(match dtype {
        Dtype::BOOL => "BOOL",
        Dtype::U8 => "U8",
        Dtype::I8 => "I8",
        Dtype::F8_E5M2 => "F8_E5M2",
        Dtype::F8_E4M3 => "F8_E4M3",
        Dtype::I16 => "I16",
        Dtype::U16 => "U16",
        Dtype::F16 => "F16",
        Dtype::BF16 => "BF16",
        Dtype::I32 => "I32",
        Dtype::U32 => "U32",
        Dtype::F32 => "F32",
        Dtype::F64 => "F64",
        Dtype::I64 => "I64",
        Dtype::U64 => "U64",
        other => return Err(Error::invalid("dtype", format!("{other:?}"), "not writable by greenai")),
    })
}

/// The safetensors header for `tensors` (data in this order) and `metadata` (keys sorted), padded
/// with spaces to a multiple of 8 bytes: the same input always gives the same bytes.
fn header(tensors: &[&(String, OutTensor<'_>)], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
    let mut h = String::from("{");
    if !metadata.is_empty() {
        h.push_str("\"__metadata__\":{");
        let sorted: BTreeMap<_, _> = metadata.iter().collect();
        for (i, (k, v)) in sorted.into_iter().enumerate() {
            if i > 0 {
                h.push(',');
            }
            json_string(&mut h, k);
            h.push(':');
            json_string(&mut h, v);
        }
        h.push('}');
    }
    let mut offset = 0usize;
    for (i, (name, t)) in tensors.iter().enumerate() {
        if i > 0 || !metadata.is_empty() {
            h.push(',');
        }
        json_string(&mut h, name);
        let shape = t.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        let end = offset + t.bytes.len();
        h.push_str(&format!(
            ":{{\"dtype\":\"{}\",\"shape\":[{shape}],\"data_offsets\":[{offset},{end}]}}",
            dtype_name(t.dtype)?
        ));
        offset = end;
    }
    h.push('}');
    let mut bytes = h.into_bytes();
    bytes.resize(bytes.len().div_ceil(8) * 8, b' ');
    Ok(bytes)
}

/// Writes `tensors` and `metadata` as a safetensors file at `path` through a [`StagedFile`]: the file
/// appears whole or not at all, and identical arguments give identical bytes.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, OutTensor<'_>)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut names = std::collections::HashSet::new();
    for (name, t) in tensors {
        let expected = t.shape.iter().try_fold(t.dtype.size(), |acc, &d| acc.checked_mul(d));
        if expected != Some(t.bytes.len()) {
            return Err(Error::invalid(
                "tensor",
                name,
                format!("{} bytes do not match shape {:?} of {:?}", t.bytes.len(), t.shape, t.dtype),
            ));
        }
        if !names.insert(name.as_str()) {
            return Err(Error::invalid("tensor", name, "two tensors have this name"));
        }
    }
    // Widest elements first, then by name (the order the safetensors crate writes): every tensor's data
    // is aligned to its element size, and the order does not depend on the caller's.
    let mut tensors: Vec<&(String, OutTensor<'_>)> = tensors.iter().collect();
    tensors.sort_by(|(a, x), (b, y)| y.dtype.size().cmp(&x.dtype.size()).then_with(|| a.cmp(b)));
    let header = header(&tensors, metadata)?;
    let destination = Destination::check(path)?;
    let mut staged = StagedFile::create(&destination)?;
    staged.write_all(&(header.len() as u64).to_le_bytes())?;
    staged.write_all(&header)?;
    for (_, t) in &tensors {
        staged.write_all(&t.bytes)?;
    }
    staged.commit()
}
