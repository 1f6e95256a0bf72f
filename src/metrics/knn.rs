//! Nearest-neighbour queries for the metrics: k nearest neighbours and "inside the k-NN ball"
//! counts between two point sets, exact in f64 but computed at f32 GEMM speed.
//!
//! Squared distances are computed tile by tile as ‖q‖² + ‖p‖² − 2q·p with the project's f32
//! GEMM ([`crate::nn::gemm`]), on coordinates centred on the point set's mean (which keeps the
//! norms, and so the cancellation, small). Every f32 distance comes with a rigorous error bound
//! B = u(d + 12)(‖q′‖² + ‖p′‖²), u = 2⁻²⁴ (the dot product's γ_d bound, the rounding of the norms
//! and sums, and the rounding of the centred coordinates). A decision that the bound cannot
//! settle (a distance within B of a radius, or a neighbour list whose cut-off is within B of a
//! point outside it) is redone exactly, in f64 from the original coordinates. Results are
//! therefore those of an exact f64 computation, whatever the thread count.
//!
//! Memory stays at one `QUERY_BLOCK × POINT_BLOCK` tile of f32 per thread (480 KiB): a 10 000 ×
//! 10 000 comparison never builds the 10⁸-entry matrix.

use crate::nn::gemm::{Epilogue, PackedB, matmul};
use crate::nn::simd_dispatch;
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Queries per parallel task (a multiple of the GEMM's 6-row micro-kernel).
const QUERY_BLOCK: usize = 120;
/// Points per distance tile.
const POINT_BLOCK: usize = 1024;
/// Extra f32 candidates kept beyond k, so that exact refinement rarely needs a full rescan.
const EXTRA: usize = 4;
/// Most points in a leaf of a [`Tree`] over the searched set.
const LEAF: usize = 256;
/// Nodes of a [`Tree`] with more rows than this split their halves in parallel.
const PARALLEL_SPLIT: usize = 8192;

/// A point set split into compact leaves: the median split along the coordinate of widest
/// spread, recursively, down to leaves of at most `leaf` points. Each leaf has its centre (the
/// mean) and radius (the largest distance of its points from it), in the prepared coordinates
/// and in f64, and its points packed as a GEMM operand.
struct Tree {
    /// The set's row index of each position, leaf by leaf.
    order: Vec<u32>,
    leaves: Vec<Leaf>,
}

/// A leaf of a [`Tree`]: positions `start..start + len` of its order.
struct Leaf {
    start: usize,
    len: usize,
    centre: Vec<f64>,
    radius: f64,
    /// The smallest and largest value of each coordinate over its points.
    lo: Vec<f32>,
    hi: Vec<f32>,
    /// ‖x′‖² of its points, in order.
    norms: Vec<f32>,
    packed: PackedB,
    /// The largest error-bound share of its points.
    bound: f32,
}

simd_dispatch! {
    /// counts ← the number of j with row[j] + bound < inner[j] (sure hits) and with
    /// row[j] − bound < outer[j] (hits under the widest reading), in one pass and in sixteen u32
    /// lanes (a `filter().count()` counted in 64-bit lanes, two at a time on the baseline target).
    fn count_hits(row: &[f32], bound: f32, inner: &[f32], outer: &[f32], counts: &mut [u32; 2]) {
        let n = row.len().min(inner.len()).min(outer.len());
        let (row, inner, outer) = (&row[..n], &inner[..n], &outer[..n]);
        let (mut sure, mut maybe) = ([0u32; 8], [0u32; 8]);
        let full = n / 8 * 8;
        for at in (0..full).step_by(8) {
            let (r, i, o) = (&row[at..at + 8], &inner[at..at + 8], &outer[at..at + 8]);
            for k in 0..8 {
                sure[k] += (r[k] + bound < i[k]) as u32;
                maybe[k] += (r[k] - bound < o[k]) as u32;
            }
        }
        let mut tail = [0u32; 2];
        for j in full..n {
            tail[0] += (row[j] + bound < inner[j]) as u32;
            tail[1] += (row[j] - bound < outer[j]) as u32;
        }
        counts[0] = sure.iter().sum::<u32>() + tail[0];
        counts[1] = maybe.iter().sum::<u32>() + tail[1];
    }
}

simd_dispatch! {
    /// cols[j] += 1 where row[j] + bounds[j] < inner (a sure hit), and `undecided` ← whether some
    /// j is not sure but has row[j] − bounds[j] < outer.
    fn add_sure_hits(
        row: &[f32],
        bounds: &[f32],
        radii: (f32, f32),
        cols: &mut [u32],
        undecided: &mut bool
    ) {
        let (inner, outer) = radii;
        let mut open = false;
        for ((&v, &b), c) in row.iter().zip(bounds).zip(cols.iter_mut()) {
            let sure = v + b < inner;
            *c += sure as u32;
            open |= !sure & (v - b < outer);
        }
        *undecided = open;
    }
}

/// masks[g] bit j ← row[8g + j] < t (false for NaN), for each group of eight values (the last
/// group padded with clear bits; `masks` holds at least ⌈len/8⌉ bytes); returns whether any bit
/// is set. One pass that both rejects a row whose values all fail and finds the few that pass.
fn below(row: &[f32], t: f32, masks: &mut [u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::nn::isa::isa() >= crate::nn::isa::Isa::Avx2 {
        // SAFETY: the CPU supports AVX2 (isa() only picks what the CPU runs).
        return unsafe { below_avx2(row, t, masks) };
    }
    below_portable(row, t, masks)
}

/// [`below`] on any CPU.
fn below_portable(row: &[f32], t: f32, masks: &mut [u8]) -> bool {
    let mut any = 0u8;
    for (m, group) in masks.iter_mut().zip(row.chunks(8)) {
        *m = group
            .iter()
            .enumerate()
            .fold(0u8, |b, (j, &v)| b | (((v < t) as u8) << j));
        any |= *m;
    }
    any != 0
}

/// [`below`] with AVX2: a packed compare and a move-mask per eight values (LLVM does not find
/// the move-mask in the portable loop).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn below_avx2(row: &[f32], t: f32, masks: &mut [u8]) -> bool {
    use std::arch::x86_64::*;
    let full = row.len() / 8;
    assert!(
        masks.len() >= row.len().div_ceil(8),
        "mask buffer too short"
    );
    let tv = _mm256_set1_ps(t);
    let mut any = 0i32;
    for (mask, group) in masks.iter_mut().zip(row.chunks_exact(8)) {
        // SAFETY: `group` holds eight f32, so the unaligned load reads inside it.
        let v = unsafe { _mm256_loadu_ps(group.as_ptr()) };
        let m = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(v, tv));
        *mask = m as u8;
        any |= m;
    }
    let tail = below_portable(&row[8 * full..], t, &mut masks[full..]);
    any != 0 || tail
}

