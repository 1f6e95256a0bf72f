//! Reading user data files (CSV, NPY) into a [`Dataset`], and writing NPY outputs.

use super::Dataset;
use crate::error::{Error, Result};
use ndarray::{Array1, Array2};
use ndarray_npy::{ReadDataError, ReadNpyError, ReadNpyExt, ReadableElement, WriteNpyExt};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// Cells read as missing values.
const MISSING: [&str; 5] = ["", "NA", "na", "NaN", "nan"];

/// Reads a CSV file of numeric columns. `columns` picks columns by header name (or by 0-based
/// index when `header` is false); `None` takes every column except the label column.
/// `label_column` names a column of class labels: integers are kept, other strings are numbered
/// in sorted order. Rows with a missing cell (`NA`, empty, `nan`) are skipped when
/// `skip_missing`, and are an error otherwise.
pub fn read_csv(
    path: &Path,
    header: bool,
    columns: Option<&[String]>,
    label_column: Option<&str>,
    skip_missing: bool,
) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::data(path, format!("cannot read: {e}")))?;
    parse_csv(
        &bytes,
        &path.display().to_string(),
        header,
        columns,
        label_column,
        skip_missing,
    )
}

/// [`read_csv`] of the CSV text `bytes` (`name` for messages).
pub fn parse_csv(
    bytes: &[u8],
    name: &str,
    header: bool,
    columns: Option<&[String]>,
    label_column: Option<&str>,
    skip_missing: bool,
) -> Result<Dataset> {
    let err = |m: String| Error::data(name, m);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(header)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let records: Vec<csv::StringRecord> = reader
        .records()
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| err(format!("malformed CSV: {e}")))?;
    let width = records
        .first()
        .map(|r| r.len())
        .ok_or_else(|| err("no data rows".into()))?;
    let names: Vec<String> = if header {
        let h = reader
            .headers()
            .map_err(|e| err(format!("malformed header: {e}")))?;
        h.iter().map(str::to_string).collect()
    } else {
        (0..width).map(|i| i.to_string()).collect()
    };
    let find = |c: &str| {
        names.iter().position(|n| n == c).ok_or_else(|| {
            err(format!(
                "no column `{c}`; the columns are: {}",
                names.join(", ")
            ))
        })
    };
    let label_idx = label_column.map(find).transpose()?;
    let value_idx: Vec<usize> = match columns {
        Some(cols) => cols.iter().map(|c| find(c)).collect::<Result<_>>()?,
        None => (0..names.len()).filter(|&i| Some(i) != label_idx).collect(),
    };
    if value_idx.is_empty() {
        return Err(err("no numeric columns selected".into()));
    }
    let mut values = Vec::with_capacity(records.len() * value_idx.len());
    let mut raw_labels = Vec::new();
    let mut rows = 0;
    'rows: for (r, rec) in records.iter().enumerate() {
        let line = r + 1 + header as usize;
        let used = value_idx.iter().chain(label_idx.iter());
        for &c in used {
            let cell = rec.get(c).unwrap_or("");
            if MISSING.contains(&cell) {
                if skip_missing {
                    continue 'rows;
                }
                return Err(err(format!(
                    "line {line}, column `{}`: missing value `{cell}` (expected a number)",
                    names[c]
                )));
            }
        }
        for &c in &value_idx {
            let cell = rec.get(c).unwrap_or("");
            let v: f32 = cell.parse().map_err(|_| {
                err(format!(
                    "line {line}, column `{}`: `{cell}` is not a number",
                    names[c]
                ))
            })?;
            if !super::in_data_range(v as f64) {
                return Err(err(format!(
                    "line {line}, column `{}`: `{cell}` is out of range; expected a finite number \
                     of magnitude at most {:e}",
                    names[c],
                    super::MAX_MAGNITUDE
                )));
            }
            values.push(v);
        }
        if let Some(c) = label_idx {
            raw_labels.push(rec.get(c).unwrap_or("").to_string());
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(err("no complete data rows".into()));
    }
    let points = Array2::from_shape_vec((rows, value_idx.len()), values)
        .map_err(|e| err(format!("ragged rows: {e}")))?;
    let labels = label_idx.map(|_| number_labels(&raw_labels));
    Ok(Dataset { points, labels })
}

