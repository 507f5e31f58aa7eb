//! GGUF files (llama.cpp's format): the header, the metadata, the tensor infos and the
//! aligned data section, read from a memory map without copying the weights. Version 3
//! (and 2, which has the same layout). `quant` knows the tensor types' block layouts.

pub mod decoder;
pub mod linear;
pub mod quant;
pub(crate) mod tokenizer;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use quant::TensorType;

/// Why a GGUF file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a GGUF file (it starts with {magic:02x?}, not \"GGUF\")", .path.display())]
    Magic { path: PathBuf, magic: Vec<u8> },
    #[error("{}: GGUF version {version} is not supported (2 and 3 are)", .path.display())]
    Version { path: PathBuf, version: u32 },
    #[error("{}: the file ends early, at byte {at}, while reading {what}; it is truncated or damaged", .path.display())]
    Truncated { path: PathBuf, at: usize, what: String },
    #[error("{}: {what}", .path.display())]
    Invalid { path: PathBuf, what: String },
    /// An architecture, tensor type or setting the graph builder does not handle.
    #[error("{}: {what}", .path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("{}: no tensor `{name}`, which a `{arch}` model needs; the file is incomplete or not a {arch} model", .path.display())]
    MissingTensor { path: PathBuf, name: String, arch: String },
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Meta>),
}

impl Meta {
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match *self {
            Meta::U8(v) => Some(v.into()),
            Meta::U16(v) => Some(v.into()),
            Meta::U32(v) => Some(v.into()),
            Meta::U64(v) => Some(v),
            Meta::I8(v) => u64::try_from(v).ok(),
            Meta::I16(v) => u64::try_from(v).ok(),
            Meta::I32(v) => u64::try_from(v).ok(),
            Meta::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match *self {
            Meta::F32(v) => Some(v.into()),
            Meta::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Meta::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match *self {
            Meta::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Meta]> {
        match self {
            Meta::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A tensor's place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGML's order: `dims[0]` is the contiguous dimension (a weight matrix's input size).
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Offset of its data from the start of the data section.
    pub(crate) offset: u64,
}

impl TensorInfo {
    pub(crate) fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of its data.
    pub(crate) fn bytes(&self) -> u64 {
        let (block, size) = self.ty.block();
        self.elements() / block as u64 * size as u64
    }
}

/// An open GGUF file.
pub struct Gguf {
    pub(crate) path: PathBuf,
    pub version: u32,
    pub(crate) metadata: BTreeMap<String, Meta>,
    pub tensors: Vec<TensorInfo>,
    map: memmap2::Mmap,
    data_start: usize,
}

impl fmt::Debug for Gguf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Reads little-endian values from the file's bytes, naming what it reads when it ends.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| GgufError::Truncated {
            path: self.path.to_path_buf(),
            at: self.at,
            what: what.to_string(),
        })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    /// A length that must fit in what is left of the file (so a damaged length fails
    /// cleanly instead of asking for terabytes).
    fn len(&mut self, what: &str, each: usize) -> Result<usize, GgufError> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(each.max(1) as u64) > left {
            return Err(GgufError::Truncated { path: self.path.to_path_buf(), at: self.at, what: what.to_string() });
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.len(what, 1)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| GgufError::Invalid {
            path: self.path.to_path_buf(),
            what: format!("{what} is not UTF-8 text (at byte {})", self.at - n),
        })
    }

    fn value(&mut self, ty: u32, what: &str) -> Result<Meta, GgufError> {
        let mut n = |k: usize| -> Result<&'a [u8], GgufError> { self.take(k, what) };
        Ok(match ty {
            0 => Meta::U8(n(1)?[0]),
            1 => Meta::I8(n(1)?[0] as i8),
            2 => Meta::U16(u16::from_le_bytes(n(2)?.try_into().expect("2"))),
            3 => Meta::I16(i16::from_le_bytes(n(2)?.try_into().expect("2"))),
            4 => Meta::U32(u32::from_le_bytes(n(4)?.try_into().expect("4"))),
            5 => Meta::I32(i32::from_le_bytes(n(4)?.try_into().expect("4"))),
            6 => Meta::F32(f32::from_le_bytes(n(4)?.try_into().expect("4"))),
            7 => Meta::Bool(n(1)?[0] != 0),
            8 => Meta::Str(self.string(what)?),
            9 => {
                let inner = self.u32(what)?;
                let count = self.len(what, 1)?;
                let mut items = Vec::with_capacity(count.min(1 << 20));
                for _ in 0..count {
                    items.push(self.value(inner, what)?);
                }
                Meta::Array(items)
            }
            10 => Meta::U64(u64::from_le_bytes(n(8)?.try_into().expect("8"))),
            11 => Meta::I64(i64::from_le_bytes(n(8)?.try_into().expect("8"))),
            12 => Meta::F64(f64::from_le_bytes(n(8)?.try_into().expect("8"))),
            other => {
                return Err(GgufError::Invalid {
                    path: self.path.to_path_buf(),
                    what: format!("{what} has value type {other}, which GGUF does not define"),
                });
            }
        })
    }
}

impl Gguf {
    /// Opens and reads a GGUF file's header, metadata and tensor infos; the weights stay in
    /// the memory map until asked for.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file changed by another process while it is mapped
        // could change what is read, as with any reader, but not memory safety here, since
        // every access is bounds-checked against the map's length.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let (version, metadata, tensors, data_start) = Self::parse(path, &map)?;
        let g = Self { path: path.to_path_buf(), version, metadata, tensors, map, data_start };
        g.check_data()?;
        Ok(g)
    }

