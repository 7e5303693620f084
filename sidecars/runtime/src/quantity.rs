//! Conversions between Kubernetes resource quantities (`"1Gi"`, `"500M"`)
//! and byte counts, as apimachinery's `resource.Quantity` does them, for
//! every sidecar that reads or writes sizes.

use crate::Error;

/// Parses a Kubernetes quantity (`"1Gi"`, `"500M"`, `"1.5Ki"`, `"1e3"`,
/// `"100m"`) into whole bytes, rounding up as `resource.Quantity.Value()`
/// does.
///
/// Errors: [`Error::InvalidQuantity`] for text that is not a quantity, a
/// negative value, or a value beyond `i64`.
pub fn to_bytes(q: &str) -> Result<i64, Error> {
    let bad = || Error::InvalidQuantity(q.to_string());
    let s = q.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num.starts_with('-') {
        return Err(bad());
    }
    // Decimal exponent form: 1e3, 2E6.
    let (mantissa, exp10): (&str, i32) = if let Some(e) = suffix.strip_prefix(['e', 'E']) {
        (num, e.parse().map_err(|_| bad())?)
    } else {
        (num, 0)
    };
    let (mult_num, mult_den): (u128, u128) = match if exp10 != 0 { "" } else { suffix } {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        _ => return Err(bad()),
    };
    let mantissa = mantissa.trim_start_matches('+');
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad());
    }
    let digits = format!("{int_part}{frac_part}");
    if !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 30 {
        return Err(bad());
    }
    let value: u128 = digits.parse().unwrap_or(0);
    let mut den: u128 = 10u128.pow(frac_part.len() as u32) * mult_den;
    let mut num: u128 = value.checked_mul(mult_num).ok_or_else(bad)?;
    match exp10 {
        e if e > 0 => {
            num = num
                .checked_mul(10u128.checked_pow(e as u32).ok_or_else(bad)?)
                .ok_or_else(bad)?
        }
        e if e < 0 => {
            den = den
                .checked_mul(10u128.checked_pow((-e) as u32).ok_or_else(bad)?)
                .ok_or_else(bad)?
        }
        _ => {}
    }
    let bytes = num.div_ceil(den);
    i64::try_from(bytes).map_err(|_| bad())
}

/// Go's `%v` of the `resource.Quantity` the Go client decodes from `q` (a
/// quantity as the API server serves it), e.g. `{{1073741824 0} {<nil>} 1Gi
/// BinarySI}` for `1Gi`: the struct's int64 amount (value, scale), its
/// `inf.Dec` (nil), the cached string (kept only when `ParseQuantity` keeps
/// it) and the format.
///
/// Exact for what `ParseQuantity` parses on its fast path, which covers the
/// API server's canonical forms up to about 10^15; beyond that Go holds an
/// `inf.Dec` pointer, printed as an address, rendered here as
/// `{{0 0} {0xc000000000}  <format>}`.
pub fn go_value(q: &str) -> String {
    match go_fast_parse(q) {
        Ok((value, scale, format, keep)) => format!(
            "{{{{{value} {scale}}} {{<nil>}} {} {format}}}",
            if keep { q } else { "" }
        ),
        Err(format) => format!("{{{{0 0}} {{0xc000000000}}  {format}}}"),
    }
}