/// Class ids for label strings: the integers themselves when every label is a non-negative
/// integer, otherwise the rank of each distinct string in sorted order.
fn number_labels(raw: &[String]) -> Vec<u32> {
    if let Ok(ids) = raw
        .iter()
        .map(|s| s.parse::<u32>())
        .collect::<std::result::Result<Vec<_>, _>>()
    {
        return ids;
    }
    let mut distinct: Vec<&String> = raw.iter().collect();
    distinct.sort();
    distinct.dedup();
    raw.iter()
        .map(|s| distinct.binary_search(&s).expect("present") as u32)
        .collect()
}

/// Reads a `.npy` file holding a 1-D (n points of dimension 1) or 2-D [n, d] array of any float,
/// integer or unsigned dtype, as f32 points ([`parse_npy`]).
pub fn read_npy(path: &Path) -> Result<Array2<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::data(path, format!("cannot open: {e}")))?;
    parse_npy(&bytes, path)
}

/// The points of the `.npy` file `bytes` (`name` for messages): a 1-D or 2-D array of any float
/// (float16 to float64), integer or unsigned dtype. Values that are NaN, infinite or beyond
/// [`super::MAX_MAGNITUDE`] are an error, and so is an array with no rows or a header that
/// announces more elements than the file holds.
pub fn parse_npy(bytes: &[u8], name: &Path) -> Result<Array2<f32>> {
    check_npy_nesting(bytes, name)?;
    let mut reader = bytes;
    let header = ndarray_npy::npy::header::Header::from_reader(&mut reader)
        .map_err(|e| Error::data(name, format!("not a valid .npy array: {e}")))?;
    // Each element takes at least one byte: checked before anything is allocated for them.
    let elements = header
        .shape
        .iter()
        .try_fold(1usize, |n, &k| n.checked_mul(k));
    if elements.is_none_or(|n| n > reader.len()) {
        return Err(Error::data(
            name,
            format!(
                "not a valid .npy array: the header announces shape {:?} but {} bytes of data follow",
                header.shape,
                reader.len()
            ),
        ));
    }
    let points = read_any_npy(bytes, name)?;
    if let Some((r, c, v)) = super::first_out_of_range(points.view()) {
        return Err(Error::data(name, super::out_of_range_message(r, c, v)));
    }
    if points.nrows() == 0 {
        return Err(Error::data(name, "the array has no rows"));
    }
    Ok(points)
}

