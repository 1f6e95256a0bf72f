//! The real data sets compiled into ouro (their files and attributions are under `data/`).

use super::Dataset;
use super::files::parse_csv;
use super::idx::{IdxArray, image_dataset, parse_idx};
use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use std::io::Read;

const DIGITS_GZ: &[u8] = include_bytes!("../../data/digits/digits.csv.gz");
const FAITHFUL: &[u8] = include_bytes!("../../data/tabular/faithful.csv");
const PENGUINS: &[u8] = include_bytes!("../../data/tabular/penguins.csv");

/// The shipped MNIST files: (name, gzipped bytes, SHA-256 of the decompressed file).
const MNIST: [(&str, &[u8], &str); 4] = [
    (
        "train-images-idx3-ubyte",
        include_bytes!("../../data/mnist/train-images-idx3-ubyte.gz"),
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        include_bytes!("../../data/mnist/train-labels-idx1-ubyte.gz"),
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        include_bytes!("../../data/mnist/t10k-images-idx3-ubyte.gz"),
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        include_bytes!("../../data/mnist/t10k-labels-idx1-ubyte.gz"),
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// One shipped MNIST file, decompressed and checked against its SHA-256.
fn mnist_file(stem: &str) -> Result<IdxArray> {
    let (_, gz, sha) = MNIST
        .iter()
        .find(|(n, _, _)| *n == stem)
        .expect("a shipped MNIST file");
    let name = std::path::PathBuf::from(format!("data/mnist/{stem}.gz"));
    let mut raw = Vec::new();
    GzDecoder::new(*gz)
        .read_to_end(&mut raw)
        .map_err(|e| Error::data(&name, e.to_string()))?;
    let got: String = Sha256::digest(&raw)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != *sha {
        return Err(Error::data(
            &name,
            format!("SHA-256 {got} does not match the canonical MNIST file's {sha}"),
        ));
    }
    parse_idx(&raw, &name)
}

/// MNIST (Y. LeCun, C. Cortes; CC BY-SA 3.0): the "train" split (60 000 images) or the "test"
/// split (10 000), 28×28 pixels 0..255 as 784-D points with labels 0..9, and the image side.
/// The files are checked against the canonical SHA-256 hashes.
pub fn mnist(test: bool) -> Result<(Dataset, (usize, usize))> {
    let prefix = if test { "t10k" } else { "train" };
    let images = mnist_file(&format!("{prefix}-images-idx3-ubyte"))?;
    let labels = mnist_file(&format!("{prefix}-labels-idx1-ubyte"))?;
    image_dataset(
        &images,
        &labels,
        format!("data/mnist/{prefix}-images-idx3-ubyte.gz").as_ref(),
        format!("data/mnist/{prefix}-labels-idx1-ubyte.gz").as_ref(),
    )
}

/// UCI optical handwritten digits (scikit-learn's `load_digits`): 1 797 images of 8×8 grey
/// levels 0..16 as 64-D points, with labels 0..9.
pub fn digits() -> Result<Dataset> {
    let mut text = Vec::new();
    GzDecoder::new(DIGITS_GZ)
        .read_to_end(&mut text)
        .map_err(|e| Error::data("data/digits/digits.csv.gz", e.to_string()))?;
    let cols: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    parse_csv(
        &text,
        "data/digits/digits.csv.gz",
        false,
        Some(&cols),
        Some("64"),
        false,
    )
}

/// Old Faithful geyser eruptions: (eruption length in minutes, waiting time in minutes), 272 points.
pub fn faithful() -> Result<Dataset> {
    let cols = ["eruptions".to_string(), "waiting".to_string()];
    parse_csv(
        FAITHFUL,
        "data/tabular/faithful.csv",
        true,
        Some(&cols),
        None,
        false,
    )
}

/// Palmer penguins: (bill length mm, bill depth mm) of the 342 complete rows, labelled by species
/// (0 Adelie, 1 Chinstrap, 2 Gentoo).
pub fn penguins() -> Result<Dataset> {
    let cols = ["bill_length_mm".to_string(), "bill_depth_mm".to_string()];
    parse_csv(
        PENGUINS,
        "data/tabular/penguins.csv",
        true,
        Some(&cols),
        Some("species"),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sets_have_their_documented_shapes() {
        let d = digits().unwrap();
        assert_eq!(d.points.dim(), (1797, 64));
        let labels = d.labels.unwrap();
        assert_eq!(labels.iter().max(), Some(&9));
        assert!(d.points.iter().all(|&v| (0.0..=16.0).contains(&v)));
        assert_eq!(faithful().unwrap().points.dim(), (272, 2));
        let p = penguins().unwrap();
        assert_eq!(p.points.dim(), (342, 2));
        assert_eq!(p.labels.unwrap().iter().max(), Some(&2));
    }

    /// The shipped MNIST files pass their hash check and have the canonical shapes and class
    /// counts (the test split's digit counts are those published with MNIST).
    #[test]
    fn shipped_mnist_matches_its_hashes_and_counts() {
        let (test, side) = mnist(true).unwrap();
        assert_eq!((test.points.dim(), side), ((10_000, 784), (28, 28)));
        let mut counts = [0usize; 10];
        for &l in test.labels.as_ref().unwrap() {
            counts[l as usize] += 1;
        }
        assert_eq!(
            counts,
            [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        let (train, _) = mnist(false).unwrap();
        assert_eq!(train.points.dim(), (60_000, 784));
        assert!(train.points.iter().all(|&v| (0.0..=255.0).contains(&v)));
    }
}