simd_dispatch! {
    /// For queries stored by coordinate (`xt[c·rows + i]` is coordinate c of query i), whether
    /// any query's squared distance to the box [lo, hi] can be at most its `limit`: `to_box`
    /// receives Σ_c max(lo_c − x_c, x_c − hi_c, 0)² per query in f32, and the comparison scales
    /// it down by `shrink` (1 − (d + 4)·2⁻²², more than its rounding), so the answer is never
    /// "no" for a query that is within its limit.
    fn box_reachable(
        xt: &[f32],
        lo: &[f32],
        hi: &[f32],
        limit: &[f32],
        shrink: f32,
        to_box: &mut [f32],
        reachable: &mut bool
    ) {
        let rows = limit.len();
        to_box[..rows].fill(0.0);
        for ((&l, &h), x) in lo.iter().zip(hi).zip(xt.chunks_exact(rows)) {
            for (acc, &v) in to_box[..rows].iter_mut().zip(x) {
                let below = l - v;
                let above = v - h;
                let g = if below > above { below } else { above };
                let g = if g > 0.0 { g } else { 0.0 };
                *acc += g * g;
            }
        }
        let mut any = false;
        for (&t, &m) in to_box[..rows].iter().zip(limit) {
            any |= t * shrink <= m;
        }
        *reachable = any;
    }
}

/// A lower bound on the squared distance between any point of the box [lo_a, hi_a] and any of
/// [lo_b, hi_b] (per coordinate, the gap between the intervals), rounded down.
fn box_gap(lo_a: &[f32], hi_a: &[f32], lo_b: &[f32], hi_b: &[f32]) -> f64 {
    let sum: f64 = lo_a
        .iter()
        .zip(hi_a)
        .zip(lo_b.iter().zip(hi_b))
        .map(|((&la, &ha), (&lb, &hb))| {
            let g = (lb as f64 - ha as f64).max(la as f64 - hb as f64).max(0.0);
            g * g
        })
        .sum();
    sum * (1.0 - 1e-9)
}

/// Splits `order` (positions `base..` of the whole order) at the median of the coordinate of
/// widest spread, recursively, down to runs of at most `leaf` rows, and returns the runs in
/// order. Halves of more than [`PARALLEL_SPLIT`] rows are split in parallel; the runs do not
/// depend on the thread count.
fn split(
    order: &mut [u32],
    base: usize,
    coords: &[f32],
    d: usize,
    leaf: usize,
) -> Vec<(usize, usize)> {
    if order.len() <= leaf || d == 0 {
        return vec![(base, base + order.len())];
    }
    let x = |i: u32, c: usize| coords[i as usize * d + c];
    // The spread of each coordinate over at most 256 evenly spaced points of the node (the
    // split only steers how well leaves prune, never what a search returns).
    let step = order.len().div_ceil(256);
    let widest = (0..d)
        .map(|c| {
            let (lo, hi) = order
                .iter()
                .step_by(step)
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &i| {
                    (lo.min(x(i, c)), hi.max(x(i, c)))
                });
            (c, hi - lo)
        })
        .fold((0, f32::NEG_INFINITY), |best, (c, w)| {
            if w > best.1 { (c, w) } else { best }
        })
        .0;
    // Keys in one contiguous array, ordered as (value by total order, row index): ties (and
    // NaN) fall by row index, so the split is the same on every run.
    let mut keys: Vec<u64> = order
        .iter()
        .map(|&i| {
            let b = x(i, widest).to_bits() as i32;
            let ordered = (b ^ (((b >> 31) as u32) >> 1) as i32) as u32 ^ 0x8000_0000;
            (ordered as u64) << 32 | i as u64
        })
        .collect();
    let mid = order.len() / 2;
    keys.select_nth_unstable(mid);
    for (o, k) in order.iter_mut().zip(&keys) {
        *o = *k as u32;
    }
    let (left, right) = order.split_at_mut(mid);
    let (mut a, b) = if left.len() + right.len() > PARALLEL_SPLIT {
        rayon::join(
            || split(left, base, coords, d, leaf),
            || split(right, base + mid, coords, d, leaf),
        )
    } else {
        (
            split(left, base, coords, d, leaf),
            split(right, base + mid, coords, d, leaf),
        )
    };
    a.extend(b);
    a
}

