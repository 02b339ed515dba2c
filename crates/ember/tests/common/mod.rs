//! Test helpers: fixtures written by scripts/fixtures/*.py (NumPy as the reference), arrays
//! built from them, and closeness checks.
#![allow(dead_code)]

use ember::prelude::*;
use serde_json::Value;

/// One stored array.
#[derive(Debug, Clone)]
pub struct Stored {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub data: Vec<f64>,
}

pub fn dtype_from_name(name: &str) -> Dtype {
    Dtype::ALL.into_iter().find(|d| d.name() == name).unwrap_or_else(|| panic!("dtype {name}"))
}

impl Stored {
    pub fn from_json(v: &Value) -> Stored {
        let shape =
            v["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        let dtype = dtype_from_name(v["dtype"].as_str().unwrap());
        let data = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| match x {
                Value::Bool(b) => *b as u8 as f64,
                Value::Number(n) => n.as_f64().unwrap(),
                Value::String(s) => match s.as_str() {
                    "nan" => f64::NAN,
                    "inf" => f64::INFINITY,
                    "-inf" => f64::NEG_INFINITY,
                    other => panic!("bad number {other}"),
                },
                other => panic!("bad element {other}"),
            })
            .collect();
        Stored { shape, dtype, data }
    }

    /// The array, built exactly for integer dtypes (values fit f64 in the fixtures).
    pub fn array(&self) -> Array {
        let x = Array::from_slice(&self.data, &self.shape).unwrap();
        x.astype(self.dtype).unwrap()
    }
}

/// All cases of `tests/fixtures/<name>.json`.
pub fn fixture(name: &str) -> serde_json::Map<String, Value> {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    match serde_json::from_str(&text).unwrap() {
        Value::Object(m) => m,
        _ => panic!("{path}: not an object"),
    }
}

pub fn args(case: &Value) -> Vec<Array> {
    case["args"].as_array().unwrap().iter().map(|v| Stored::from_json(v).array()).collect()
}

pub fn expected(case: &Value) -> Stored {
    Stored::from_json(&case["expected"])
}

/// Asserts shape, dtype and values (NaNs must match; |a - e| <= atol + rtol * |e|).
pub fn assert_matches(what: &str, actual: &Array, expected: &Stored, rtol: f64, atol: f64) {
    assert_eq!(actual.shape(), &expected.shape[..], "{what}: shape");
    assert_eq!(actual.dtype(), expected.dtype, "{what}: dtype");
    let got = actual.to_vec::<f64>().unwrap();
    for (i, (&g, &e)) in got.iter().zip(&expected.data).enumerate() {
        let ok = (g.is_nan() && e.is_nan()) || g == e || (g - e).abs() <= atol + rtol * e.abs();
        assert!(ok, "{what}: element {i}: got {g}, expected {e}");
    }
}

/// Tolerances suited to a dtype's precision.
pub fn tolerance(dtype: Dtype) -> (f64, f64) {
    match dtype {
        Dtype::Float16 => (2e-3, 2e-3),
        Dtype::Bfloat16 => (1.6e-2, 1.6e-2),
        Dtype::Float32 => (2e-6, 1e-6),
        Dtype::Float64 => (1e-12, 1e-12),
        _ => (0.0, 0.0),
    }
}
