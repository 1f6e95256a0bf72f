//! Memorisation and generalisation: how close generated points sit to the training set, all
//! from exact nearest-neighbour distances ([`super::knn`]).

use super::knn::{Prepared, centre_of, k_nearest, k_nearest_within};
use ndarray::{Array2, ArrayView2, Axis, s};
use rayon::prelude::*;

/// What the nearest-neighbour tests measure for one generated set against its training set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Memorization {
    /// Share of samples whose nearest distinct training point is closer than `ratio` × the
    /// second nearest (the test of Yoon et al. 2023 used by Yi et al., ratio 1/3); see
    /// [`memorized_share`] for its rate on samples that copy nothing.
    pub memorized: f64,
    /// Share of samples identical to a training point (distance exactly 0).
    pub copies: f64,
    /// Share of samples g whose nearest training point t is not closer to g than to t's own
    /// nearest other distinct training point: d(g, t) ≥ d(t, NN_train(t)). One minus the share of
    /// "unauthentic" samples of Alaa et al. 2022 ("How faithful is your synthetic data?").
    pub authenticity: f64,
}

/// Two training points closer than this share of the training set's RMS distance to its mean
/// are one *site* for the nearest-neighbour tests: copies of one point, bitwise or up to a
/// sampler's last rounding.
pub const SITE_TOLERANCE: f64 = 1e-3;

/// Training-set neighbours fetched per query before the exact scan (rarely needed) takes over.
const SITE_K: usize = 8;

/// The distinct rows of `x` (bitwise equal after mapping −0 to +0), in their first order of
/// appearance; `None` when every row is distinct.
pub fn distinct_rows(x: ArrayView2<f32>) -> Option<Array2<f32>> {
    let bits = |i: usize| x.row(i).into_iter().map(|&v| (v + 0.0).to_bits());
    // Rows sorted by a hash of their bits (then index), so that equal rows sit in one run of
    // equal hashes; sorting the rows themselves took 7% of a 100 000-point KDE loop.
    let hash = |i: usize| {
        bits(i).fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h.rotate_left(5) ^ b as u64).wrapping_mul(0x517c_c1b7_2722_0a95)
        })
    };
    let mut keyed: Vec<(u64, usize)> = (0..x.nrows())
        .into_par_iter()
        .map(|i| (hash(i), i))
        .collect();
    // Keys are unique (the index breaks ties), so the order is the same for any thread count.
    keyed.par_sort_unstable();
    let (hashes, order): (Vec<u64>, Vec<usize>) = keyed.into_iter().unzip();
    let mut keep: Vec<usize> = Vec::with_capacity(order.len());
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && hashes[end] == hashes[start] {
            end += 1;
        }
        // Within a run (almost always one row), a row is kept unless an earlier one equals it.
        let run = &order[start..end];
        for (w, &i) in run.iter().enumerate() {
            if !run[..w].iter().any(|&j| bits(j).eq(bits(i))) {
                keep.push(i);
            }
        }
        start = end;
    }
    if keep.len() == x.nrows() {
        return None;
    }
    keep.sort_unstable();
    Some(x.select(Axis(0), &keep))
}

/// A training set prepared for the site-aware tests: its distinct points and the squared site
/// tolerance (SITE_TOLERANCE × RMS distance to the mean)².
///
/// A loop that trains on its own samples makes training sets with repeated points, and the
/// tests below compare a sample's nearest training point with the *next* one: against a
/// repeated point both would be the same point, and a copy would pass as novel. So the "next"
/// point is the nearest one that is not a copy of the nearest (further than the tolerance).
struct Sites<'a> {
    points: Prepared<'a>,
    tol2: f64,
}

/// For every row of `q`: (squared distance to its nearest training point, that point's index,
/// squared distance to the nearest training point further than the site tolerance from that
/// one; ∞ when there is none).
///
/// Most queries are settled by their two nearest points (the second is then the nearest other
/// site); the few whose second nearest is a copy of the first are searched again for
/// [`SITE_K`], and the exact scan decides those whose [`SITE_K`] nearest are all copies.
fn nearest_two_sites(q: &Prepared, t: &Sites) -> Vec<(f64, usize, f64)> {
    let p = &t.points;
    let other = |j1: usize, j: usize| p.exact_sq(j1, p, j) > t.tol2;
    let mut out: Vec<Option<(f64, usize, f64)>> = k_nearest(q, p, 2)
        .into_par_iter()
        .map(|list| {
            let (d1, j1) = list[0];
            match list.get(1) {
                None => Some((d1, j1, f64::INFINITY)),
                Some(&(d2, j2)) if other(j1, j2) => Some((d1, j1, d2)),
                Some(_) => None,
            }
        })
        .collect();
    let again: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
    if again.is_empty() {
        return out.into_iter().map(|o| o.expect("settled")).collect();
    }
    let rows = q.raw_rows(&again);
    let sub = Prepared::new(rows.view(), q.centre());
    let lists = k_nearest(&sub, p, SITE_K);
    let redone: Vec<(f64, usize, f64)> = lists
        .into_par_iter()
        .enumerate()
        .map(|(r, list)| {
            let i = again[r];
            let (d1, j1) = list[0];
            let d2 = match list[1..].iter().find(|&&(_, j)| other(j1, j)) {
                Some(&(d2, _)) => d2,
                None if list.len() < SITE_K => f64::INFINITY,
                // Every candidate is a copy of the nearest: the exact scan decides.
                None => (0..p.len())
                    .filter(|&j| other(j1, j))
                    .map(|j| q.exact_sq(i, p, j))
                    .fold(f64::INFINITY, f64::min),
            };
            (d1, j1, d2)
        })
        .collect();
    for (&i, r) in again.iter().zip(redone) {
        out[i] = Some(r);
    }
    out.into_iter().map(|o| o.expect("settled")).collect()
}