    #[allow(clippy::type_complexity)]
    fn parse(path: &Path, bytes: &[u8]) -> Result<(u32, BTreeMap<String, Meta>, Vec<TensorInfo>, usize), GgufError> {
        let mut c = Cursor { bytes, at: 0, path };
        let magic = c
            .take(4, "the magic number")
            .map_err(|_| GgufError::Magic { path: path.to_path_buf(), magic: bytes[..bytes.len().min(4)].to_vec() })?;
        if magic != b"GGUF" {
            return Err(GgufError::Magic { path: path.to_path_buf(), magic: magic.to_vec() });
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version { path: path.to_path_buf(), version });
        }
        let n_tensors = c.len("the tensor count", 24)?;
        let n_kv = c.len("the metadata count", 12)?;
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key {i}"))?;
            let ty = c.u32(&format!("the type of `{key}`"))?;
            let value = c.value(ty, &format!("metadata `{key}`"))?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = c.string(&format!("the name of tensor {i}"))?;
            let n_dims = c.u32(&format!("the rank of tensor `{name}`"))?;
            if n_dims > 4 {
                return Err(GgufError::Invalid {
                    path: path.to_path_buf(),
                    what: format!("tensor `{name}` has {n_dims} dimensions (GGML has at most 4)"),
                });
            }
            let dims =
                (0..n_dims).map(|_| c.u64(&format!("the shape of tensor `{name}`"))).collect::<Result<_, _>>()?;
            let code = c.u32(&format!("the type of tensor `{name}`"))?;
            let ty = TensorType::from_code(code);
            let offset = c.u64(&format!("the offset of tensor `{name}`"))?;
            tensors.push(TensorInfo { name, dims, ty, offset });
        }
        let alignment = metadata.get("general.alignment").and_then(Meta::as_u64).unwrap_or(32).max(1) as usize;
        let data_start = c.at.div_ceil(alignment) * alignment;
        Ok((version, metadata, tensors, data_start))
    }

    /// Every tensor's data lies inside the file, at a whole number of blocks.
    fn check_data(&self) -> Result<(), GgufError> {
        let bad = |what: String| GgufError::Invalid { path: self.path.clone(), what };
        for t in &self.tensors {
            // An unknown type is reported where the tensor is used, with its name: a file
            // may hold tensors ualign never reads.
            if let TensorType::Unknown(_) = t.ty {
                continue;
            }
            let (block, _) = t.ty.block();
            if t.dims.first().is_some_and(|&d| !d.is_multiple_of(block as u64)) {
                return Err(bad(format!(
                    "tensor `{}` of type {} has a first dimension of {}, not a multiple of its block of {block}",
                    t.name, t.ty, t.dims[0]
                )));
            }
            let end = (self.data_start as u64).saturating_add(t.offset).saturating_add(t.bytes());
            if end > self.map.len() as u64 {
                return Err(GgufError::Truncated {
                    path: self.path.clone(),
                    at: self.map.len(),
                    what: format!("the data of tensor `{}` (it would end at byte {end})", t.name),
                });
            }
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Option<&Meta> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's raw bytes, as stored.
    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        let start = self.data_start + t.offset as usize;
        &self.map[start..start + t.bytes() as usize]
    }

    /// A tensor's values as f32, dequantised block by block.
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        quant::dequantize(t.ty, self.data(t)).map_err(|what| GgufError::Invalid {
            path: self.path.clone(),
            what: format!("tensor `{}`: {what}", t.name),
        })
    }
}