/// Refuses a `.npy` header whose brackets nest deeper than a plain array's does ({'shape': (…)}
/// is 2 deep). The header is a Python literal, and the parser ndarray-npy uses takes time
/// exponential in the nesting of some malformed literals (found by fuzzing: a 134-byte file took
/// 26 s); a valid header for the dtypes ouro reads never nests deeper than 2.
fn check_npy_nesting(bytes: &[u8], name: &Path) -> Result<()> {
    let Some(version) = bytes.strip_prefix(b"\x93NUMPY").and_then(|b| b.first()) else {
        return Ok(()); // not a .npy file at all: the header parser says so
    };
    let (start, len) = match (version, bytes.get(8..12)) {
        (1, Some(b)) => (10, u16::from_le_bytes([b[0], b[1]]) as usize),
        (_, Some(b)) => (12, u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
        (_, None) => return Ok(()),
    };
    let header = &bytes[start.min(bytes.len())..start.saturating_add(len).min(bytes.len())];
    // Brackets inside strings count too: the dtype strings ouro reads ('<f4', '|u1', …) hold
    // none, and skipping strings would have to follow Python's escapes exactly.
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &c in header {
        match c {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > 2 {
        return Err(Error::data(
            name,
            format!(
                "not a valid .npy array: its header nests brackets {deepest} deep (a plain \
                 array's nests 2)"
            ),
        ));
    }
    Ok(())
}

fn read_any_npy(bytes: &[u8], name: &Path) -> Result<Array2<f32>> {
    macro_rules! try_types {
        ($($t:ty),*) => {
            $(
                match read_as::<$t>(bytes, name)? {
                    Some(a) => return Ok(a.mapv(|v| v as f32)),
                    None => {}
                }
            )*
        };
    }
    try_types!(f32, f64, i64, i32, i16, i8, u64, u32, u16, u8);
    if let Some(a) = read_as::<F16>(bytes, name)? {
        return Ok(a.mapv(|v| v.0.to_f32()));
    }
    Err(Error::data(
        name,
        "unsupported dtype (expected a float, signed or unsigned integer array)",
    ))
}

/// numpy's float16 (`<f2`, `>f2`), which ndarray-npy does not read: IEEE binary16, widened
/// exactly to f32.
#[derive(Clone, Copy)]
struct F16(half::f16);

impl ReadableElement for F16 {
    fn read_to_end_exact_vec<R: std::io::Read>(
        mut reader: R,
        type_desc: &py_literal::Value,
        len: usize,
    ) -> std::result::Result<Vec<Self>, ReadDataError> {
        let from_bytes = match type_desc {
            py_literal::Value::String(s) if s == "<f2" => half::f16::from_le_bytes,
            py_literal::Value::String(s) if s == ">f2" => half::f16::from_be_bytes,
            other => return Err(ReadDataError::WrongDescriptor(other.clone())),
        };
        let mut bytes = vec![0u8; len.checked_mul(2).ok_or(ReadDataError::MissingData)?];
        reader.read_exact(&mut bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ReadDataError::MissingData,
            _ => ReadDataError::Io(e),
        })?;
        let extra = std::io::copy(&mut reader, &mut std::io::sink())?;
        if extra > 0 {
            return Err(ReadDataError::ExtraBytes(extra as usize));
        }
        Ok(bytes
            .chunks_exact(2)
            .map(|b| F16(from_bytes([b[0], b[1]])))
            .collect())
    }
}

/// `Ok(None)` when the file's dtype is not `T`.
fn read_as<T: ReadableElement>(bytes: &[u8], name: &Path) -> Result<Option<Array2<T>>> {
    let describe = |e: ReadNpyError| Error::data(name, format!("not a valid .npy array: {e}"));
    match Array2::<T>::read_npy(bytes) {
        Ok(a) => Ok(Some(a)),
        Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
        Err(ReadNpyError::WrongNdim(_, 1)) => match Array1::<T>::read_npy(bytes) {
            Ok(a) => {
                let n = a.len();
                Ok(Some(a.into_shape_with_order((n, 1)).expect("n×1")))
            }
            Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
            Err(e) => Err(describe(e)),
        },
        Err(ReadNpyError::WrongNdim(_, k)) => Err(Error::data(
            name,
            format!("the array has {k} dimensions; expected a 2-D [n, d] (or 1-D) array"),
        )),
        Err(e) => Err(describe(e)),
    }
}

/// Writes `points` as a little-endian f32 `.npy` file of shape [n, d].
pub fn write_npy(path: &Path, points: &Array2<f32>) -> Result<()> {
    let file = File::create(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    points
        .write_npy(BufWriter::new(file))
        .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))
}

/// The class labels in the `.npy` file `path`: `n` integers ≥ 0 (one per `what`, e.g. "row of
/// x.npy"), of any numeric dtype.
pub fn read_labels(path: &Path, n: usize, what: &str) -> Result<Vec<u32>> {
    let l = read_npy(path)?;
    if l.ncols() != 1 || l.nrows() != n {
        return Err(Error::data(
            path,
            format!(
                "expected {n} labels (one per {what}), found shape [{}, {}]",
                l.nrows(),
                l.ncols()
            ),
        ));
    }
    l.iter()
        .map(|&v| {
            if v >= 0.0 && v.fract() == 0.0 && v < 1e6 {
                Ok(v as u32)
            } else {
                Err(Error::data(
                    path,
                    format!("label {v}: expected integers from 0 (class indices)"),
                ))
            }
        })
        .collect()
}

/// Writes class labels as a little-endian int64 `.npy` file of shape [n] (what `ouro eval
/// --real-labels` and friends read).
pub fn write_labels_npy(path: &Path, labels: &[u32]) -> Result<()> {
    let file = File::create(path)
        .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
    ndarray::Array1::from_iter(labels.iter().map(|&l| l as i64))
        .write_npy(BufWriter::new(file))
        .map_err(|e| Error::Run(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn npy_round_trip_and_other_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let a = array![[1.0f32, 2.0], [3.0, 4.5]];
        write_npy(&p, &a).unwrap();
        assert_eq!(read_npy(&p).unwrap(), a);
        let q = dir.path().join("b.npy");
        array![1.0f64, 2.0, 3.0]
            .write_npy(File::create(&q).unwrap())
            .unwrap();
        assert_eq!(read_npy(&q).unwrap(), array![[1.0f32], [2.0], [3.0]]);
        let r = dir.path().join("c.npy");
        array![[1u8, 2], [3, 4]]
            .write_npy(File::create(&r).unwrap())
            .unwrap();
        assert_eq!(read_npy(&r).unwrap(), array![[1.0f32, 2.0], [3.0, 4.0]]);
    }

    /// A `.npy` file as numpy writes it (format 1.0), with the given descriptor and shape.
    fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    /// float16 files (numpy's `<f2` and `>f2`) read exactly: 1, −2, 0.5, 65 504 (the largest
    /// half) and 2⁻²⁴ (the smallest subnormal).
    #[test]
    fn float16_npy_reads_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let bits: [u16; 6] = [0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x0000];
        let want = array![[1.0f32, -2.0, 0.5], [65504.0, 2f32.powi(-24), 0.0]];
        for (descr, bytes) in [
            (
                "<f2",
                bits.iter()
                    .flat_map(|b| b.to_le_bytes())
                    .collect::<Vec<u8>>(),
            ),
            (">f2", bits.iter().flat_map(|b| b.to_be_bytes()).collect()),
        ] {
            let p = dir.path().join("h.npy");
            std::fs::write(&p, npy_bytes(descr, "(2, 3)", &bytes)).unwrap();
            assert_eq!(read_npy(&p).unwrap(), want, "{descr}");
            std::fs::write(&p, npy_bytes(descr, "(6,)", &bytes)).unwrap();
            let flat = want.clone().into_shape_with_order((6, 1)).unwrap();
            assert_eq!(read_npy(&p).unwrap(), flat, "{descr}, 1-D");
            // A short file is an error that names it.
            std::fs::write(&p, npy_bytes(descr, "(2, 4)", &bytes)).unwrap();
            let msg = read_npy(&p).unwrap_err().to_string();
            assert!(
                msg.contains("h.npy") && msg.contains("not a valid .npy"),
                "{msg}"
            );
        }
    }

    /// A header nested deeper than a plain array's is refused before the literal parser sees it
    /// (fuzzing found 134-byte headers that parsed for 26 s, one with the nesting behind an
    /// escaped quote).
    #[test]
    fn deeply_nested_npy_headers_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deep.npy");
        std::fs::write(&p, npy_bytes("<f4", "(((((((1,),),),),),),)", &[0; 4])).unwrap();
        let msg = read_npy(&p).unwrap_err().to_string();
        assert!(
            msg.contains("deep.npy") && msg.contains("nests brackets"),
            "{msg}"
        );
        std::fs::write(&p, npy_bytes("<f4", "(1, 1)", &[0; 4])).unwrap();
        assert!(read_npy(&p).is_ok());
        let mut escaped = npy_bytes("<f4", "(1,)", &[0; 4]);
        let at = escaped.windows(7).position(|w| w == b"'descr'").unwrap();
        escaped[at..at + 7].copy_from_slice(b"'d\\'(((");
        let msg = parse_npy(&escaped, &p).unwrap_err().to_string();
        assert!(msg.contains("nests brackets"), "{msg}");
    }

    #[test]
    fn bad_npy_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.npy");
        std::fs::write(&p, b"hello").unwrap();
        let msg = read_npy(&p).unwrap_err().to_string();
        assert!(
            msg.contains("junk.npy") && msg.contains("not a valid .npy"),
            "{msg}"
        );
        let q = dir.path().join("nan.npy");
        array![[1.0f32, f32::NAN]]
            .write_npy(File::create(&q).unwrap())
            .unwrap();
        let msg = read_npy(&q).unwrap_err().to_string();
        assert!(msg.contains("row 0, column 1"), "{msg}");
        let msg = read_npy(&dir.path().join("missing.npy"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cannot open"), "{msg}");
    }

    #[test]
    fn csv_errors_name_line_and_column() {
        let text = b"a,b\n1,2\n3,x\n";
        let msg = parse_csv(text, "t.csv", true, None, None, false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 3") && msg.contains("`b`") && msg.contains("`x`"),
            "{msg}"
        );
        let cols = ["c".to_string()];
        let msg = parse_csv(text, "t.csv", true, Some(&cols), None, false)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no column `c`"), "{msg}");
        let ok = parse_csv(
            b"a,b,y\n1,2,cat\n3,NA,dog\n5,6,ant\n",
            "t.csv",
            true,
            None,
            Some("y"),
            true,
        )
        .unwrap();
        assert_eq!(ok.points, array![[1.0f32, 2.0], [5.0, 6.0]]);
        assert_eq!(ok.labels.unwrap(), vec![1, 0]);
    }

    /// `label_column` and `skip_missing` as a `[target] kind = "csv"` section sets them: integer
    /// labels are kept as they are, string labels numbered in sorted order; a row with a missing
    /// value or a missing label is skipped with `skip_missing` and named without it; the label
    /// column is left out of the points, and without a header columns are named by index.
    #[test]
    fn csv_label_column_and_skip_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, "x,y,class\n1,2,3\n3,,0\n5,6,7\n7,8,NA\n9,10,0\n").unwrap();
        let target = |extra: &str| {
            let text = format!(
                "kind = \"csv\"\npath = \"{}\"\nlabel_column = \"class\"\n{extra}",
                path.display()
            );
            let cfg: crate::config::TargetConfig = toml::from_str(&text).unwrap();
            crate::data::Target::from_config(&cfg)
        };
        let t = target("skip_missing = true").unwrap();
        let data = t.dataset().expect("a finite data set");
        assert_eq!(data.points, array![[1.0f32, 2.0], [5.0, 6.0], [9.0, 10.0]]);
        assert_eq!(data.labels.as_deref(), Some(&[3u32, 7, 0][..]));
        assert_eq!(t.classes(), Some(8));
        let msg = target("")
            .err()
            .expect("a missing value is an error")
            .to_string();
        assert!(
            msg.contains("d.csv") && msg.contains("line 3") && msg.contains("`y`"),
            "{msg}"
        );
        // Without a header: columns by index; the label column by its index too.
        let no_header =
            parse_csv(b"1,2,b\n3,4,a\n", "n.csv", false, None, Some("2"), false).unwrap();
        assert_eq!(no_header.points, array![[1.0f32, 2.0], [3.0, 4.0]]);
        assert_eq!(no_header.labels.unwrap(), vec![1, 0]);
        let cols = ["1".to_string()];
        let one = parse_csv(b"1,2,b\n3,4,a\n", "n.csv", false, Some(&cols), None, false).unwrap();
        assert_eq!(one.points, array![[2.0f32], [4.0]]);
    }
}
