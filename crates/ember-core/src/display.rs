//! NumPy-style printing: `array([[1, 2], [3, 4]], shape=(2, 2), dtype=int32)`. Printing
//! evaluates; large arrays are summarised with `...` keeping three items at each edge.

use crate::array::Array;
use crate::dtype::Dtype;
use std::fmt;

const SUMMARY_THRESHOLD: usize = 1000;
const EDGE_ITEMS: usize = 3;

impl fmt::Display for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = match self.to_vec::<f64>() {
            Ok(v) => v,
            Err(e) => return write!(f, "array(<error: {e}>)"),
        };
        let strings: Vec<String> = values.iter().map(|&v| format_value(v, self.dtype())).collect();
        let width = strings.iter().map(|s| s.len()).max().unwrap_or(0);
        let summarise = self.size() > SUMMARY_THRESHOLD;
        let mut body = String::new();
        write_nested(&mut body, &strings, self.shape(), width, summarise, 6);
        let shape = self.shape().iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let shape = if shape.len() == 1 {
            format!("({},)", shape[0])
        } else {
            format!("({})", shape.join(", "))
        };
        write!(f, "array({body}, shape={shape}, dtype={})", self.dtype())
    }
}

fn format_value(v: f64, dtype: Dtype) -> String {
    if dtype == Dtype::Bool {
        return if v != 0.0 { "True".into() } else { "False".into() };
    }
    if !dtype.is_float() {
        return format!("{}", v as i128);
    }
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else if v == v.trunc() && v.abs() < 1e16 {
        format!("{}.", v as i64)
    } else {
        let s = match dtype {
            Dtype::Float64 => format!("{v}"),
            _ => format!("{}", v as f32),
        };
        s
    }
}

/// Writes the nested brackets for `shape`; `indent` is the column of the first bracket.
fn write_nested(
    out: &mut String,
    vals: &[String],
    shape: &[usize],
    width: usize,
    summarise: bool,
    indent: usize,
) {
    if shape.is_empty() {
        out.push_str(&vals[0]);
        return;
    }
    let n = shape[0];
    let stride: usize = shape[1..].iter().product();
    out.push('[');
    let shown: Vec<Option<usize>> = if summarise && n > 2 * EDGE_ITEMS {
        (0..EDGE_ITEMS).map(Some).chain([None]).chain((n - EDGE_ITEMS..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    };
    for (k, item) in shown.iter().enumerate() {
        if k > 0 {
            if shape.len() == 1 {
                out.push_str(", ");
            } else {
                out.push(',');
                out.push_str(&"\n".repeat(shape.len() - 1));
                out.push_str(&" ".repeat(indent + 1));
            }
        }
        match item {
            None => out.push_str("..."),
            Some(i) if shape.len() == 1 => out.push_str(&format!("{:>width$}", vals[*i])),
            Some(i) => write_nested(
                out,
                &vals[i * stride..(i + 1) * stride],
                &shape[1..],
                width,
                summarise,
                indent + 1,
            ),
        }
    }
    out.push(']');
}