/// Whether each row of `q` passes the memorisation test: its nearest site closer than `r2`
/// (a squared ratio) times the nearest site that is not a copy of it, in squared distances;
/// the answer of [`nearest_two_sites`], found with far fewer distances.
///
/// A search of reach ≈ r2 ([`k_nearest_within`]) keeps each query's nearest candidates a and
/// the first candidate m further than twice the copy radius from a, and a lower bound L on every
/// other point. When d(a) ≥ r2·d(m) and L ≥ r2·d(m) the query fails the test: if its nearest
/// site is a, the nearest non-copy is no further than m; if it is a point left out, its
/// distance is ≥ L, and a and m cannot both be its copies (they are more than two copy radii
/// apart), so again a non-copy lies within d(m). The other queries, the memorised ones among
/// them, get the exact test.
fn memorized_flags(q: &Prepared, t: &Sites, r2: f64) -> Vec<bool> {
    let p = &t.points;
    // (2 copy radii)², with room for the rounding of the f64 distances.
    let apart = 4.0001 * t.tol2;
    let found = k_nearest_within(q, p, 2, (1.05 * r2).min(1.0));
    let mut flags: Vec<Option<bool>> = found
        .par_iter()
        .map(|w| {
            let &(e1, a) = w.list.first()?;
            let &(em, _) = w.list[1..]
                .iter()
                .find(|&&(_, j)| p.exact_sq(a, p, j) > apart)?;
            let bound = r2 * em;
            (e1 >= bound && w.lower >= bound).then_some(false)
        })
        .collect();
    let again: Vec<usize> = (0..flags.len()).filter(|&i| flags[i].is_none()).collect();
    if !again.is_empty() {
        let rows = q.raw_rows(&again);
        let exact = nearest_two_sites(&Prepared::new(rows.view(), q.centre()), t);
        for (&i, (d1, _, d2)) in again.iter().zip(exact) {
            flags[i] = Some(d1 < r2 * d2);
        }
    }
    flags.into_iter().map(|f| f.expect("decided")).collect()
}