impl Tree {
    fn new(set: &Prepared, leaf: usize) -> Tree {
        let d = set.raw.ncols();
        let mut order: Vec<u32> = (0..set.len() as u32).collect();
        let done = split(&mut order, 0, &set.coords, d, leaf.max(1));
        let leaves = done
            .into_par_iter()
            .map(|(a, b)| {
                let rows = &order[a..b];
                let mut coords = Vec::with_capacity(rows.len() * d);
                for &i in rows {
                    coords.extend_from_slice(&set.coords[i as usize * d..(i as usize + 1) * d]);
                }
                let mut centre = vec![0.0f64; d];
                for row in coords.chunks_exact(d.max(1)) {
                    for (c, &v) in centre.iter_mut().zip(row) {
                        *c += v as f64;
                    }
                }
                centre.iter_mut().for_each(|v| *v /= rows.len() as f64);
                let radius = coords
                    .chunks_exact(d.max(1))
                    .map(|row| {
                        row.iter()
                            .zip(&centre)
                            .map(|(&v, &c)| (v as f64 - c).powi(2))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .fold(0.0, f64::max);
                let (mut lo, mut hi) = (vec![f32::INFINITY; d], vec![f32::NEG_INFINITY; d]);
                for row in coords.chunks_exact(d.max(1)) {
                    for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                        *l = l.min(v);
                        *h = h.max(v);
                    }
                }
                let mut packed = PackedB::new();
                packed.pack(&coords, d, rows.len(), true);
                Leaf {
                    start: a,
                    len: b - a,
                    centre,
                    // Rounding of the sums above, with room to spare.
                    radius: radius * (1.0 + 1e-9) + 1e-30,
                    lo,
                    hi,
                    norms: rows.iter().map(|&i| set.norms[i as usize]).collect(),
                    packed,
                    bound: rows
                        .iter()
                        .map(|&i| set.bound[i as usize])
                        .fold(0.0, f32::max),
                }
            })
            .collect();
        Tree { order, leaves }
    }
}

/// A point set ready for distance queries against a common centre.
pub struct Prepared<'a> {
    /// The original coordinates (for exact refinement).
    raw: ArrayView2<'a, f32>,
    /// Centred coordinates, row-major (n × d).
    coords: Vec<f32>,
    /// ‖x′‖² of the centred rows.
    norms: Vec<f32>,
    /// u(d + 12)‖x′‖²: this row's share of the error bound.
    bound: Vec<f32>,
    /// The rows packed as GEMM B operands, one per block of `POINT_BLOCK` points.
    blocks: Vec<PackedB>,
    /// The centre the coordinates are taken from.
    centre: Vec<f64>,
    /// The set split into compact leaves for pruned neighbour searches (built on first use),
    /// with leaves of at most [`LEAF`] points, and of at most [`QUERY_BLOCK`] for query groups.
    trees: [std::sync::OnceLock<Tree>; 2],
}

impl<'a> Prepared<'a> {
    /// Centres `x` on `centre` and packs it.
    pub fn new(x: ArrayView2<'a, f32>, centre: &[f64]) -> Self {
        let (n, d) = x.dim();
        assert_eq!(centre.len(), d, "centre has the wrong dimension");
        let mut coords = vec![0.0f32; n * d];
        let mut norms = vec![0.0f32; n];
        let mut bound = vec![f32::MIN_POSITIVE; n];
        let scale = 2f64.powi(-24) * (d as f64 + 12.0) * 1.01;
        // Rows in parallel chunks (each row's values depend on that row alone).
        const CHUNK: usize = 2048;
        coords
            .par_chunks_mut(CHUNK * d.max(1))
            .zip(norms.par_chunks_mut(CHUNK))
            .zip(bound.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(k, ((coords, norms), bound))| {
                for (r, (norm, bound)) in norms.iter_mut().zip(bound.iter_mut()).enumerate() {
                    let dst = &mut coords[r * d..(r + 1) * d];
                    for ((o, &v), &c) in dst.iter_mut().zip(x.row(k * CHUNK + r)).zip(centre) {
                        *o = (v as f64 - c) as f32;
                    }
                    let nn: f64 = dst.iter().map(|&v| v as f64 * v as f64).sum();
                    *norm = nn as f32;
                    *bound = (scale * nn) as f32 + f32::MIN_POSITIVE;
                }
            });
        let blocks = coords
            .par_chunks(POINT_BLOCK * d.max(1))
            .map(|chunk| {
                let mut p = PackedB::new();
                p.pack(chunk, d, chunk.len() / d.max(1), true);
                p
            })
            .collect();
        Prepared {
            raw: x,
            coords,
            norms,
            bound,
            blocks,
            centre: centre.to_vec(),
            trees: Default::default(),
        }
    }

    /// The set's tree with leaves of at most [`LEAF`] points (`for_queries`: [`QUERY_BLOCK`]).
    fn tree(&self, for_queries: bool) -> &Tree {
        let (slot, leaf) = if for_queries {
            (&self.trees[1], QUERY_BLOCK)
        } else {
            (&self.trees[0], LEAF)
        };
        slot.get_or_init(|| Tree::new(self, leaf))
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.norms.len()
    }

    /// The centre the set was prepared with.
    pub fn centre(&self) -> &[f64] {
        &self.centre
    }

    /// The original coordinates of rows `rows`, in that order.
    pub fn raw_rows(&self, rows: &[usize]) -> ndarray::Array2<f32> {
        self.raw.select(ndarray::Axis(0), rows)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.norms.is_empty()
    }

    /// The exact squared distance (f64) between row `i` of this set and row `j` of `other`.
    pub fn exact_sq(&self, i: usize, other: &Prepared, j: usize) -> f64 {
        self.raw
            .row(i)
            .iter()
            .zip(other.raw.row(j))
            .map(|(&a, &b)| {
                let t = a as f64 - b as f64;
                t * t
            })
            .sum()
    }

    /// Row i's share u(d + 12)‖x′ᵢ‖² of the squared-distance error bound: a tile's ‖q′ᵢ − p′ⱼ‖²
    /// is within `q.bound(i) + p.bound(j)` of exact.
    pub fn bound(&self, i: usize) -> f32 {
        self.bound[i]
    }

    /// The largest per-row bound term.
    pub fn max_bound(&self) -> f32 {
        self.bound.iter().copied().fold(0.0, f32::max)
    }
}

