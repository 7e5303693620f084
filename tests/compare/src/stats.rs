//! Median and range of one figure over the rounds.

/// Median, minimum and maximum of the finite values of a figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median (mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many finite values there were.
    pub n: usize,
}

/// The spread of the finite `values`, `None` if there is none.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// `median` alone for one value, `median (min–max)` for several.
pub fn cell(s: Option<Spread>, decimals: usize) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.n == 1 => format!("{:.decimals$}", s.median),
        Some(s) => format!(
            "{:.decimals$} ({:.decimals$}–{:.decimals$})",
            s.median, s.min, s.max
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(spread(&[4.0, 1.0, f64::NAN, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(spread(&[f64::NAN]), None);
        assert_eq!(cell(spread(&[1.0, 2.0, 4.0]), 1), "2.0 (1.0–4.0)");
        assert_eq!(cell(spread(&[1.25]), 1), "1.2");
        assert_eq!(cell(None, 1), "—");
    }
}