/// Runs `test` with the centre to prepare query sets at and the sites of `train` (its distinct
/// points), or `None` when the training set has fewer than two distinct points.
fn with_sites<T>(train: ArrayView2<f32>, test: impl FnOnce(&[f64], &Sites) -> T) -> Option<T> {
    let distinct = distinct_rows(train);
    let train = distinct.as_ref().map_or(train, |d| d.view());
    if train.nrows() < 2 {
        return None;
    }
    let centre = centre_of(train);
    let spread2 = train
        .rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .zip(&centre)
                .map(|(&v, c)| (v as f64 - c).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        / train.nrows() as f64;
    let sites = Sites {
        points: Prepared::new(train, &centre),
        tol2: SITE_TOLERANCE * SITE_TOLERANCE * spread2,
    };
    Some(test(&centre, &sites))
}

/// [`Memorization`] of `samples` against the sites of `train` (see [`memorized_share`]; needs
/// samples and ≥ 2 distinct training points, NaN otherwise).
pub fn memorization(samples: ArrayView2<f32>, train: ArrayView2<f32>, ratio: f64) -> Memorization {
    let r2 = ratio * ratio;
    let n = samples.nrows() as f64;
    let undefined = Memorization {
        memorized: f64::NAN,
        copies: f64::NAN,
        authenticity: f64::NAN,
    };
    if samples.nrows() == 0 {
        return undefined;
    }
    with_sites(train, |centre, t| {
        let near = nearest_two_sites(&Prepared::new(samples, centre), t);
        // Each training point's nearest training point that is not a copy of it.
        let own = nearest_two_sites(&t.points, t);
        let share = |hit: &dyn Fn(&(f64, usize, f64)) -> bool| {
            near.iter().filter(|l| hit(l)).count() as f64 / n
        };
        Memorization {
            memorized: share(&|&(d1, _, d2)| d1 < r2 * d2),
            copies: share(&|&(d1, _, _)| d1 == 0.0),
            authenticity: share(&|&(d1, j, _)| d1 >= own[j].2),
        }
    })
    .unwrap_or(undefined)
}

/// Share of `samples` whose nearest training point is closer than `ratio` times the nearest
/// training point that is not a copy of it ([`Memorization::memorized`]): training points that
/// repeat, bitwise or within [`SITE_TOLERANCE`] × the set's RMS spread, count as one.
///
/// Points that copy nothing pass the test too: for a locally uniform density in d dimensions,
/// (d₁/d₂)ᵈ is uniform on [0, 1], so a share of about ratioᵈ of independent draws is flagged
/// (1/3 in 1-D, 1/9 in 2-D with ratio 1/3). [`memorized_share`] of held-out real points against
/// the same training set measures that null rate on the data's own geometry (`memorized_null`).
pub fn memorized_share(samples: ArrayView2<f32>, train: ArrayView2<f32>, ratio: f64) -> f64 {
    memorized_shares(&[samples], train, ratio)[0]
}

/// [`memorized_share`] of each of `sets` against one training set, whose sites are found once
/// (NaN for an empty set, or all NaN with fewer than two distinct training points).
pub fn memorized_shares(sets: &[ArrayView2<f32>], train: ArrayView2<f32>, ratio: f64) -> Vec<f64> {
    let r2 = ratio * ratio;
    with_sites(train, |centre, t| {
        sets.iter()
            .map(|&x| {
                if x.nrows() == 0 {
                    return f64::NAN;
                }
                let flags = memorized_flags(&Prepared::new(x, centre), t, r2);
                flags.iter().filter(|&&f| f).count() as f64 / x.nrows() as f64
            })
            .collect()
    })
    .unwrap_or_else(|| vec![f64::NAN; sets.len()])
}

/// Mean distance from each sample to its nearest held-out real point minus the mean distance
/// to its nearest training point, with both reference sets cut to the size of the smaller (the
/// first rows) so that neither is closer merely by being larger. Positive when samples sit
/// closer to the training set than to fresh data from the same distribution.
pub fn nn_distance_gap(
    samples: ArrayView2<f32>,
    train: ArrayView2<f32>,
    heldout: ArrayView2<f32>,
) -> f64 {
    let size = train.nrows().min(heldout.nrows());
    if samples.nrows() == 0 || size == 0 {
        return f64::NAN;
    }
    let (train, heldout) = (train.slice(s![..size, ..]), heldout.slice(s![..size, ..]));
    let centre = centre_of(train);
    let g = Prepared::new(samples, &centre);
    let mean_nn = |set: ArrayView2<f32>| {
        let p = Prepared::new(set, &centre);
        let near = k_nearest(&g, &p, 1);
        near.iter().map(|l| l[0].0.sqrt()).sum::<f64>() / samples.nrows() as f64
    };
    mean_nn(heldout) - mean_nn(train)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn copies_are_memorised_and_midpoints_are_not() {
        let train = array![[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let samples = array![[0.0f32, 0.1], [5.0, 0.0], [10.0, 0.0], [3.0, 0.0]];
        // (0,.1): 0.1 vs 9.9 → yes; (5,0): tie → no; copy → yes; (3,0): 3 vs 7 → no
        assert_eq!(
            memorized_share(samples.view(), train.view(), 1.0 / 3.0),
            0.5
        );
        let m = memorization(samples.view(), train.view(), 1.0 / 3.0);
        assert_eq!(m.memorized, 0.5);
        assert_eq!(m.copies, 0.25);
        // Every training point's nearest other point is 10 away, and each sample is closer
        // than that to its nearest training point (0.1, 5, 0, 3): none is authentic.
        assert_eq!(m.authenticity, 0.0);
        // (20, 0) is exactly 10 from (10, 0): authentic; (0, 0.5) is not.
        let far = array![[20.0f32, 0.0], [0.0, 0.5]];
        assert_eq!(
            memorization(far.view(), train.view(), 1.0 / 3.0).authenticity,
            0.5
        );
    }

    /// Repeated training points (twins and a near-copy within the site tolerance) are one site:
    /// copies of them are memorised and not authentic, where comparing with the next *point*
    /// would see a second neighbour at distance 0 and call every copy novel.
    #[test]
    fn repeated_training_points_count_as_one_site() {
        let base = array![[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let mut rows: Vec<f32> = base.iter().copied().collect();
        rows.extend_from_slice(&[0.0, 0.0, 10.0, 0.0, 10.0, 0.0]);
        rows.extend_from_slice(&[0.0, 10.0 + 1e-4]);
        let train = Array2::from_shape_vec((8, 2), rows).unwrap();
        assert_eq!(distinct_rows(train.view()).unwrap().nrows(), 5);
        let samples = array![[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0], [0.1, 9.9]];
        let m = memorization(samples.view(), train.view(), 1.0 / 3.0);
        assert_eq!(m.memorized, 1.0);
        assert_eq!(m.copies, 0.75);
        assert_eq!(m.authenticity, 0.0);
        assert_eq!(
            memorized_share(samples.view(), train.view(), 1.0 / 3.0),
            1.0
        );
    }

    /// Independent uniform draws against a uniform training set are flagged at the rate
    /// ratioᵈ: (d₁/d₂)ᵈ is uniform for a Poisson process. 4 000 draws in the middle of the unit
    /// square (away from the edges) against 20 000 training points: 1/9 within 4 standard
    /// errors (√(p(1−p)/4000) = 0.005).
    #[test]
    fn the_null_rate_is_ratio_to_the_dimension() {
        use rand::RngExt;
        let mut rng = crate::rng::stream(3, 0, crate::rng::Role::Metrics);
        let train = Array2::from_shape_fn((20_000, 2), |_| rng.random::<f32>());
        let draws = Array2::from_shape_fn((4_000, 2), |_| 0.1 + 0.8 * rng.random::<f32>());
        let rate = memorized_share(draws.view(), train.view(), 1.0 / 3.0);
        let se = (1.0f64 / 9.0 * 8.0 / 9.0 / 4000.0).sqrt();
        eprintln!("null rate {rate:.4} (1/9 = 0.1111, se {se:.4})");
        assert!((rate - 1.0 / 9.0).abs() < 4.0 * se, "rate {rate}");
    }

    /// The limited-reach decision gives the exact test's answer for every query, in 2-D (where
    /// a ninth of independent draws pass) and 10-D, against training sets with twins, near
    /// copies within the site tolerance and near-copy pairs just outside it, for queries that
    /// copy, nearly copy, sit between copies, or copy nothing.
    #[test]
    fn the_limited_reach_test_matches_the_exact_one() {
        use rand::RngExt;
        let mut rng = crate::rng::stream(5, 0, crate::rng::Role::Metrics);
        for d in [2, 10] {
            let base = Array2::from_shape_fn((3000, d), |_| rng.random::<f32>() * 4.0 - 2.0);
            let mut rows: Vec<f32> = base.iter().copied().collect();
            for i in 0..300 {
                let r = base.row(i * 7);
                // Twins, copies within the tolerance (1e-3 × RMS spread ≈ 1.2e-3·√d) and pairs
                // just outside it.
                let shift = [0.0f32, 1e-4, 1e-3, 3e-3][i % 4];
                rows.extend(
                    r.iter()
                        .enumerate()
                        .map(|(c, &v)| v + shift * (c == 0) as u8 as f32),
                );
            }
            let train = Array2::from_shape_vec((rows.len() / d, d), rows).unwrap();
            let queries = Array2::from_shape_fn((1500, d), |(i, c)| {
                let t = train[[(i * 13) % train.nrows(), c]];
                match i % 5 {
                    0 => t,
                    1 => t + 1e-4,
                    2 => t + 0.02 * (rng.random::<f32>() - 0.5),
                    3 => 0.5 * (t + train[[(i * 13 + 1) % train.nrows(), c]]),
                    _ => rng.random::<f32>() * 4.0 - 2.0,
                }
            });
            let r2 = 1.0 / 9.0;
            let (fast, exact) = with_sites(train.view(), |centre, t| {
                let q = Prepared::new(queries.view(), centre);
                let exact: Vec<bool> = nearest_two_sites(&q, t)
                    .iter()
                    .map(|&(d1, _, d2)| d1 < r2 * d2)
                    .collect();
                (memorized_flags(&q, t, r2), exact)
            })
            .unwrap();
            let passed = exact.iter().filter(|&&f| f).count();
            assert!(passed > 300 && passed < 1400, "d = {d}: {passed} memorised");
            assert_eq!(fast, exact, "d = {d}");
        }
    }

    #[test]
    fn nn_gap_is_positive_for_copies_of_the_training_set() {
        let train = array![[0.0f32, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]];
        let heldout = array![[1.0f32, 1.0], [3.0, 1.0], [1.0, 3.0], [3.0, 3.0]];
        // Copies of the training set: 0 to train, √2 to held-out.
        let gap = nn_distance_gap(train.view(), train.view(), heldout.view());
        assert!((gap - 2f64.sqrt()).abs() < 1e-12);
        // Copies of the held-out set: the opposite sign.
        let gap = nn_distance_gap(heldout.view(), train.view(), heldout.view());
        assert!((gap + 2f64.sqrt()).abs() < 1e-12);
    }
}