/// `ParseQuantity`'s fast path: `(value, scale, format, string kept)`, or
/// the format when Go would take the `inf.Dec` path.
fn go_fast_parse(q: &str) -> Result<(i64, i32, &'static str, bool), &'static str> {
    if q == "0" {
        return Ok((0, 0, "DecimalSI", true));
    }
    let (positive, rest) = match q.as_bytes().first() {
        Some(b'-') => (false, &q[1..]),
        Some(b'+') => (true, &q[1..]),
        _ => (true, q),
    };
    let rest = rest.trim_start_matches('0');
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let n = digits(rest);
    let num = if n == 0 { "0" } else { &rest[..n] };
    let mut rest = &rest[n..];
    let mut denom = "";
    if let Some(after) = rest.strip_prefix('.') {
        let d = digits(after);
        denom = &after[..d];
        rest = &after[d..];
    }
    let (base, exponent, format): (u32, i32, &'static str) = match rest {
        "" => (10, 0, "DecimalSI"),
        "n" => (10, -9, "DecimalSI"),
        "u" => (10, -6, "DecimalSI"),
        "m" => (10, -3, "DecimalSI"),
        "k" => (10, 3, "DecimalSI"),
        "M" => (10, 6, "DecimalSI"),
        "G" => (10, 9, "DecimalSI"),
        "T" => (10, 12, "DecimalSI"),
        "P" => (10, 15, "DecimalSI"),
        "E" => (10, 18, "DecimalSI"),
        "Ki" => (2, 10, "BinarySI"),
        "Mi" => (2, 20, "BinarySI"),
        "Gi" => (2, 30, "BinarySI"),
        "Ti" => (2, 40, "BinarySI"),
        "Pi" => (2, 50, "BinarySI"),
        "Ei" => (2, 60, "BinarySI"),
        e => {
            let exp = e
                .strip_prefix(['e', 'E'])
                .and_then(|x| x.parse::<i32>().ok())
                .ok_or("DecimalSI")?;
            (10, exp, "DecimalExponent")
        }
    };
    let digits_len = (num.len() + denom.len()) as i32;
    let (mut scale, precision, mantissa) = if base == 10 {
        (exponent, 18 - digits_len, 1i64)
    } else if denom.is_empty() {
        // Go: 15 - len(num) - int32(float32(exponent)*3/10) - 1.
        let p = 15 - num.len() as i32 - (exponent * 3 / 10) - 1;
        (0, p, 1i64 << exponent)
    } else {
        (0, -1, 1)
    };
    if precision < 0 {
        return Err(format);
    }
    scale -= denom.len() as i32;
    if scale < -9 {
        return Err(format);
    }
    let shifted = format!("{num}{denom}");
    let value: i64 = shifted.parse().map_err(|_| format)?;
    let result = value.checked_mul(mantissa).ok_or(format)?;
    let result = if positive { result } else { -result };
    let keep = if base == 2 {
        exponent % 10 == 0 && value & 7 != 0
    } else {
        scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
    };
    Ok((result, scale, format, keep))
}

/// Formats a byte count the way `resource.NewQuantity(bytes, BinarySI)`
/// prints it: the largest binary suffix that divides it exactly
/// (`1073741824` → `"1Gi"`, `1536 MiB` → `"1536Mi"`), else plain bytes.
pub fn from_bytes(bytes: i64) -> String {
    const SUFFIXES: [(&str, u32); 6] = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    if bytes == 0 {
        return "0".into();
    }
    for (suffix, shift) in SUFFIXES {
        let unit = 1i64 << shift;
        if bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go: `fmt.Sprintf("%v", q)` of a `resource.Quantity` decoded from the
    /// API server's string (apimachinery pkg/api/resource ParseQuantity).
    #[test]
    fn go_value_matches_gos_struct_print() {
        let cases = [
            ("1Gi", "{{1073741824 0} {<nil>} 1Gi BinarySI}"),
            ("10Gi", "{{10737418240 0} {<nil>} 10Gi BinarySI}"),
            ("1536Mi", "{{1610612736 0} {<nil>}  BinarySI}"),
            ("5G", "{{5 9} {<nil>} 5G DecimalSI}"),
            ("500m", "{{500 -3} {<nil>} 500m DecimalSI}"),
            ("1024", "{{1024 0} {<nil>} 1024 DecimalSI}"),
            ("1e3", "{{1 3} {<nil>} 1e3 DecimalExponent}"),
            ("0", "{{0 0} {<nil>} 0 DecimalSI}"),
            ("1k", "{{1 3} {<nil>} 1k DecimalSI}"),
            ("100M", "{{100 6} {<nil>} 100M DecimalSI}"),
        ];
        for (q, want) in cases {
            assert_eq!(go_value(q), want, "{q}");
        }
    }

    #[test]
    fn parses_binary_decimal_and_exponent_forms() {
        let cases = [
            ("1Gi", 1 << 30),
            ("1Mi", 1 << 20),
            ("1.5Ki", 1536),
            ("500M", 500_000_000),
            ("1G", 1_000_000_000),
            ("1e3", 1000),
            ("100", 100),
            ("1500m", 2),
            ("1k", 1000),
            ("0", 0),
        ];
        for (text, want) in cases {
            assert_eq!(to_bytes(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "abc", "-1Gi", "1Xi", "1..5Gi", "99999999999Ei"] {
            assert!(to_bytes(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats_like_binary_si() {
        assert_eq!(from_bytes(1 << 30), "1Gi");
        assert_eq!(from_bytes(1536 << 20), "1536Mi");
        assert_eq!(from_bytes(1000), "1000");
        assert_eq!(from_bytes(2048), "2Ki");
        assert_eq!(from_bytes(0), "0");
    }

    #[test]
    fn round_trips() {
        for b in [1i64, 1023, 1024, 5 << 30, 123_456_789] {
            assert_eq!(to_bytes(&from_bytes(b)).unwrap(), b);
        }
    }
}
