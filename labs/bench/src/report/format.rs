//! Number formatting for tables, notes and plot labels: the same value is
//! always written the same way ("12,346", "34.5 KiB", "12.35 ms").

/// 12345.6 → "12,346".
pub fn fmt_int(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Bytes with a binary unit: "812 B", "34.5 KiB", "12.0 MiB".
pub fn fmt_bytes(v: f64) -> String {
    let a = v.abs();
    if a < 10_240.0 {
        format!("{} B", fmt_int(v))
    } else if a < 1024.0 * 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else if a < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", v / 1024.0 / 1024.0 / 1024.0)
    }
}

/// Microseconds with a unit: "850 µs", "12.3 ms", "1.20 s".
pub fn fmt_us(v: f64) -> String {
    if v < 1000.0 {
        format!("{v:.0} µs")
    } else if v < 100_000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else if v < 1_000_000.0 {
        format!("{:.0} ms", v / 1000.0)
    } else {
        format!("{:.2} s", v / 1e6)
    }
}

/// A count for a short label: 100, 1k, 10k.
pub fn fmt_count(n: u64) -> String {
    if n >= 1000 && n % 1000 == 0 { format!("{}k", n / 1000) } else { n.to_string() }
}

/// A number with 3 significant digits.
pub fn fmt_sig(v: f64) -> String {
    if v.abs() < 1e-9 {
        return "0".into();
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    if v.abs() >= 1000.0 { fmt_int(v) } else { format!("{v:.digits$}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_int(1234567.4), "1,234,567");
        assert_eq!(fmt_int(-999.0), "-999");
        assert_eq!(fmt_bytes(512.0), "512 B");
        assert_eq!(fmt_bytes(20480.0), "20.0 KiB");
        assert_eq!(fmt_us(850.0), "850 µs");
        assert_eq!(fmt_us(12_345.0), "12.35 ms");
        assert_eq!(fmt_sig(0.01234), "0.0123");
        assert_eq!((fmt_count(100), fmt_count(10_000)), ("100".to_owned(), "10k".to_owned()));
    }
}
