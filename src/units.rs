//! Numbers for people: three significant digits and an SI prefix (`1.20 GMACs`, `22.7 M params`,
//! `90.9 MB`, `10.4 mJ`, `1.38 µgCO2e`). Machine-readable output (JSON) keeps the raw numbers.

const PREFIXES: [(f64, &str); 10] = [
    (1e15, "P"),
    (1e12, "T"),
    (1e9, "G"),
    (1e6, "M"),
    (1e3, "k"),
    (1.0, ""),
    (1e-3, "m"),
    (1e-6, "µ"),
    (1e-9, "n"),
    (1e-12, "p"),
];

/// `x` to three significant digits (`768`, `22.7`, `1.20`; `0` for zero; non-finite as Rust prints it).
pub fn sig3(x: f64) -> String {
    match x.abs() {
        a if !a.is_finite() => format!("{x}"),
        0.0 => "0".into(),
        a if a >= 99.95 => format!("{x:.0}"),
        a if a >= 9.995 => format!("{x:.1}"),
        _ => format!("{x:.2}"),
    }
}

/// The SI prefix and the scaled value of `x` (prefixes from pico to peta; no prefix for zero).
fn scaled(x: f64) -> (f64, &'static str) {
    let a = x.abs();
    if a == 0.0 || !a.is_finite() {
        return (x, "");
    }
    // Rounding to three digits may carry into the next prefix (999.96 -> 1.00 k).
    PREFIXES.iter().find(|(p, _)| a >= *p * 0.9995).map_or((x / 1e-12, "p"), |&(p, name)| (x / p, name))
}

/// `x` with an SI prefix glued to `unit`: `si(1.2e9, "MACs")` is `1.20 GMACs`, `si(9.09e7, "B")` is
/// `90.9 MB`, `si(0.0104, "J")` is `10.4 mJ`.
pub fn si(x: f64, unit: &str) -> String {
    let (v, p) = scaled(x);
    format!("{} {p}{unit}", sig3(v))
}

/// Three significant digits, or the whole number itself when nothing is scaled (`8`, not `8.00`).
fn digits(v: f64, prefix: &str) -> String {
    if prefix.is_empty() && v.fract() == 0.0 && v.abs() < 1e3 {
        format!("{v}")
    } else {
        sig3(v)
    }
}

/// A count with an SI prefix and no unit: `22.7 M`, `768`, `1.20 G`.
pub fn count(x: f64) -> String {
    let (v, p) = scaled(x);
    if p.is_empty() {
        digits(v, p)
    } else {
        format!("{} {p}", sig3(v))
    }
}

/// Bytes in decimal units: `90.9 MB`, `512 B`.
pub fn bytes(n: usize) -> String {
    let (v, p) = scaled(n as f64);
    format!("{} {p}B", digits(v, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_digits_and_prefixes() {
        assert_eq!(si(1.2e9, "MACs"), "1.20 GMACs");
        assert_eq!(count(22.7e6), "22.7 M");
        assert_eq!(count(768.0), "768");
        assert_eq!(count(0.0), "0");
        assert_eq!(count(1.0), "1");
        assert_eq!(bytes(8), "8 B");
        assert_eq!(si(2.5, "J"), "2.50 J");
        assert_eq!(si(1.7993, "gCO2e"), "1.80 gCO2e");
        assert_eq!(bytes(90_900_000), "90.9 MB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(si(0.010436, "J"), "10.4 mJ");
        assert_eq!(si(1.377e-6, "gCO2e"), "1.38 µgCO2e");
        assert_eq!(si(999_960.0, "B"), "1.00 MB");
        assert_eq!(si(-2.5e3, "W"), "-2.50 kW");
        assert_eq!(si(3e-12, "J"), "3.00 pJ");
    }
}