/// The mean of the rows of `x` in f64 (the centre to prepare sets with).
pub fn centre_of(x: ArrayView2<f32>) -> Vec<f64> {
    let n = x.nrows().max(1) as f64;
    let mut c = vec![0.0f64; x.ncols()];
    for row in x.rows() {
        for (c, &v) in c.iter_mut().zip(row) {
            *c += v as f64;
        }
    }
    c.iter_mut().for_each(|v| *v /= n);
    c
}

/// What a tile holds: f32 squared distances, or dot products of the prepared coordinates.
#[derive(Clone, Copy, PartialEq)]
enum Tile {
    SqDist,
    Dot,
}

/// Runs `visit(row state, task state, query, first point, tile row)` over every query × point
/// tile and returns each query's final row state, in query order, with the task states (one
/// per block of `QUERY_BLOCK` queries, in order; for sums over queries that must not depend on
/// the thread count). Tiles of one query are visited in point order. With `triangle` (q and p
/// the same set) only tiles holding some pair j > i are computed.
fn scan<S, T, I, J, V>(
    q: &Prepared,
    p: &Prepared,
    tile_kind: Tile,
    triangle: bool,
    init: I,
    init_task: J,
    visit: V,
) -> (Vec<S>, Vec<T>)
where
    S: Send,
    T: Send,
    I: Fn() -> S + Sync,
    J: Fn() -> T + Sync,
    V: Fn(&mut S, &mut T, usize, usize, &[f32]) + Sync,
{
    let d = q.raw.ncols();
    let blocks: Vec<(Vec<S>, T)> = (0..q.len().div_ceil(QUERY_BLOCK))
        .into_par_iter()
        .map(|b| {
            let r0 = b * QUERY_BLOCK;
            let rows = QUERY_BLOCK.min(q.len() - r0);
            let mut states: Vec<S> = (0..rows).map(|_| init()).collect();
            let mut task = init_task();
            let mut tile = vec![0.0f32; rows * POINT_BLOCK];
            for (pb, packed) in p.blocks.iter().enumerate() {
                let j0 = pb * POINT_BLOCK;
                let cols = packed.n();
                if triangle && j0 + cols <= r0 + 1 {
                    continue;
                }
                let tile = &mut tile[..rows * cols];
                let epilogue = match tile_kind {
                    Tile::SqDist => Epilogue::SqDist {
                        a_norms: &q.norms[r0..r0 + rows],
                        b_norms: &p.norms[j0..j0 + cols],
                    },
                    Tile::Dot => Epilogue::None,
                };
                matmul(
                    rows,
                    d,
                    &q.coords[r0 * d..(r0 + rows) * d],
                    false,
                    packed,
                    tile,
                    epilogue,
                );
                for (r, (state, row)) in states.iter_mut().zip(tile.chunks_exact(cols)).enumerate()
                {
                    visit(state, &mut task, r0 + r, j0, row);
                }
            }
            (states, task)
        })
        .collect();
    let mut rows = Vec::with_capacity(q.len());
    let mut tasks = Vec::with_capacity(blocks.len());
    for (s, t) in blocks {
        rows.extend(s);
        tasks.push(t);
    }
    (rows, tasks)
}

/// The f32 candidates of one query's nearest-neighbour search: the `keep` smallest f32
/// distances seen so far, sorted, with their point indices.
struct Candidates {
    keep: usize,
    list: Vec<(f32, u32)>,
}

impl Candidates {
    fn new(k: usize) -> Self {
        let keep = k + EXTRA;
        Candidates {
            keep,
            list: Vec::with_capacity(keep + 1),
        }
    }

    /// The f32 distance a new candidate must beat: the kept last one's, or ∞ until the list is
    /// full.
    #[inline]
    fn threshold(&self) -> f32 {
        if self.list.len() < self.keep {
            f32::INFINITY
        } else {
            self.list[self.keep - 1].0
        }
    }

    /// Offers the distances `row` of points (positions) j0, j0 + 1, …
    #[inline]
    fn offer(&mut self, j0: usize, row: &[f32]) {
        // Most rows hold no new candidate once the list is full: one pass of packed compares
        // against the threshold marks the few values that pass, and only those are inserted
        // (each checked again against the threshold as it falls).
        const CHUNK: usize = 1024;
        let mut masks = [0u8; CHUNK / 8];
        for (c, chunk) in row.chunks(CHUNK).enumerate() {
            if !below(chunk, self.threshold(), &mut masks) {
                continue;
            }
            for (g, &m) in masks[..chunk.len().div_ceil(8)].iter().enumerate() {
                let mut m = m;
                while m != 0 {
                    let j = 8 * g + m.trailing_zeros() as usize;
                    m &= m - 1;
                    let v = chunk[j];
                    if self.list.len() < self.keep || v < self.list[self.keep - 1].0 {
                        let at = self.list.partition_point(|&(w, _)| w <= v);
                        self.list.insert(at, (v, (j0 + c * CHUNK + j) as u32));
                        self.list.truncate(self.keep);
                    }
                }
            }
        }
    }

    /// The candidates of query `i` with their exact distances, nearest first (ties by index),
    /// and a lower bound on the exact squared distance of every other point of `p`; the
    /// candidates' positions are rows `order[position]` of `p` (with `None`, rows themselves).
    /// `reach` is the search's (see [`k_nearest_within`]).
    ///
    /// A point left out was either offered and dropped, so its f32 distance is ≥ the kept last
    /// one's, T, and its exact distance ≥ T − the bounds; or never offered, because its leaf's
    /// bound exceeded reach × the list's last f32 distance at the time plus the bounds, which
    /// only falls afterwards, so its exact distance is > reach·T.
    fn within(
        self,
        q: &Prepared,
        i: usize,
        p: &Prepared,
        pmax: f32,
        reach: f64,
        order: Option<&[u32]>,
    ) -> Within {
        let mut list: Vec<(f64, usize)> = self
            .list
            .iter()
            .map(|&(_, j)| {
                let j = order.map_or(j as usize, |o| o[j as usize] as usize);
                (q.exact_sq(i, p, j), j)
            })
            .collect();
        list.sort_by(by_distance);
        // A list that is not full must hold every point; one that misses some saw f32
        // distances that compare false (NaN after an overflow), and no bound is known.
        let lower = if self.list.len() < self.keep {
            if self.list.len() == p.len() {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            }
        } else {
            let t = self.list[self.keep - 1].0 as f64;
            (t - (q.bound[i] + pmax) as f64).min(reach * t)
        };
        Within { list, lower }
    }

