//! Model files: safetensors files and model folders in (read and checked, tensor by tensor: [`Model`],
//! [`ModelFile`]) and out (through the one safe-write path of [`write`]: [`ModelWriter`],
//! [`SafetensorsWriter`]), and the compressed-file convention.

mod bytes;
mod compress;
#[cfg(feature = "serde")]
pub mod compressed_tensors;
mod dir;
mod file;
#[cfg(feature = "serde")]
pub mod gguf;
mod inspect;
#[cfg(feature = "serde")]
mod reader;
mod sparse_store;
mod write;

pub use compress::{
    compress, decompress, decompress_tensors, metadata_key, Calibrate, CompressOptions, CompressReport,
    Grouping, Method, Pruning, Target, TensorReport,
};
pub use dir::{Model, ModelWriter, CONFIG_FILE, INDEX_FILE, SINGLE_FILE};
pub use file::{ModelFile, TensorEntry, TensorInfo, CHUNK};
pub use inspect::{inspect, inspect_logical, summarize, LogicalSummary, TensorSummary};
#[cfg(feature = "serde")]
pub use reader::{CompressedModel, Int8Weights, ModelFormat};
pub use write::{
    check_distinct, close_staging, write_file, write_safetensors, Destination, OutTensor, SafetensorsWriter,
    StagedDir, StagedFile, StagingClosed,
};

/// Maps a safetensors dtype to greenai's, where greenai has one.
pub fn dtype_from_safetensors(dtype: safetensors::Dtype) -> Option<crate::DType> {
    use crate::DType;
    use safetensors::Dtype as S;
    Some(match dtype {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::I8 => DType::I8,
        S::U8 => DType::U8,
        S::I16 => DType::I16,
        S::U16 => DType::U16,
        S::I32 => DType::I32,
        _ => return None,
    })
}

/// The safetensors dtype that stores a greenai dtype (4-bit types are stored packed as U8).
pub fn dtype_to_safetensors(dtype: crate::DType) -> safetensors::Dtype {
    use crate::DType;
    use safetensors::Dtype as S;
    match dtype {
        DType::F32 => S::F32,
        DType::F16 => S::F16,
        DType::BF16 => S::BF16,
        DType::I8 => S::I8,
        DType::U8 | DType::I4 | DType::U4 => S::U8,
        DType::I16 => S::I16,
        DType::U16 => S::U16,
        DType::I32 => S::I32,
    }
}
