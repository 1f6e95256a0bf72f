//! IDX files, the format of MNIST and Fashion-MNIST (LeCun et al.): a 4-byte magic number
//! (0, 0, element type, number of dimensions), one big-endian u32 size per dimension, then the
//! elements in row-major order. Only unsigned-byte elements (type 0x08, what both data sets use)
//! are read. Files may be gzipped (detected by the gzip magic bytes).

use super::Dataset;
use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use ndarray::Array2;
use std::io::Read;
use std::path::{Path, PathBuf};

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// Sizes of the dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Decompresses `bytes` when they start with the gzip magic bytes (1f 8b).
fn maybe_gunzip(bytes: &[u8], name: &Path) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| Error::data(name, format!("not a valid gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

/// Parses IDX `bytes` (gzipped or not); `name` is used in messages. Checks the magic number, the
/// element type and that the file holds exactly the elements its header announces.
pub fn parse_idx(bytes: &[u8], name: &Path) -> Result<IdxArray> {
    let raw = maybe_gunzip(bytes, name)?;
    if raw.len() < 4 {
        return Err(Error::data(
            name,
            format!("{} bytes: too short for an IDX header", raw.len()),
        ));
    }
    if raw[0] != 0 || raw[1] != 0 {
        return Err(Error::data(
            name,
            format!(
                "magic number {:02x} {:02x} {:02x} {:02x}: not an IDX file (expected 00 00 08 0N)",
                raw[0], raw[1], raw[2], raw[3]
            ),
        ));
    }
    if raw[2] != 0x08 {
        return Err(Error::data(
            name,
            format!(
                "IDX element type 0x{:02x}: only unsigned bytes (0x08) are supported",
                raw[2]
            ),
        ));
    }
    let nd = raw[3] as usize;
    let header = 4 + 4 * nd;
    if nd == 0 || raw.len() < header {
        return Err(Error::data(
            name,
            format!("IDX header announces {nd} dimensions but the file ends inside it"),
        ));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| {
            let b = &raw[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::data(name, format!("IDX sizes {dims:?} overflow")))?;
    let body = raw.len() - header;
    if body != count {
        let what = if body < count {
            "truncated"
        } else {
            "has trailing bytes"
        };
        return Err(Error::data(
            name,
            format!(
                "{what}: the header announces {dims:?} = {count} bytes of data, the file holds {body}"
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: raw[header..].to_vec(),
    })
}

/// Reads an IDX file (gzipped or not).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::data(path, e.to_string()))?;
    parse_idx(&bytes, path)
}

/// Images (an n × rows × cols IDX array) and their labels (n) as a [`Dataset`] of raw pixel
/// values 0..255, one image per row, with the image side (rows, cols).
pub fn image_dataset(
    images: &IdxArray,
    labels: &IdxArray,
    image_name: &Path,
    label_name: &Path,
) -> Result<(Dataset, (usize, usize))> {
    if images.dims.len() != 3 {
        return Err(Error::data(
            image_name,
            format!(
                "expected images of shape [n, rows, cols], found {:?}",
                images.dims
            ),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::data(
            label_name,
            format!("expected labels of shape [n], found {:?}", labels.dims),
        ));
    }
    let (n, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
    if rows == 0 || cols == 0 {
        return Err(Error::data(
            image_name,
            format!("images of {rows} × {cols} pixels; expected at least one pixel"),
        ));
    }
    if labels.dims[0] != n {
        return Err(Error::data(
            label_name,
            format!(
                "{} labels for {n} images in {}; expected one label per image",
                labels.dims[0],
                image_name.display()
            ),
        ));
    }
    let pixels = rows
        .checked_mul(cols)
        .filter(|&p| p <= isize::MAX as usize / 4)
        .ok_or_else(|| {
            Error::data(
                image_name,
                format!("images of {rows} × {cols} pixels are too large"),
            )
        })?;
    let points =
        Array2::from_shape_vec((n, pixels), images.data.iter().map(|&v| v as f32).collect())
            .expect("n × pixels elements, checked by parse_idx");
    let labels = labels.data.iter().map(|&l| l as u32).collect();
    Ok((
        Dataset {
            points,
            labels: Some(labels),
        },
        (rows, cols),
    ))
}

/// Maps pixel values 0..255 to [−1, 1]: x/127.5 − 1.
pub fn pixels_to_unit(v: f32) -> f32 {
    v / 127.5 - 1.0
}

/// Maps [−1, 1] back to pixel values, rounded and clipped to 0..255.
pub fn unit_to_pixels(v: f32) -> u8 {
    ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

/// Average-pools images of `side` (rows, cols), one per row of `points`, to `target` × `target`
/// pixels; the side must be a multiple of `target`.
pub fn downsample(
    points: &Array2<f32>,
    side: (usize, usize),
    target: usize,
) -> std::result::Result<Array2<f32>, String> {
    let (rows, cols) = side;
    if target == 0 || rows % target != 0 || cols % target != 0 {
        return Err(format!(
            "cannot downsample {rows}×{cols} images to {target}×{target}: the side must divide \
             both ({rows} and {cols})"
        ));
    }
    let (fr, fc) = (rows / target, cols / target);
    let scale = 1.0 / (fr * fc) as f32;
    let mut out = Array2::<f32>::zeros((points.nrows(), target * target));
    for (src, mut dst) in points.rows().into_iter().zip(out.rows_mut()) {
        for r in 0..rows {
            for c in 0..cols {
                dst[(r / fr) * target + c / fc] += src[r * cols + c] * scale;
            }
        }
    }
    Ok(out)
}

/// The file of `stem` in `dir`: `stem` itself or `stem.gz`, whichever exists.
pub fn find_in(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IDX byte string: header for `dims`, then `data`.
    pub(crate) fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    #[test]
    fn parses_plain_and_gzipped_files() {
        let bytes = idx(&[2, 2, 3], &(0..12).collect::<Vec<u8>>());
        let a = parse_idx(&bytes, Path::new("x")).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data[11], 11);
        let mut gz = Vec::new();
        {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
        }
        assert_eq!(parse_idx(&gz, Path::new("x.gz")).unwrap(), a);
    }

    #[test]
    fn rejects_bad_headers_and_sizes() {
        let msg = |b: &[u8]| parse_idx(b, Path::new("f")).unwrap_err().to_string();
        let good = idx(&[2, 3], &[0; 6]);
        assert!(msg(&good[..good.len() - 1]).contains("truncated"));
        let mut long = good.clone();
        long.push(0);
        assert!(msg(&long).contains("trailing"));
        let mut magic = good.clone();
        magic[0] = 0x50;
        assert!(msg(&magic).contains("magic number"));
        let mut float = good.clone();
        float[2] = 0x0d;
        assert!(msg(&float).contains("element type 0x0d"));
        assert!(msg(&good[..6]).contains("ends inside"));
        assert!(msg(&[0, 0]).contains("too short"));
        assert!(msg(&[0x1f, 0x8b, 1, 2]).contains("gzip"));
    }

    #[test]
    fn labels_must_match_images() {
        let images = parse_idx(&idx(&[3, 2, 2], &[0; 12]), Path::new("i")).unwrap();
        let labels = parse_idx(&idx(&[2], &[1, 2]), Path::new("l")).unwrap();
        let err = image_dataset(&images, &labels, Path::new("i"), Path::new("l"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 labels for 3 images"), "{err}");
        let labels = parse_idx(&idx(&[3], &[1, 2, 7]), Path::new("l")).unwrap();
        let (d, side) = image_dataset(&images, &labels, Path::new("i"), Path::new("l")).unwrap();
        assert_eq!((d.points.dim(), side), ((3, 4), (2, 2)));
        assert_eq!(d.labels.unwrap(), vec![1, 2, 7]);
    }

    #[test]
    fn pixels_round_trip_and_pool() {
        for v in 0..=255u8 {
            assert_eq!(unit_to_pixels(pixels_to_unit(v as f32)), v);
        }
        assert_eq!(pixels_to_unit(0.0), -1.0);
        assert_eq!(pixels_to_unit(255.0), 1.0);
        let x = Array2::from_shape_vec((1, 16), (0..16).map(|v| v as f32).collect()).unwrap();
        let y = downsample(&x, (4, 4), 2).unwrap();
        // Top-left 2×2 block: 0, 1, 4, 5 → 2.5.
        assert_eq!(y.row(0).to_vec(), vec![2.5, 4.5, 10.5, 12.5]);
        assert!(downsample(&x, (4, 4), 3).is_err());
    }
}