    /// The exact k nearest of query `i` (see [`k_nearest`]) from its candidates of a full-reach
    /// search: they settle the list when every point left out is strictly further than the
    /// k-th candidate; otherwise the exact scan decides.
    fn refine(
        self,
        q: &Prepared,
        i: usize,
        p: &Prepared,
        pmax: f32,
        k: usize,
        order: Option<&[u32]>,
    ) -> Vec<(f64, usize)> {
        let Within { mut list, lower } = self.within(q, i, p, pmax, 1.0, order);
        list.truncate(k);
        if list.len() == k.min(p.len()) && (list.is_empty() || lower > list[list.len() - 1].0) {
            return list;
        }
        let mut all: Vec<(f64, usize)> = (0..p.len()).map(|j| (q.exact_sq(i, p, j), j)).collect();
        all.sort_by(by_distance);
        all.truncate(k);
        all
    }
}

/// (Exact squared distance, index) ordered by distance, then index.
fn by_distance(a: &(f64, usize), b: &(f64, usize)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// What a search of limited reach knows about one query's neighbours: the candidates it kept
/// (exact squared distance, index; nearest first, ties by index) and a lower bound on the exact
/// squared distance of every point not among them.
pub struct Within {
    pub list: Vec<(f64, usize)>,
    pub lower: f64,
}

/// For every row of `q`, its `k` nearest rows of `p` as (exact squared distance, index), nearest
/// first (fewer when `p` has fewer than k rows). Ties are broken by index.
///
/// The queries go in groups of nearby points (the leaves of a tree over `q`) against the leaves
/// of a tree over `p`, nearest leaf centre first; a leaf is skipped for the whole group when
/// (‖c_q − c_p‖ − r_q − r_p)², less the error bounds, exceeds every query's current k + 4-th
/// f32 distance plus the bounds, and for a single query when the distance to the leaf's box
/// does, so none of its points can be among the query's k nearest (see
/// [`Candidates::refine`]). The result is the same exact list as a full scan. On the 10-D
/// mixture of `examples/fresh-kde.toml` (2 000 queries, 100 000 points, k = 2) it computes
/// about an eighth of the distances; in two dimensions a few percent.
pub fn k_nearest(q: &Prepared, p: &Prepared, k: usize) -> Vec<Vec<(f64, usize)>> {
    k_nearest_counted(q, p, k).0
}

/// [`k_nearest`] and the number of (query, point) distances it computed.
fn k_nearest_counted(q: &Prepared, p: &Prepared, k: usize) -> (Vec<Vec<(f64, usize)>>, usize) {
    let (lists, order, pmax, computed) = search(q, p, k, 1.0);
    let out = lists
        .into_par_iter()
        .enumerate()
        .map(|(i, c)| c.refine(q, i, p, pmax, k, Some(order)))
        .collect();
    (out, computed)
}

/// The search of [`k_nearest`] with its pruning limits scaled by `reach` ∈ (0, 1]: a leaf is
/// skipped for a query once its bound exceeds reach × the query's current k + 4-th f32 distance
/// (plus the error bounds). Each query gets the candidates the search kept and a lower bound
/// on every other point's exact squared distance, the smaller of reach·T and T less the error
/// bounds, T the last kept candidate's f32 distance ([`Within`]). A question that only needs
/// the neighbourhood within a fraction of the k-th distance (the memorisation test's ratio)
/// is settled by far fewer distances: on the 10-D mixture of `examples/fresh-kde.toml` (k = 2,
/// reach 0.117) about 1 900 per query, against 12 000 for the full search.
pub fn k_nearest_within(q: &Prepared, p: &Prepared, k: usize, reach: f64) -> Vec<Within> {
    k_nearest_within_counted(q, p, k, reach).0
}

/// [`k_nearest_within`] and the number of (query, point) distances it computed.
fn k_nearest_within_counted(
    q: &Prepared,
    p: &Prepared,
    k: usize,
    reach: f64,
) -> (Vec<Within>, usize) {
    let (lists, order, pmax, computed) = search(q, p, k, reach);
    let out = lists
        .into_par_iter()
        .enumerate()
        .map(|(i, c)| c.within(q, i, p, pmax, reach, Some(order)))
        .collect();
    (out, computed)
}

/// The pruned search (see [`k_nearest`] and [`k_nearest_within`]): each query's candidates, in
/// query order, as positions of `p`'s tree order (returned with them), the largest point bound
/// of `p`, and the number of distances computed.
fn search<'p>(
    q: &Prepared,
    p: &'p Prepared,
    k: usize,
    reach: f64,
) -> (Vec<Candidates>, &'p [u32], f32, usize) {
    assert!(reach > 0.0 && reach <= 1.0, "reach must lie in (0, 1]");
    let d = q.raw.ncols();
    let (qt, pt) = (q.tree(true), p.tree(false));
    let pmax = p.max_bound();
    let dist = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let groups: Vec<(Vec<(usize, Candidates)>, usize)> = qt
        .leaves
        .par_iter()
        .map(|g| {
            let rows = &qt.order[g.start..g.start + g.len];
            let mut coords = Vec::with_capacity(rows.len() * d);
            for &i in rows {
                coords.extend_from_slice(&q.coords[i as usize * d..(i as usize + 1) * d]);
            }
            let mut lists: Vec<Candidates> = rows.iter().map(|_| Candidates::new(k)).collect();
            let slack = (g.bound + pmax) as f64;
            let mut near: Vec<(f64, usize)> = pt
                .leaves
                .iter()
                .enumerate()
                .map(|(l, leaf)| (dist(&g.centre, &leaf.centre), l))
                .collect();
            near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut tile = vec![0.0f32; rows.len() * LEAF];
            let mut computed = 0;
            // The group's coordinates by coordinate, for the per-query box bounds.
            let n_rows = rows.len();
            let mut xt = vec![0.0f32; d * n_rows];
            for (i, x) in coords.chunks_exact(d.max(1)).enumerate() {
                for (c, &v) in x.iter().enumerate() {
                    xt[c * n_rows + i] = v;
                }
            }
            let shrink = 1.0 - (d as f32 + 4.0) * 2f32.powi(-22);
            let (mut to_box, mut limit) = (vec![0.0f32; n_rows], vec![f32::INFINITY; n_rows]);
            let (mut picked, mut sub_coords, mut sub_norms) = (Vec::new(), Vec::new(), Vec::new());
            // Each query's limit (reach × threshold + 2·slack, rounded up; ∞ stays ∞) and the
            // largest reach × threshold, brought up to date whenever the lists change.
            let mut worst = f64::INFINITY;
            let update = |limit: &mut [f32], lists: &[Candidates]| -> f64 {
                let mut worst = 0.0f64;
                for (m, c) in limit.iter_mut().zip(lists) {
                    let t = reach * c.threshold() as f64;
                    worst = if t > worst { t } else { worst };
                    *m = ((t + 2.0 * slack) * (1.0 + 1e-6)) as f32;
                }
                worst
            };
            for (centres, l) in near {
                let leaf = &pt.leaves[l];
                // The group's bounds first (balls, then boxes), then each query's own.
                let gap = (centres - g.radius - leaf.radius).max(0.0);
                if gap * gap - slack > worst + slack
                    || box_gap(&g.lo, &g.hi, &leaf.lo, &leaf.hi) - slack > worst + slack
                {
                    continue;
                }
                let mut needed = false;
                box_reachable(
                    &xt,
                    &leaf.lo,
                    &leaf.hi,
                    &limit,
                    shrink,
                    &mut to_box,
                    &mut needed,
                );
                if !needed {
                    continue;
                }
                // Only the queries the leaf's box can reach: their rows gathered into one block.
                picked.clear();
                picked.extend((0..n_rows).filter(|&r| to_box[r] * shrink <= limit[r]));
                sub_coords.clear();
                sub_norms.clear();
                for &r in &picked {
                    sub_coords.extend_from_slice(&coords[r * d..(r + 1) * d]);
                    sub_norms.push(q.norms[rows[r] as usize]);
                }
                let tile = &mut tile[..picked.len() * leaf.len];
                matmul(
                    picked.len(),
                    d,
                    &sub_coords,
                    false,
                    &leaf.packed,
                    tile,
                    Epilogue::SqDist {
                        a_norms: &sub_norms,
                        b_norms: &leaf.norms,
                    },
                );
                computed += tile.len();
                for (&r, row) in picked.iter().zip(tile.chunks_exact(leaf.len)) {
                    lists[r].offer(leaf.start, row);
                }
                worst = update(&mut limit, &lists);
            }
            let lists = rows.iter().map(|&i| i as usize).zip(lists).collect();
            (lists, computed)
        })
        .collect();
    let computed = groups.iter().map(|g| g.1).sum();
    let mut by_query: Vec<Option<Candidates>> = (0..q.len()).map(|_| None).collect();
    for (lists, _) in groups {
        for (i, c) in lists {
            by_query[i] = Some(c);
        }
    }
    let lists = by_query
        .into_iter()
        .map(|c| c.expect("every query is in a group"))
        .collect();
    (lists, &pt.order, pmax, computed)
}

