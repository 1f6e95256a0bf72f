//! The real data sets compiled into ouro (their files and attributions are under `data/`).

use super::Dataset;
use super::files::parse_csv;
use crate::error::{Error, Result};
use flate2::read::GzDecoder;
use std::io::Read;

const DIGITS_GZ: &[u8] = include_bytes!("../../data/digits/digits.csv.gz");
const FAITHFUL: &[u8] = include_bytes!("../../data/tabular/faithful.csv");
const PENGUINS: &[u8] = include_bytes!("../../data/tabular/penguins.csv");

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
}
