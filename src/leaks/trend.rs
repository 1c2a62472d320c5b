//! The trend test: whether a row's live bytes grew in a sustained way over
//! the watched window, beyond what the noise of its figures explains.
//!
//! A series is a leak suspect when all of these hold:
//! - it has at least [`MIN_POINTS`] points;
//! - its least-squares slope is positive and at least [`MIN_T`] standard
//!   errors from zero (a sawtooth queue or churn swings around a flat
//!   line: its slope is lost in its own scatter);
//! - its later half grew too, at no less than a third of the window's
//!   rate (a cache that filled up to its bound and a warm-up that ended
//!   are flat there);
//! - the growth over the window exceeds both [`MIN_GROWTH`] and three
//!   times the sampling noise of the last figure (an estimate from samples
//!   of mean gap `R` bytes, of a row of `S` bytes, is off by about
//!   `sqrt(S·R)`), so that a sampled row's random swings are not growth.

/// Points a series needs before it can be judged.
pub(crate) const MIN_POINTS: usize = 6;
/// How many standard errors from zero the slope must be.
const MIN_T: f64 = 3.0;
/// The least growth over the window that makes a suspect (bytes).
pub(crate) const MIN_GROWTH: f64 = 64.0 * 1024.0;

/// A sustained growth found by [`growth`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Growth {
    /// The fitted slope, in bytes per second.
    pub(crate) per_second: f64,
    /// Since when it grew: the time of the series' last lowest point.
    pub(crate) since: f64,
}

/// The least-squares fit of `y` on `t`: (slope, its standard error).
fn fit(t: &[f64], y: &[f64]) -> (f64, f64) {
    let n = t.len() as f64;
    let mt = t.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxx: f64 = t.iter().map(|&x| (x - mt) * (x - mt)).sum();
    if sxx <= 0.0 {
        return (0.0, f64::INFINITY);
    }
    let sxy: f64 = t.iter().zip(y).map(|(&x, &v)| (x - mt) * (v - my)).sum();
    let slope = sxy / sxx;
    let ssr: f64 = t
        .iter()
        .zip(y)
        .map(|(&x, &v)| {
            let e = v - (my + slope * (x - mt));
            e * e
        })
        .sum();
    let se = if t.len() > 2 {
        (ssr / (n - 2.0) / sxx).sqrt()
    } else {
        f64::INFINITY
    };
    (slope, se)
}

/// Whether the series `(t, y)` (seconds, bytes) grew in a sustained way.
/// `sample_bytes` is the mean gap between samples of the figures (0 when
/// they are exact).
pub(crate) fn growth(t: &[f64], y: &[f64], sample_bytes: f64) -> Option<Growth> {
    let n = t.len().min(y.len());
    if n < MIN_POINTS {
        return None;
    }
    let (t, y) = (&t[..n], &y[..n]);
    let (slope, se) = fit(t, y);
    if slope.is_nan() || slope <= 0.0 || (se > 0.0 && slope < MIN_T * se) {
        return None;
    }
    let half = n / 2;
    let (later, _) = fit(&t[half..], &y[half..]);
    if later < slope / 3.0 {
        return None;
    }
    let grown = slope * (t[n - 1] - t[0]);
    let noise = 3.0 * (y[n - 1].max(0.0) * sample_bytes).sqrt();
    if grown < MIN_GROWTH.max(noise) {
        return None;
    }
    let lowest = (0..n)
        .rev()
        .min_by(|&a, &b| y[a].total_cmp(&y[b]))
        .unwrap_or(0);
    Some(Growth {
        per_second: slope,
        since: t[lowest],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pseudo-random source with a fixed seed, so that the noise is the
    /// same every run.
    struct Noise(u64);

    impl Noise {
        /// A value in [-1, 1).
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    const MIB: f64 = 1024.0 * 1024.0;

    fn judged(f: impl Fn(f64, &mut Noise) -> f64, sample_bytes: f64) -> Option<Growth> {
        let mut noise = Noise(7);
        let t: Vec<f64> = (0..30).map(|i| i as f64 * 2.0).collect();
        let y: Vec<f64> = t.iter().map(|&x| f(x, &mut noise).max(0.0)).collect();
        growth(&t, &y, sample_bytes)
    }

    #[test]
    fn a_steady_leak_grows_at_its_rate_since_the_start() {
        // 100 KiB a second on top of 8 MiB, with 2 % noise.
        let g = judged(
            |x, n| 8.0 * MIB + 100.0 * 1024.0 * x + 0.02 * 8.0 * MIB * n.next(),
            0.0,
        )
        .unwrap();
        assert!(
            (g.per_second / (100.0 * 1024.0) - 1.0).abs() < 0.05,
            "{g:?}"
        );
        assert!(g.since < 6.0, "{g:?}");
    }

    #[test]
    fn a_sampled_leak_in_steps_is_found() {
        // Samples of 512 KiB arriving every few seconds, kept.
        let g = judged(|x, _| (x / 5.0).floor() * 512.0 * 1024.0, 512.0 * 1024.0);
        assert!(g.is_some());
    }

    #[test]
    fn a_cache_that_reached_its_bound_is_not_a_suspect() {
        // Fills in the first third, then holds.
        assert_eq!(judged(|x, _| x.min(20.0) * 200.0 * 1024.0, 0.0), None);
    }

    #[test]
    fn a_warm_up_that_ended_is_not_a_suspect() {
        // Grows for the first 40 % of the window, then stays, with noise.
        assert_eq!(
            judged(|x, n| x.min(24.0) * MIB + 0.01 * MIB * n.next(), 0.0),
            None
        );
    }

    #[test]
    fn a_sawtooth_queue_is_not_a_suspect() {
        // Fills for 10 s, drains, again: six periods in the window.
        assert_eq!(judged(|x, _| (x % 10.0) * MIB, 0.0), None);
    }

    #[test]
    fn churn_and_its_sampling_noise_are_not_suspects() {
        // A steady 4 MiB estimated from samples of mean gap 512 KiB: each
        // figure is off by about sqrt(4 MiB · 512 KiB) = 1.4 MiB.
        assert_eq!(
            judged(|_, n| 4.0 * MIB + 1.4 * MIB * n.next(), 512.0 * 1024.0),
            None
        );
    }

    #[test]
    fn growth_smaller_than_the_sampling_noise_is_not_a_suspect() {
        // 1 MiB over the window on top of 64 MiB: less than three times
        // sqrt(65 MiB · 512 KiB) = 5.8 MiB.
        assert_eq!(
            judged(|x, _| 64.0 * MIB + x / 58.0 * MIB, 512.0 * 1024.0),
            None
        );
    }

    #[test]
    fn too_few_points_are_no_verdict() {
        let t = [0.0, 1.0, 2.0, 3.0, 4.0];
        let y = [0.0, 1e6, 2e6, 3e6, 4e6];
        assert_eq!(growth(&t, &y, 0.0), None);
    }

    #[test]
    fn a_leak_after_a_drop_grows_since_the_drop() {
        // Flat at zero for 20 s, then a leak: dated from where it began.
        let g = judged(|x, _| if x < 20.0 { 0.0 } else { (x - 20.0) * MIB }, 0.0).unwrap();
        assert_eq!(g.since, 20.0);
    }
}