/// Radii of balls around the points of a set, with what deciding "strictly inside" needs.
pub struct Balls<'a> {
    exact: &'a [f64],
    /// r² − (point bound + radius rounding): an f32 distance plus the query's bound below
    /// this is surely inside.
    inner: Vec<f32>,
    /// r² + (point bound + radius rounding): an f32 distance minus the query's bound at or
    /// above this is surely outside.
    outer: Vec<f32>,
}

impl<'a> Balls<'a> {
    /// Balls of squared radii `radii_sq` around the points of `p`.
    pub fn new(p: &Prepared, radii_sq: &'a [f64]) -> Self {
        assert_eq!(radii_sq.len(), p.len(), "one radius per point");
        let (inner, outer) = radii_sq
            .iter()
            .zip(&p.bound)
            .map(|(&r, &b)| {
                let r32 = r as f32;
                let slack = b + r32.abs() * f32::EPSILON;
                (r32 - slack, r32 + slack)
            })
            .unzip();
        Balls {
            exact: radii_sq,
            inner,
            outer,
        }
    }

    /// How many of the balls whose centres are points j0.. contain query `i`, given the f32
    /// distances `row`.
    #[inline]
    fn count(&self, q: &Prepared, i: usize, p: &Prepared, j0: usize, row: &[f32]) -> usize {
        let bq = q.bound[i];
        let (inner, outer) = (
            &self.inner[j0..j0 + row.len()],
            &self.outer[j0..j0 + row.len()],
        );
        // Branch-free counts (vectorised): sure hits, and hits under the widest reading.
        let mut counts = [0u32; 2];
        count_hits(row, bq, inner, outer, &mut counts);
        let (sure, maybe) = (counts[0] as usize, counts[1] as usize);
        if sure == maybe {
            return sure;
        }
        (0..row.len())
            .filter(|&j| {
                let v = row[j];
                v + bq < inner[j]
                    || (v - bq < outer[j] && q.exact_sq(i, p, j0 + j) < self.exact[j0 + j])
            })
            .count()
    }
}

