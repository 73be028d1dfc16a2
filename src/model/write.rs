//! Writing safetensors files atomically: a temporary file in the same folder, renamed on success.

use crate::{Error, Result};
use safetensors::tensor::View;
use safetensors::Dtype;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

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

impl View for &OutTensor<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes `tensors` and `metadata` as a safetensors file at `path`. The file appears whole or not at
/// all: an existing file at `path` is replaced only once the new one is completely written.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, OutTensor<'_>)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    for (name, t) in tensors {
        let expected = t.shape.iter().try_fold(t.dtype.size(), |acc, &d| acc.checked_mul(d));
        if expected != Some(t.bytes.len()) {
            return Err(Error::invalid(
                "tensor",
                name,
                format!("{} bytes do not match shape {:?} of {:?}", t.bytes.len(), t.shape, t.dtype),
            ));
        }
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name =
        path.file_name().ok_or_else(|| Error::invalid("path", path.display(), "names no file"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let metadata = (!metadata.is_empty()).then(|| metadata.clone());
    let written =
        safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), &metadata, &tmp)
            .map_err(|e| match e {
                safetensors::SafeTensorError::IoError(io) => Error::io(path, io),
                other => Error::format(path.display().to_string(), format!("{other:?}")),
            })
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
