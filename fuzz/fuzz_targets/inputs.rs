//! What each fuzz target feeds to ouro, shared by the libFuzzer targets (`cargo fuzz run NAME`)
//! and by `tests/fuzz_corpus.rs`, which replays the committed corpus on stable. Every reader must
//! return `Ok` or an `Err` for any bytes: a panic, an abort or a hang is a bug.

#![allow(dead_code)] // each fuzz target binary uses one of these functions

use std::path::Path;

/// A fuzz target: what it does with one input.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/corpus/NAME/` and `cargo fuzz run NAME` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("npy", npy),
    ("csv", csv),
    ("idx", idx),
    ("safetensors", safetensors),
    ("study", study),
];

/// An experiment file, then `--set` overrides one per line after a line `--set`: parsed, and
/// when it parses, checked into an [`ouro::experiment::Experiment`] (everything `ouro run` does
/// before writing). Targets that read files (and MNIST, a 10 MB read per input) are left to the
/// file targets.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, sets) = match text.split_once("\n--set\n") {
        Some((t, s)) => (t, s.lines().map(str::to_string).collect()),
        None => (text, Vec::new()),
    };
    let Ok(cfg) = ouro::config::Config::parse(toml, &sets) else {
        return;
    };
    if !reads_files(&cfg) {
        let _ = ouro::experiment::Experiment::new(cfg);
    }
}

/// Whether checking `cfg` reads files (data files, MNIST, a features classifier).
fn reads_files(cfg: &ouro::config::Config) -> bool {
    use ouro::config::TargetConfig as T;
    matches!(
        cfg.target,
        T::Csv(_) | T::Npy(_) | T::Idx(_) | T::FashionMnist(_) | T::Mnist(_)
    ) || cfg.metrics.features.is_some()
}

/// A `.npy` file.
pub fn npy(data: &[u8]) {
    let _ = ouro::data::parse_npy(data, Path::new("fuzz.npy"));
}

/// A CSV file; the first byte picks `header` (bit 0), `skip_missing` (bit 1) and whether the
/// first column holds labels (bit 2).
pub fn csv(data: &[u8]) {
    let Some((&flags, text)) = data.split_first() else {
        return;
    };
    let header = flags & 1 != 0;
    let label = (flags & 4 != 0).then_some(if header { "label" } else { "0" });
    let _ = ouro::data::parse_csv(text, "fuzz.csv", header, None, label, flags & 2 != 0);
}

/// An IDX file (gzipped or not); a 3-D one is also paired with labels from its first dimension
/// and average-pooled to half its rows, as an image target with `side` does.
pub fn idx(data: &[u8]) {
    let name = Path::new("fuzz.idx");
    let Ok(images) = ouro::data::idx::parse_idx(data, name) else {
        return;
    };
    // A real labels file holds one byte per image: no more labels than the input has bytes.
    if images.dims.len() == 3 && images.dims[0] <= data.len() {
        let labels = ouro::data::idx::IdxArray {
            dims: vec![images.dims[0]],
            data: vec![0; images.dims[0]],
        };
        if let Ok((set, side)) = ouro::data::idx::image_dataset(&images, &labels, name, name) {
            let _ = ouro::data::idx::downsample(&set.points, side, side.0 / 2);
        }
    }
}

/// A study file (no `base`: there is no folder to read it from), expanded into its cells; the
/// first few cells that read no files are checked into experiments.
pub fn study(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(grid) = ouro::experiment::study::parse(text, Path::new("/nonexistent"), &[]) else {
        return;
    };
    for (_, cfg) in grid.cells.into_iter().take(4) {
        if !reads_files(&cfg) {
            let _ = ouro::experiment::Experiment::new(cfg);
        }
    }
}

/// A safetensors file, read as a saved model (`ouro sample`; loading runs no command) and as a
/// feature classifier.
pub fn safetensors(data: &[u8]) {
    let name = Path::new("fuzz.safetensors");
    let _ = ouro::models::load_bytes(data, name);
    let _ = ouro::classifier::Classifier::parse(data, name);
}