/// For every row q of `qs`, the number of rows pⱼ of `p` with ‖q − pⱼ‖² < `radii_sq[j]` (strict,
/// as in Kynkäänniemi et al. and Naeem et al.).
pub fn count_inside(qs: &Prepared, p: &Prepared, radii_sq: &[f64]) -> Vec<usize> {
    let balls = Balls::new(p, radii_sq);
    scan(
        qs,
        p,
        Tile::SqDist,
        false,
        || 0usize,
        || (),
        |c, _, i, j0, row| *c += balls.count(qs, i, p, j0, row),
    )
    .0
}

/// One pass over the distances between `q` and `p` for [`crate::metrics::fidelity::prdc`]: for
/// each row of q, how many balls of `p_balls` contain it and its nearest point of p (exact
/// squared distance); for each row of p, how many balls of `q_balls` contain it.
pub fn cross_counts(
    q: &Prepared,
    p: &Prepared,
    q_balls: &Balls,
    p_balls: &Balls,
) -> (Vec<usize>, Vec<f64>, Vec<usize>) {
    let (rows, tasks) = scan(
        q,
        p,
        Tile::SqDist,
        false,
        || (0usize, Candidates::new(1)),
        || vec![0u32; p.len()],
        |(count, nearest), cols, i, j0, row| {
            *count += p_balls.count(q, i, p, j0, row);
            nearest.offer(j0, row);
            // Column-wise: does q_i's ball contain p_j? Sure hits first (branch-free), then
            // the undecided ones exactly.
            let (inner, outer) = (q_balls.inner[i], q_balls.outer[i]);
            let bounds = &p.bound[j0..j0 + row.len()];
            let cols = &mut cols[j0..j0 + row.len()];
            let mut undecided = false;
            add_sure_hits(row, bounds, (inner, outer), cols, &mut undecided);
            if undecided {
                for (j, ((&v, &b), c)) in row.iter().zip(bounds).zip(cols.iter_mut()).enumerate() {
                    let sure = v + b < inner;
                    if !sure && v - b < outer && q.exact_sq(i, p, j0 + j) < q_balls.exact[i] {
                        *c += 1;
                    }
                }
            }
        },
    );
    let pmax = p.max_bound();
    let (counts, nearest): (Vec<usize>, Vec<f64>) = rows
        .into_par_iter()
        .enumerate()
        .map(|(i, (c, cand))| (c, cand.refine(q, i, p, pmax, 1, None)[0].0))
        .unzip();
    let mut col_counts = vec![0usize; p.len()];
    for t in tasks {
        for (a, b) in col_counts.iter_mut().zip(t) {
            *a += b as usize;
        }
    }
    (counts, nearest, col_counts)
}

/// Which pairs [`pair_sums`] adds over.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Pairs {
    /// Every (i, j) of q × p.
    All,
    /// i < j within one set (q and p the same [`Prepared`]); half the products of `All`.
    Distinct,
}

