//! Text form of vectors, compatible with pgvector: `[1,2.5,-3]`, white space around elements
//! tolerated. Free of pgrx; errors carry what the SQL layer needs to pick a SQLSTATE.

use std::fmt::Write;

/// Largest number of dimensions a stored vector can have (the header keeps it in a u16).
pub const MAX_DIM: usize = 65_535;

#[derive(Debug, Clone, PartialEq)]
pub enum VecError {
    /// Not a vector literal at all.
    Syntax,
    Empty,
    NaN,
    Infinite,
    /// A finite literal too large for the element type; carries the literal.
    OutOfRange(String),
    TooManyDims(usize),
    DimMismatch(usize, usize),
    /// (typmod, actual)
    TypmodMismatch(usize, usize),
    /// An arithmetic result that does not fit the element type.
    Overflow,
    /// A product of non-zero elements that rounds to zero in the element type.
    Underflow,
    NullElement,
    NotOneDimensional,
}

fn is_inf_literal(tok: &str) -> bool {
    let t = tok.trim_start_matches(['+', '-']).to_ascii_lowercase();
    t == "inf" || t == "infinity"
}

/// Parses one element; `max` is the largest finite magnitude of the element type.
pub fn parse_element(tok: &str, max: f32) -> Result<f32, VecError> {
    let v: f32 = tok.parse().map_err(|_| VecError::Syntax)?;
    if v.is_nan() {
        return Err(VecError::NaN);
    }
    if v.is_infinite() && is_inf_literal(tok) {
        return Err(VecError::Infinite);
    }
    if v.is_infinite() || v.abs() > max {
        return Err(VecError::OutOfRange(tok.to_string()));
    }
    Ok(v)
}

/// Checks one element coming from a number (array casts, arithmetic).
pub fn check_f64(x: f64, max: f32) -> Result<f32, VecError> {
    if x.is_nan() {
        Err(VecError::NaN)
    } else if x.is_infinite() {
        Err(VecError::Infinite)
    } else if x.abs() > max as f64 {
        let mut lit = String::new();
        write_number(&mut lit, x, x.abs());
        Err(VecError::OutOfRange(lit))
    } else {
        Ok(x as f32)
    }
}

/// Parses `[a, b, c]` into f32 values no larger in magnitude than `max`.
pub fn parse_vector(s: &str, max: f32) -> Result<Vec<f32>, VecError> {
    let inner = s.trim_matches(|c: char| c.is_ascii_whitespace()).strip_prefix('[').and_then(|r| r.strip_suffix(']')).ok_or(VecError::Syntax)?;
    if inner.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty() {
        return Err(VecError::Empty);
    }
    let mut out = Vec::new();
    for tok in inner.split(',') {
        let tok = tok.trim_matches(|c: char| c.is_ascii_whitespace());
        if tok.is_empty() {
            return Err(VecError::Syntax);
        }
        if out.len() == MAX_DIM {
            return Err(VecError::TooManyDims(inner.split(',').count()));
        }
        out.push(parse_element(tok, max)?);
    }
    Ok(out)
}

/// Writes a float the way PostgreSQL's float4out does: shortest round-trip digits, with an
/// exponent (`1e+20`, `1.5e-07`) outside 1e-4 ≤ |x| < 1e15.
pub fn write_element(out: &mut String, x: f32) {
    write_number(out, x, x.abs() as f64)
}

fn write_number<T: std::fmt::Display + std::fmt::LowerExp>(out: &mut String, x: T, a: f64) {
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        let s = format!("{x:e}");
        let (mant, exp) = s.split_once('e').expect("{:e} always has an exponent");
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let _ = write!(out, "{mant}e{sign}{digits:0>2}");
    } else {
        let _ = write!(out, "{x}");
    }
}

pub fn format_vector(values: impl Iterator<Item = f32>) -> String {
    let mut out = String::from("[");
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_element(&mut out, v);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    const M: f32 = f32::MAX;

    #[test]
    fn parses_pgvector_literals() {
        assert_eq!(parse_vector("[1,2.5,-3]", M).unwrap(), vec![1.0, 2.5, -3.0]);
        assert_eq!(parse_vector("  [ 1 , 2 ,3 ]  ", M).unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(parse_vector("[1e3,-.5,+4.]", M).unwrap(), vec![1000.0, -0.5, 4.0]);
    }

    #[test]
    fn rejects_bad_literals() {
        for bad in ["", "1,2", "[1,2", "1,2]", "[1,,2]", "[1,2,]", "[a]", "[1 2]", "[1]x", "[[1]]"] {
            assert_eq!(parse_vector(bad, M), Err(VecError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_vector("[]", M), Err(VecError::Empty));
        assert_eq!(parse_vector("[ ]", M), Err(VecError::Empty));
        assert_eq!(parse_vector("[1,NaN]", M), Err(VecError::NaN));
        assert_eq!(parse_vector("[inf]", M), Err(VecError::Infinite));
        assert_eq!(parse_vector("[-Infinity]", M), Err(VecError::Infinite));
        assert_eq!(parse_vector("[1e39]", M), Err(VecError::OutOfRange("1e39".into())));
        assert_eq!(parse_vector("[70000]", 65504.0), Err(VecError::OutOfRange("70000".into())));
    }

    #[test]
    fn dimension_limit_is_enforced() {
        let ok = format!("[{}]", vec!["1"; MAX_DIM].join(","));
        assert_eq!(parse_vector(&ok, M).unwrap().len(), MAX_DIM);
        let too_many = format!("[{}]", vec!["1"; MAX_DIM + 1].join(","));
        assert_eq!(parse_vector(&too_many, M), Err(VecError::TooManyDims(MAX_DIM + 1)));
    }

    #[test]
    fn formats_like_float4out_and_round_trips() {
        let v = [1.0f32, 2.5, -3.0, 0.1, 1e20, 1.5e-7, 123456.79, 0.0, -0.0];
        let s = format_vector(v.iter().copied());
        assert_eq!(s, "[1,2.5,-3,0.1,1e+20,1.5e-07,123456.79,0,-0]");
        assert_eq!(parse_vector(&s, M).unwrap(), v.to_vec());
        let mut seed = 7u64;
        for _ in 0..10_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let x = f32::from_bits((seed >> 32) as u32);
            if x.is_finite() {
                assert_eq!(parse_vector(&format_vector([x].into_iter()), M).unwrap()[0].to_bits(), x.to_bits());
            }
        }
    }
}
