//! Samples read out of the Prometheus text of `GET /metrics`.

/// The value of the sample `sample` (`name` or `name{labels}`, exactly as written) in
/// Prometheus text.
pub(crate) fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.rsplit_once(' ')?;
        (n == sample).then(|| v.trim().parse().ok())?
    })
}