/// Σ over pairs (i, j) of `row_sums(i, j0, values, sums)` where `values` are the f32 squared
/// distances ‖q′ᵢ − p′ⱼ‖² of the prepared (centred) coordinates for points j0, j0 + 1, … when
/// `dots` is false, or their dot products q′ᵢ·p′ⱼ when it is true; `row_sums` adds each of its
/// `channels` quantities over the slice into `sums` (in f64). Tiles come from the f32 GEMM, so a squared distance is off by at most the bound B of
/// the module doc; sums are added per block of queries and then in block order, so the result
/// does not depend on the thread count. Memory: one tile per thread.
pub fn pair_sums(
    q: &Prepared,
    p: &Prepared,
    pairs: Pairs,
    dots: bool,
    channels: usize,
    row_sums: impl Fn(usize, usize, &[f32], &mut [f64]) + Sync,
) -> Vec<f64> {
    let triangle = pairs == Pairs::Distinct;
    let kind = if dots { Tile::Dot } else { Tile::SqDist };
    let (_, tasks) = scan(
        q,
        p,
        kind,
        triangle,
        || (),
        || vec![0.0f64; channels],
        |_, sums, i, j0, row| {
            let start = if triangle {
                (i + 1).saturating_sub(j0).min(row.len())
            } else {
                0
            };
            row_sums(i, j0 + start, &row[start..], sums);
        },
    );
    let mut total = vec![0.0f64; channels];
    for t in tasks {
        for (a, b) in total.iter_mut().zip(t) {
            *a += b;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn cloud(n: usize, d: usize, seed: usize, offset: f32) -> Array2<f32> {
        Array2::from_shape_fn((n, d), |(i, j)| {
            let h = ((i * 31 + j * 17 + seed * 7919) * 2_654_435_761usize) % 1_000_003;
            h as f32 / 1_000_003.0 * 4.0 - 2.0 + offset
        })
    }

    fn brute(q: ArrayView2<f32>, p: ArrayView2<f32>) -> Vec<Vec<(f64, usize)>> {
        q.rows()
            .into_iter()
            .map(|qr| {
                let mut d: Vec<(f64, usize)> = p
                    .rows()
                    .into_iter()
                    .enumerate()
                    .map(|(j, pr)| {
                        let s = qr
                            .iter()
                            .zip(pr)
                            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                            .sum();
                        (s, j)
                    })
                    .collect();
                d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                d
            })
            .collect()
    }

    /// On clustered data (four tight clusters in 3-D) the pruned search computes a small share of
    /// the distances and still returns exactly the brute-force lists, for k = 1, 2 and 9, with
    /// the searched set larger than one leaf and queries in several groups.
    #[test]
    fn pruned_search_is_exact_and_prunes() {
        let d = 3;
        let centres = [
            [0.0, 0.0, 0.0],
            [10.0, 0.0, 0.0],
            [0.0, 10.0, 0.0],
            [0.0, 0.0, 10.0],
        ];
        let clustered = |n: usize, seed: usize| {
            let mut x = cloud(n, d, seed, 0.0);
            for (i, mut row) in x.rows_mut().into_iter().enumerate() {
                for (v, c) in row.iter_mut().zip(&centres[i % 4]) {
                    *v = *v * 0.5 + *c as f32;
                }
            }
            x
        };
        let (p, q) = (clustered(3000, 1), clustered(400, 2));
        let centre = centre_of(p.view());
        let (qp, pp) = (
            Prepared::new(q.view(), &centre),
            Prepared::new(p.view(), &centre),
        );
        let want = brute(q.view(), p.view());
        for k in [1, 2, 9] {
            let (got, computed) = k_nearest_counted(&qp, &pp, k);
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g[..], w[..k]);
            }
            let share = computed as f64 / (q.nrows() * p.nrows()) as f64;
            assert!(share < 0.5, "k = {k}: computed {share:.3} of the distances");
        }
    }

    /// A search of limited reach keeps exact distances for its candidates and a true lower
    /// bound for every other point, and computes fewer distances the shorter its reach.
    #[test]
    fn limited_reach_bounds_every_point_left_out() {
        let (p, q) = (cloud(3000, 3, 7, 0.0), cloud(400, 3, 8, 0.0));
        let centre = centre_of(p.view());
        let (qp, pp) = (
            Prepared::new(q.view(), &centre),
            Prepared::new(p.view(), &centre),
        );
        let all = brute(q.view(), p.view());
        let mut computed = vec![];
        for reach in [1.0, 0.5, 1.0 / 9.0] {
            let (got, n) = k_nearest_within_counted(&qp, &pp, 2, reach);
            computed.push(n);
            for (w, want) in got.iter().zip(&all) {
                let kept: Vec<usize> = w.list.iter().map(|&(_, j)| j).collect();
                for &(dist, j) in &w.list {
                    assert_eq!(dist, want.iter().find(|&&(_, i)| i == j).unwrap().0);
                }
                assert!(w.list.windows(2).all(|x| x[0] <= x[1]));
                let least_left = want
                    .iter()
                    .filter(|(_, j)| !kept.contains(j))
                    .map(|&(dist, _)| dist)
                    .fold(f64::INFINITY, f64::min);
                assert!(
                    w.lower <= least_left,
                    "reach {reach}: {} > {least_left}",
                    w.lower
                );
                assert!(w.lower > 0.0);
            }
        }
        assert!(
            computed[2] < computed[1] && computed[1] < computed[0],
            "{computed:?}"
        );
    }

    /// Coordinates whose f32 squared distances overflow (NaN tiles) still give the exact
    /// neighbours: the f64 scan decides every list the f32 pass could not fill.
    #[test]
    fn overflowing_tiles_fall_back_to_the_exact_scan() {
        let mut p = cloud(40, 3, 5, 0.0);
        p.mapv_inplace(|v| v * 1e19);
        let q = cloud(9, 3, 6, 0.0).mapv(|v| v * 1e19);
        let centre = centre_of(p.view());
        let (qp, pp) = (
            Prepared::new(q.view(), &centre),
            Prepared::new(p.view(), &centre),
        );
        let got = k_nearest(&qp, &pp, 2);
        for (g, w) in got.iter().zip(brute(q.view(), p.view())) {
            assert_eq!(g[..], w[..2]);
        }
    }

    /// k nearest and inside-ball counts equal an f64 brute force exactly, across block edges,
    /// with a far-off mean (cancellation), exact duplicates and ties.
    #[test]
    fn neighbours_and_counts_match_brute_force() {
        let d = 7;
        let mut p = cloud(2500, d, 1, 100.0);
        let mut q = cloud(250, d, 2, 100.0);
        // Duplicates: some queries are copies of points, some points repeat.
        for i in 0..20 {
            let row = p.row(i * 3).to_owned();
            q.row_mut(i * 5).assign(&row);
            p.row_mut(2000 + i).assign(&row);
        }
        let centre = centre_of(p.view());
        let (qp, pp) = (
            Prepared::new(q.view(), &centre),
            Prepared::new(p.view(), &centre),
        );
        let k = 5;
        let got = k_nearest(&qp, &pp, k);
        let want = brute(q.view(), p.view());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g[..], w[..k]);
        }
        let radii: Vec<f64> = (0..p.nrows()).map(|j| 0.5 + (j % 7) as f64 * 0.3).collect();
        let counts = count_inside(&qp, &pp, &radii);
        for (i, w) in want.iter().enumerate() {
            let expect = w.iter().filter(|&&(s, j)| s < radii[j]).count();
            assert_eq!(counts[i], expect, "query {i}");
        }
        // The one-pass cross counts agree with the separate ones and with brute force.
        let q_radii: Vec<f64> = (0..q.nrows()).map(|i| 0.4 + (i % 5) as f64 * 0.5).collect();
        let (qb, pb) = (Balls::new(&qp, &q_radii), Balls::new(&pp, &radii));
        let (rows, nearest, cols) = cross_counts(&qp, &pp, &qb, &pb);
        assert_eq!(rows, counts);
        for (i, w) in want.iter().enumerate() {
            assert_eq!(nearest[i], w[0].0);
        }
        let by_point = count_inside(&pp, &qp, &q_radii);
        assert_eq!(cols, by_point);
        for (j, &c) in cols.iter().enumerate().step_by(97) {
            let expect = (0..q.nrows())
                .filter(|&i| want[i].iter().any(|&(s, jj)| jj == j && s < q_radii[i]))
                .count();
            assert_eq!(c, expect, "point {j}");
        }
        // A radius equal to an exact distance does not count (strict).
        let mut radii = vec![0.0; p.nrows()];
        radii[want[7][0].1] = want[7][0].0;
        assert_eq!(count_inside(&qp, &pp, &radii)[7], 0);
    }
}
