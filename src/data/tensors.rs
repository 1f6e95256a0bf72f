//! Named tensors with string metadata in one safetensors file: the format of saved models
//! (`models/seed-S/gen-GGG.safetensors`) and of network weights. numpy reads them with
//! `safetensors.numpy.load_file(path)` and PyTorch with `safetensors.torch.load_file(path)`;
//! the metadata with `safe_open(path, "np").metadata()`.
//!
//! Files are written with their metadata keys in sorted order, so that the bytes are a function
//! of the tensors and metadata alone and reruns write identical files.

use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A tensor's element type and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Element types a [`TensorFile`] holds.
pub trait Element: Copy {
    /// The safetensors dtype.
    const DTYPE: Dtype;
    /// Bytes per element.
    const SIZE: usize;
    /// Writes the `SIZE` little-endian bytes of `self` to `out`.
    fn put(self, out: &mut [u8]);
    /// The value of `SIZE` little-endian bytes.
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: Dtype = $d;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("element size"))
            }
        }
    };
}
element!(f32, Dtype::F32);
element!(f64, Dtype::F64);
element!(u32, Dtype::U32);
element!(u8, Dtype::U8);

/// Tensors by name and metadata by key, as read from or written to a safetensors file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    /// String metadata (`__metadata__`).
    pub metadata: BTreeMap<String, String>,
    tensors: BTreeMap<String, Tensor>,
    path: PathBuf,
}

impl TensorFile {
    /// An empty file whose metadata `format` is `format`.
    pub fn new(format: &str) -> Self {
        let mut f = TensorFile::default();
        f.set("format", format);
        f
    }

