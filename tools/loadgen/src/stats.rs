//! Latency percentiles, from every sample kept (a run has a few million at most).

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Latency {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// The nearest-rank percentile `p` (0–100) of sorted samples: the smallest sample with at
/// least p% of the samples at or below it.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    // The epsilon keeps 99.9% of 1000 at rank 999: 0.999 × 1000 is 999.0000000000001.
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Percentiles of samples in microseconds, reported in milliseconds.
pub(crate) fn latency(mut micros: Vec<u32>) -> Latency {
    if micros.is_empty() {
        return Latency::default();
    }
    micros.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1000.0;
    let sum: u64 = micros.iter().map(|&u| u64::from(u)).sum();
    Latency {
        samples: micros.len(),
        p50: ms(percentile(&micros, 50.0)),
        p99: ms(percentile(&micros, 99.0)),
        p999: ms(percentile(&micros, 99.9)),
        max: ms(micros[micros.len() - 1]),
        mean: sum as f64 / micros.len() as f64 / 1000.0,
    }
}

/// The median of a few figures (one per round); the mean of the middle two for an even count.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 99.9), 100);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.9), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.9), 999);
    }

    #[test]
    fn latency_summary_in_milliseconds() {
        let l = latency(vec![3000, 1000, 2000, 4000]);
        assert_eq!(l.samples, 4);
        assert_eq!(l.p50, 2.0);
        assert_eq!(l.max, 4.0);
        assert_eq!(l.mean, 2.5);
        assert_eq!(latency(Vec::new()), Latency::default());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    }
}
