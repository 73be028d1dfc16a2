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

use super::bytes::read_at_skipping_holes;
use crate::{Error, Result};
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
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

/// Removes every temporary file and folder ([`StagedDir`]) of this process that is not yet committed, and stops staging until
/// the returned value is dropped: what a program does on SIGINT or SIGTERM before it exits, so that a
/// stopped run leaves nothing behind (a commit already under way finishes first: its destination is
/// then whole). Safe to call from any thread; not from a signal handler (it takes a lock).
pub fn close_staging() -> StagingClosed {
    let mut live = live();
    let mut removed = 0;
    for path in live.drain(..) {
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let gone = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if gone.is_ok() {
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
    /// Bytes written or skipped so far: the file's length once committed.
    len: u64,
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
        Ok(StagedFile { file: Some(BufWriter::with_capacity(1 << 20, tmp)), destination, len: 0 })
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
        self.writer().write_all(bytes).map_err(|e| Error::io(&path, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Writes `bytes`, leaving a hole instead where they are a run of zeros of at least 64 KiB (the
    /// file reads the same; a sparse input stays sparse, as `cp --sparse=auto` does).
    pub fn write_sparse(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() < 1 << 16 || !all_zero(bytes) {
            return self.write_all(bytes);
        }
        let path = self.destination.path.clone();
        let skip =
            i64::try_from(bytes.len()).map_err(|_| Error::invalid("write", bytes.len(), "too long"))?;
        self.writer().seek(std::io::SeekFrom::Current(skip)).map_err(|e| Error::io(&path, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Copies everything `reader` yields into the file.
    pub fn copy_from(&mut self, reader: &mut dyn std::io::Read) -> Result<()> {
        let path = self.destination.path.clone();
        let n = std::io::copy(reader, self.writer()).map_err(|e| Error::io(&path, e))?;
        self.len += n;
        Ok(())
    }

    /// Flushes what was written and returns the temporary file for positioned reads.
    fn flushed(&mut self) -> Result<&File> {
        let (path, len) = (self.destination.path.clone(), self.len);
        let writer = self.writer();
        writer.flush().map_err(|e| Error::io(&path, e))?;
        let file = writer.get_ref().as_file();
        // A trailing hole: the length the skipped zeros give.
        if file.metadata().map_err(|e| Error::io(&path, e))?.len() != len {
            file.set_len(len).map_err(|e| Error::io(&path, e))?;
        }
        Ok(file)
    }

    /// Flushes and fsyncs the file, renames it over the destination (refused if the destination became
    /// something other than a regular file meanwhile) and fsyncs the folder.
    pub fn commit(mut self) -> Result<()> {
        let path = self.destination.path.clone();
        let io = |e| Error::io(&path, e);
        self.flushed()?.sync_all().map_err(io)?;
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

/// Whether every byte is zero.
fn all_zero(bytes: &[u8]) -> bool {
    let (head, words, tail) = bytemuck::pod_align_to::<u8, u64>(bytes);
    head.iter().all(|&b| b == 0)
        && words.iter().fold(0, |acc, &w| acc | w) == 0
        && tail.iter().all(|&b| b == 0)
}

/// One tensor of a [`SafetensorsWriter`], its bytes in the spool.
struct Spooled {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Where its bytes start in the spool.
    offset: u64,
    len: u64,
}

/// The safetensors header for `tensors` (data in this order, back to back) and `metadata` (keys
/// sorted), padded with spaces to a multiple of 8 bytes: the same input always gives the same bytes.
fn header(tensors: &[&Spooled], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
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
    let mut offset = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        if i > 0 || !metadata.is_empty() {
            h.push(',');
        }
        json_string(&mut h, &t.name);
        let shape = t.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        let end = offset + t.len;
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

/// Writes a safetensors file tensor by tensor, in bounded memory.
///
/// A safetensors file starts with a header that gives every tensor's offset, so nothing can be
/// written at the destination before the last tensor is known. The writer stages the data section
/// instead: each tensor's bytes go, as they come, to a spool (a [`StagedFile`] beside the destination);
/// [`finish`](Self::finish) then writes the header and copies the tensors from the spool into a
/// second staged file, widest elements first and then by name (so that every tensor is aligned to
/// its element size and the bytes do not depend on the order of the calls), and commits it. Memory
/// is one copy buffer whatever the size; the cost is that the data is written twice. Runs of zeros
/// are left as holes in both (see [`StagedFile::write_sparse`]). Dropped unfinished, it leaves nothing.
pub struct SafetensorsWriter {
    destination: Destination,
    spool: StagedFile,
    tensors: Vec<Spooled>,
    names: std::collections::HashSet<String>,
}

impl SafetensorsWriter {
    /// Starts a file at `path` (checked as a [`Destination`]; nothing appears there until
    /// [`finish`](Self::finish)).
    pub fn create(path: &Path) -> Result<Self> {
        let destination = Destination::check(path)?;
        let spool = StagedFile::create(&destination)?;
        Ok(SafetensorsWriter { destination, spool, tensors: Vec::new(), names: Default::default() })
    }

    /// Adds a tensor whose bytes are in memory.
    pub fn add(&mut self, name: &str, tensor: &OutTensor<'_>) -> Result<()> {
        self.add_chunks(name, tensor.dtype, &tensor.shape, &mut |sink| sink(&tensor.bytes))
    }

    /// Adds a tensor whose bytes `fill` passes, in pieces of any size, to the sink it is given (for
    /// example a [`ModelFile::read_chunks`](super::ModelFile::read_chunks) of an input tensor): the
    /// tensor is never whole in memory. The pieces must add up to the shape's size.
    #[allow(clippy::type_complexity)]
    pub fn add_chunks(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        fill: &mut dyn FnMut(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        dtype_name(dtype)?;
        let expected = shape.iter().try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
        if !self.names.insert(name.to_string()) {
            return Err(Error::invalid("tensor", name, "two tensors have this name"));
        }
        let offset = self.spool.len;
        fill(&mut |bytes| self.spool.write_sparse(bytes))?;
        let len = self.spool.len - offset;
        if expected != Some(len) {
            return Err(Error::invalid(
                "tensor",
                name,
                format!("{len} bytes do not match shape {shape:?} of {dtype:?}"),
            ));
        }
        self.tensors.push(Spooled { name: name.to_string(), dtype, shape: shape.to_vec(), offset, len });
        Ok(())
    }

    /// Bytes of tensor data added so far.
    pub fn data_len(&self) -> u64 {
        self.spool.len
    }

    /// The names of the tensors added so far, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// Writes the header with `metadata` and the tensors to the destination, atomically.
    pub fn finish(mut self, metadata: &HashMap<String, String>) -> Result<()> {
        let mut order: Vec<&Spooled> = self.tensors.iter().collect();
        order.sort_by(|a, b| b.dtype.size().cmp(&a.dtype.size()).then_with(|| a.name.cmp(&b.name)));
        let header = header(&order, metadata)?;
        let mut out = StagedFile::create(&self.destination)?;
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        let spool_path = self.spool.temporary_path().to_path_buf();
        let spool = self.spool.flushed()?;
        let mut buf = vec![0u8; 1 << 20];
        let hole = Mutex::default();
        for t in &order {
            let mut done = 0;
            while done < t.len {
                let n = (t.len - done).min(buf.len() as u64) as usize;
                read_at_skipping_holes(spool, &mut buf[..n], t.offset + done, &hole)
                    .map_err(|e| Error::io(&spool_path, e))?;
                out.write_sparse(&buf[..n])?;
                done += n as u64;
            }
        }
        out.commit()
    }
}

/// Writes `tensors` and `metadata` as a safetensors file at `path` through a [`SafetensorsWriter`]:
/// the file appears whole or not at all, and identical arguments give identical bytes.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, OutTensor<'_>)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut writer = SafetensorsWriter::create(path)?;
    for (name, t) in tensors {
        writer.add(name, t)?;
    }
    writer.finish(metadata)
}

/// A temporary folder beside its destination, renamed to it by [`StagedDir::commit`] and removed
/// (with everything in it) when dropped uncommitted or by [`close_staging`].
///
/// The destination must not exist: a folder is written whole, never merged into another. The
/// temporary is named `.NAME.greenai-XXXXXX.tmp` and locked while it lives, so that a later run
/// removes what a killed run left (as for [`StagedFile`]). Files go in through [`StagedFile`]s at
/// paths under [`path`](Self::path), subfolders through [`create_dir`](Self::create_dir).
pub struct StagedDir {
    /// `None` only once committed or removed.
    dir: Option<tempfile::TempDir>,
    destination: PathBuf,
    parent: PathBuf,
    _lock: Option<File>,
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let mut live = live();
            let path = dir.path().to_path_buf();
            drop(dir);
            live.retain(|p| *p != path);
        }
    }
}

/// Refuses an existing `path`, or one whose folder is missing; returns that folder.
fn check_new_dir(path: &Path) -> Result<PathBuf> {
    path.file_name().ok_or_else(|| refuse(path, "names no folder"))?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(refuse(path, "its parent is not a folder")),
        Err(e) => return Err(Error::io(path, e)),
    }
    match std::fs::symlink_metadata(path) {
        Ok(_) => Err(refuse(path, "exists: a model folder is written whole, never into or over another (remove it or choose a new path)")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(parent.to_path_buf()),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl StagedDir {
    /// Checks `destination` (absent, its folder present) and creates the temporary folder beside it.
    pub fn create(destination: &Path) -> Result<Self> {
        let parent = check_new_dir(destination)?;
        let name = destination.file_name().unwrap_or_default().to_string_lossy().to_string();
        let prefix = staging_prefix(&name);
        remove_leftover_dirs(&parent, &prefix);
        let mut live = live();
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .rand_bytes(12)
            .tempdir_in(&parent)
            .map_err(|e| Error::io(destination, e))?;
        live.push(dir.path().to_path_buf());
        drop(live);
        // Held until dropped: tells a later run's cleaning that this folder is alive (Linux's flock
        // locks folders too; where it cannot, nothing is cleaned).
        let lock = File::open(dir.path()).ok().filter(|f| f.try_lock().is_ok());
        Ok(StagedDir { dir: Some(dir), destination: destination.to_path_buf(), parent, _lock: lock })
    }

    /// The temporary folder, where the files go.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("a staged folder holds its folder until commit or drop").path()
    }

    /// The destination as given.
    pub fn destination(&self) -> &Path {
        &self.destination
    }

    /// Creates the subfolder `relative` (and its parents) in the temporary folder.
    pub fn create_dir(&self, relative: &Path) -> Result<()> {
        let path = self.path().join(relative);
        // Under the register's lock, so that a folder never appears after `close_staging` emptied it.
        let _live = live();
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))
    }

    /// Renames the temporary folder to the destination (refused if the destination appeared
    /// meanwhile) and fsyncs the parent folder.
    pub fn commit(mut self) -> Result<()> {
        let path = self.path().to_path_buf();
        if let Ok(dir) = File::open(&path) {
            let _ = dir.sync_all();
        }
        check_new_dir(&self.destination)?;
        let mut live = live();
        let dir = self.dir.take().expect("a staged folder holds its folder until commit or drop");
        let kept = dir.keep();
        live.retain(|p| *p != path);
        let renamed = std::fs::rename(&kept, &self.destination);
        if renamed.is_err() {
            let _ = std::fs::remove_dir_all(&kept);
        }
        drop(live);
        renamed.map_err(|e| Error::io(&self.destination, e))?;
        if let Ok(dir) = File::open(&self.parent) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// Removes the temporary folders named `PREFIX*.tmp` in `parent` that no live process holds (see
/// [`remove_leftovers`]).
fn remove_leftover_dirs(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if !file_name.starts_with(prefix) || !file_name.ends_with(".tmp") {
            continue;
        }
        let path = entry.path();
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let Ok(dir) = File::open(&path) else { continue };
        if dir.try_lock().is_ok() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
