//! Small pictures for the report, encoded as PNG in memory: point clouds over the real points,
//! and grids of images. A report holds a handful of them, so each stays at a few tens of KB.

use ndarray::ArrayView2;

/// An RGB picture, row-major.
pub struct Raster {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Raster {
    /// A white picture.
    pub fn new(width: usize, height: usize) -> Raster {
        Raster {
            width,
            height,
            rgb: vec![255; width * height * 3],
        }
    }

    /// Blends `color` over pixel (x, y) with weight `alpha` ∈ [0, 1] (outside: nothing).
    fn blend(&mut self, x: i64, y: i64, color: [u8; 3], alpha: f32) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        for (c, v) in color.iter().enumerate() {
            let old = self.rgb[i + c] as f32;
            self.rgb[i + c] = (old + alpha * (*v as f32 - old)).round() as u8;
        }
    }

    /// A filled disc of `radius` pixels at (x, y).
    fn dot(&mut self, x: f64, y: f64, radius: f64, color: [u8; 3], alpha: f32) {
        let r = radius.ceil() as i64;
        let (cx, cy) = (x.floor() as i64, y.floor() as i64);
        for dy in -r..=r {
            for dx in -r..=r {
                let (px, py) = (cx + dx, cy + dy);
                let d2 = (px as f64 + 0.5 - x).powi(2) + (py as f64 + 0.5 - y).powi(2);
                if d2 <= radius * radius {
                    self.blend(px, py, color, alpha);
                }
            }
        }
    }

    /// The picture as PNG bytes (greyscale when every pixel is grey).
    pub fn png(&self) -> Vec<u8> {
        let grey = self.rgb.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]);
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Best);
            let data: Vec<u8> = if grey {
                enc.set_color(png::ColorType::Grayscale);
                self.rgb.chunks(3).map(|p| p[0]).collect()
            } else {
                enc.set_color(png::ColorType::Rgb);
                self.rgb.clone()
            };
            let mut w = enc.write_header().expect("PNG header into memory");
            w.write_image_data(&data).expect("PNG data into memory");
        }
        out
    }
}

/// The square view of a scatter: the box [x0, x1] × [y0, y1] in data units.
#[derive(Clone, Copy, Debug)]
pub struct View {
    x: (f64, f64),
    y: (f64, f64),
}

impl View {
    /// The box around the first two coordinates of `points` between their 0.5% and 99.5%
    /// quantiles, widened by 15% on each side and made square (equal units on both axes).
    pub fn around(points: ArrayView2<f32>) -> View {
        let range = |c: usize| {
            let mut v: Vec<f64> = points
                .column(c)
                .iter()
                .map(|&x| x as f64)
                .filter(|x| x.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            if v.is_empty() {
                return (-1.0, 1.0);
            }
            let q = |p: f64| super::quantile(&v, p);
            (q(0.005), q(0.995))
        };
        let ((x0, x1), (y0, y1)) = (range(0), range(1.min(points.ncols() - 1)));
        let half = ((x1 - x0).max(y1 - y0) / 2.0 * 1.15).max(1e-9);
        let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        View {
            x: (cx - half, cx + half),
            y: (cy - half, cy + half),
        }
    }
}

/// A `size × size` scatter of the first two coordinates of `points` (blue, up to 2 000) over
/// those of `real` (grey) in `view`.
pub fn scatter(
    real: Option<ArrayView2<f32>>,
    points: ArrayView2<f32>,
    view: View,
    size: usize,
) -> Raster {
    let mut r = Raster::new(size, size);
    let s = size as f64;
    let to_px = |p: &[f32]| {
        let x = (p[0] as f64 - view.x.0) / (view.x.1 - view.x.0) * s;
        let y = (view.y.1 - p[1.min(p.len() - 1)] as f64) / (view.y.1 - view.y.0) * s;
        (x, y)
    };
    let mut draw = |set: ArrayView2<f32>, color: [u8; 3], alpha: f32| {
        for row in set.rows().into_iter().take(2000) {
            let p = row.to_vec();
            let (x, y) = to_px(&p);
            if x.is_finite() && y.is_finite() {
                r.dot(x, y, 1.3, color, alpha);
            }
        }
    };
    if let Some(real) = real {
        draw(real, [150, 150, 150], 0.5);
    }
    draw(points, [31, 119, 180], 0.55);
    // A thin frame.
    for i in 0..size as i64 {
        for (x, y) in [(i, 0), (i, size as i64 - 1), (0, i), (size as i64 - 1, i)] {
            r.blend(x, y, [200, 200, 200], 1.0);
        }
    }
    r
}

/// A grid of images: cell (r, c) shows row `cells[r][c]` of `images` (`side.0 × side.1`,
/// row-major), grey levels [lo, hi] → black..white, each pixel `scale × scale`, 1-pixel gaps.
pub fn image_grid(
    images: ArrayView2<f32>,
    side: (usize, usize),
    cells: &[Vec<Option<usize>>],
    range: (f32, f32),
    scale: usize,
) -> Raster {
    let (ih, iw) = side;
    let rows = cells.len().max(1);
    let cols = cells.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
    let (cw, ch) = (iw * scale + 1, ih * scale + 1);
    let mut r = Raster::new(cols * cw + 1, rows * ch + 1);
    let (lo, hi) = range;
    let span = if hi > lo { hi - lo } else { 1.0 };
    for (ri, row) in cells.iter().enumerate() {
        for (ci, cell) in row.iter().enumerate() {
            let Some(i) = *cell else { continue };
            let img = images.row(i);
            for y in 0..ih * scale {
                for x in 0..iw * scale {
                    let v = ((img[(y / scale) * iw + x / scale] - lo) / span).clamp(0.0, 1.0);
                    let g = (v * 255.0).round() as u8;
                    let at = ((1 + ri * ch + y) * r.width + 1 + ci * cw + x) * 3;
                    r.rgb[at..at + 3].copy_from_slice(&[g, g, g]);
                }
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_encode_as_png_that_decodes_to_their_size() {
        let pts = ndarray::array![[0.0f32, 0.0], [1.0, 1.0], [-1.0, 0.5]];
        let view = View::around(pts.view());
        let bytes = scatter(Some(pts.view()), pts.view(), view, 64).png();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = dec.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (64, 64));
        assert_eq!(reader.info().color_type, png::ColorType::Rgb);
        let img = ndarray::array![[-1.0f32, 0.0, 0.5, 1.0]];
        let grid = image_grid(img.view(), (2, 2), &[vec![Some(0), None]], (-1.0, 1.0), 2);
        let bytes = grid.png();
        let reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        assert_eq!((reader.info().width, reader.info().height), (11, 6));
        assert_eq!(reader.info().color_type, png::ColorType::Grayscale);
    }
}
