//! Medians with their spread, as every report of the benchmarks states a repeated measurement.

/// `(median, min, max)` of `v`; `None` when empty.
pub fn median(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((med, v[0], v[n - 1]))
}

/// `median (min - max)` of `v`, each formatted by `f`; just the median when all are equal, `-`
/// when empty.
pub fn spread(v: Vec<f64>, f: impl Fn(f64) -> String) -> String {
    match median(v) {
        None => "-".into(),
        Some((m, lo, hi)) if lo == hi => f(m),
        Some((m, lo, hi)) => format!("{} ({} - {})", f(m), f(lo), f(hi)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        let f = |x: f64| format!("{x:.1}");
        assert_eq!(spread(vec![], f), "-");
        assert_eq!(spread(vec![2.0, 2.0], f), "2.0");
        assert_eq!(spread(vec![1.0, 3.0, 2.0], f), "2.0 (1.0 - 3.0)");
    }
}