    /// Sets the metadata `key`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.metadata.insert(key.to_string(), value.into());
    }

    /// The metadata `key`, or an error naming the file.
    pub fn get(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.error(format!("metadata has no `{key}`")))
    }

    /// The metadata `key` parsed as `T` (numbers are written in Rust's shortest round-trip form,
    /// so an f64 comes back bit for bit).
    pub fn value<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        self.get(key)?
            .parse()
            .map_err(|_| self.error(format!("metadata `{key}` is not a valid value")))
    }

    /// Adds the tensor `name` of `shape` holding `values` (row-major).
    pub fn put<T: Element>(&mut self, name: &str, shape: &[usize], values: &[T]) {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        let mut bytes = vec![0u8; values.len() * T::SIZE];
        for (out, &v) in bytes.chunks_exact_mut(T::SIZE).zip(values) {
            v.put(out);
        }
        self.tensors.insert(
            name.to_string(),
            Tensor {
                dtype: T::DTYPE,
                shape: shape.to_vec(),
                bytes,
            },
        );
    }

    /// Whether the tensor `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The names of the tensors, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The shape and values of tensor `name`, which must have element type `T`.
    pub fn take<T: Element>(&self, name: &str) -> Result<(Vec<usize>, Vec<T>)> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| self.error(format!("no tensor `{name}`")))?;
        if t.dtype != T::DTYPE {
            return Err(self.error(format!(
                "tensor `{name}` is {:?}; expected {:?}",
                t.dtype,
                T::DTYPE
            )));
        }
        let values = t.bytes.chunks_exact(T::SIZE).map(T::get).collect();
        Ok((t.shape.clone(), values))
    }

    /// Tensor `name` as a vector of `len` values of type `T`.
    pub fn vector<T: Element>(&self, name: &str, len: usize) -> Result<Vec<T>> {
        self.shaped(name, &[len])
    }

    /// Tensor `name` with exactly `shape`.
    pub fn shaped<T: Element>(&self, name: &str, shape: &[usize]) -> Result<Vec<T>> {
        let (s, v) = self.take(name)?;
        if s != shape {
            return Err(self.error(format!(
                "tensor `{name}` has shape {s:?}; expected {shape:?}"
            )));
        }
        Ok(v)
    }

    /// Tensor `name` as an [rows, cols] f32 matrix.
    pub fn matrix(&self, name: &str) -> Result<ndarray::Array2<f32>> {
        let (s, v) = self.take::<f32>(name)?;
        match s[..] {
            [r, c] => Ok(ndarray::Array2::from_shape_vec((r, c), v).expect("shape checked")),
            _ => Err(self.error(format!(
                "tensor `{name}` has shape {s:?}; expected [rows, columns]"
            ))),
        }
    }

    /// An error about this file (for a file that was read; otherwise a run error).
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::data(&self.path, message)
    }

    /// The safetensors header (its length, then the JSON padded with spaces to a multiple of
    /// 8 bytes) and the tensors' bytes in file order: as `safetensors::serialize` lays them out
    /// (tensors by descending dtype, then name), with the metadata keys sorted.
    fn layout(&self) -> Result<(Vec<u8>, Vec<&[u8]>)> {
        let mut order: Vec<(&String, &Tensor)> = self.tensors.iter().collect();
        order.sort_by(|(a, x), (b, y)| y.dtype.cmp(&x.dtype).then(a.cmp(b)));
        let mut header = serde_json::Map::new();
        let meta = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
        let mut offset = 0;
        for (name, t) in &order {
            let dtype = serde_json::to_value(t.dtype)
                .map_err(|e| Error::Run(format!("safetensors: {e}")))?;
            header.insert(
                (*name).clone(),
                serde_json::json!({
                    "dtype": dtype,
                    "shape": t.shape,
                    "data_offsets": [offset, offset + t.bytes.len()],
                }),
            );
            offset += t.bytes.len();
        }
        let mut text = serde_json::to_vec(&serde_json::Value::Object(header))
            .map_err(|e| Error::Run(format!("safetensors: {e}")))?;
        text.resize(text.len().next_multiple_of(8), b' ');
        let mut head = (text.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(&text);
        Ok((head, order.iter().map(|(_, t)| &t.bytes[..]).collect()))
    }

    /// The file's bytes: the safetensors header with sorted metadata, then the tensors.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (head, parts) = self.layout()?;
        let mut out = head;
        out.reserve(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            out.extend_from_slice(p);
        }
        Ok(out)
    }

    /// Writes the file to `path` (the tensors straight from memory, with no copy of the whole
    /// file).
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let io = |e| Error::io(format!("cannot write {}", path.display()), e);
        let (head, parts) = self.layout()?;
        let mut file = std::fs::File::create(path).map_err(io)?;
        file.write_all(&head).map_err(io)?;
        for p in parts {
            file.write_all(p).map_err(io)?;
        }
        Ok(())
    }

    /// Reads a safetensors file.
    pub fn read(path: &Path) -> Result<TensorFile> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::data(path, format!("cannot read it: {e}")))?;
        TensorFile::parse(&bytes, path)
    }

    /// [`TensorFile::read`] of the file's `bytes` (`path` for messages).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<TensorFile> {
        let bad = |e: safetensors::SafeTensorError| {
            Error::data(path, format!("not a safetensors file: {e}"))
        };
        let st = SafeTensors::deserialize(bytes).map_err(bad)?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            tensors.insert(
                name,
                Tensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                },
            );
        }
        Ok(TensorFile {
            metadata: header
                .metadata()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            tensors,
            path: path.to_path_buf(),
        })
    }

    /// Checks that the metadata `format` is `format`; `what` names the writer for the message.
    pub fn expect_format(&self, format: &str, what: &str) -> Result<()> {
        match self.metadata.get("format") {
            Some(f) if f == format => Ok(()),
            Some(f) => Err(self.error(format!(
                "its format is `{f}`; expected {what} (format `{format}`)"
            ))),
            None => Err(self.error(format!("expected {what} (format `{format}`)"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// The same safetensors file with its `__metadata__` keys in sorted order. `safetensors`
    /// writes the metadata from a `HashMap`, whose order changes from run to run; sorting makes the
    /// file bytes a function of the tensors and metadata alone. The header is re-padded with spaces
    /// to a multiple of 8 bytes, as the format asks; tensor offsets are relative to the data section
    /// and do not change.
    fn with_sorted_metadata(bytes: &[u8]) -> Result<Vec<u8>> {
        let bad = || Error::Run("safetensors: unexpected header".into());
        let n = u64::from_le_bytes(bytes.get(..8).ok_or_else(bad)?.try_into().expect("8 bytes"))
            as usize;
        let header = bytes.get(8..8 + n).ok_or_else(bad)?;
        let mut value: serde_json::Value = serde_json::from_slice(header).map_err(|_| bad())?;
        if let Some(serde_json::Value::Object(meta)) = value.get_mut("__metadata__") {
            let mut entries: Vec<(String, serde_json::Value)> =
                std::mem::take(meta).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            meta.extend(entries);
        }
        let mut text = serde_json::to_vec(&value).map_err(|_| bad())?;
        while text.len() % 8 != 0 {
            text.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(&text);
        out.extend_from_slice(&bytes[8 + n..]);
        Ok(out)
    }

    /// The file as the safetensors crate serialises it, with the metadata keys then sorted.
    fn reference_bytes(f: &TensorFile) -> Vec<u8> {
        let views: Vec<(String, TensorView)> = f
            .tensors
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
                )
            })
            .collect();
        let meta = f.metadata.clone().into_iter().collect();
        with_sorted_metadata(&safetensors::serialize(views, Some(meta)).unwrap()).unwrap()
    }

    #[test]
    fn files_are_laid_out_as_the_safetensors_crate_does() {
        let mut f = TensorFile::new("test-1");
        for k in ["zeta", "alpha", "mid", "b"] {
            f.set(k, format!("value of {k} with \"quotes\" and é"));
        }
        f.put("w", &[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        f.put("a", &[1], &[0.5f64]);
        f.put("labels", &[3], &[1u32, 2, 3]);
        f.put("pixels", &[5], &[1u8, 2, 3, 4, 5]);
        f.put("b", &[0], &[] as &[f32]);
        assert_eq!(f.to_bytes().unwrap(), reference_bytes(&f));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.safetensors");
        f.write(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), reference_bytes(&f));
    }

    #[test]
    fn tensors_and_metadata_round_trip_bit_for_bit() {
        let mut f = TensorFile::new("test-1");
        f.set("scale", format!("{}", 0.1f64 + 0.2));
        f.put("a", &[2, 2], &[1.0f64, f64::MIN_POSITIVE, -0.0, 1e300]);
        f.put("b", &[3], &[1.5f32, f32::NAN, 7.0]);
        f.put("c", &[2], &[7u32, u32::MAX]);
        let bytes = f.to_bytes().unwrap();
        assert_eq!(bytes, f.to_bytes().unwrap());
        let g = TensorFile::parse(&bytes, Path::new("x")).unwrap();
        g.expect_format("test-1", "a test file").unwrap();
        assert_eq!(g.value::<f64>("scale").unwrap(), 0.1 + 0.2);
        let (s, a) = g.take::<f64>("a").unwrap();
        assert_eq!(s, [2, 2]);
        assert_eq!(a[1].to_bits(), f64::MIN_POSITIVE.to_bits());
        assert_eq!(a[2].to_bits(), (-0.0f64).to_bits());
        assert!(g.vector::<f32>("b", 3).unwrap()[1].is_nan());
        assert_eq!(g.vector::<u32>("c", 2).unwrap(), [7, u32::MAX]);
        assert!(g.take::<f32>("a").is_err(), "wrong dtype is an error");
        assert!(g.vector::<u32>("c", 3).is_err(), "wrong shape is an error");
        assert!(g.expect_format("other-1", "another").is_err());
    }
}
