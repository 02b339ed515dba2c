//! Data types, their sizes and names, MLX's type promotion, and the map from Rust element
//! types to dtypes.

use half::{bf16, f16};
use std::fmt;

/// The element type of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Float16,
    Bfloat16,
    Float32,
    Float64,
}

/// What kind of number a dtype holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Unsigned,
    Signed,
    Float,
}

impl Dtype {
    pub const ALL: [Dtype; 13] = [
        Dtype::Bool,
        Dtype::Uint8,
        Dtype::Uint16,
        Dtype::Uint32,
        Dtype::Uint64,
        Dtype::Int8,
        Dtype::Int16,
        Dtype::Int32,
        Dtype::Int64,
        Dtype::Float16,
        Dtype::Bfloat16,
        Dtype::Float32,
        Dtype::Float64,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        use Dtype::*;
        match self {
            Bool | Uint8 | Int8 => 1,
            Uint16 | Int16 | Float16 | Bfloat16 => 2,
            Uint32 | Int32 | Float32 => 4,
            Uint64 | Int64 | Float64 => 8,
        }
    }

    pub fn kind(self) -> Kind {
        use Dtype::*;
        match self {
            Bool => Kind::Bool,
            Uint8 | Uint16 | Uint32 | Uint64 => Kind::Unsigned,
            Int8 | Int16 | Int32 | Int64 => Kind::Signed,
            Float16 | Bfloat16 | Float32 | Float64 => Kind::Float,
        }
    }

    pub fn is_float(self) -> bool {
        self.kind() == Kind::Float
    }

    pub fn is_integer(self) -> bool {
        matches!(self.kind(), Kind::Signed | Kind::Unsigned)
    }

    /// MLX's name for the dtype (`float32`, `bfloat16`, ...).
    pub fn name(self) -> &'static str {
        use Dtype::*;
        match self {
            Bool => "bool",
            Uint8 => "uint8",
            Uint16 => "uint16",
            Uint32 => "uint32",
            Uint64 => "uint64",
            Int8 => "int8",
            Int16 => "int16",
            Int32 => "int32",
            Int64 => "int64",
            Float16 => "float16",
            Bfloat16 => "bfloat16",
            Float32 => "float32",
            Float64 => "float64",
        }
    }

    /// The float dtype an op that needs floats computes in (`exp` of an int array is float32).
    pub fn to_float(self) -> Dtype {
        if self.is_float() {
            self
        } else {
            Dtype::Float32
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The dtype of a binary op's result, as MLX's `promote_types`.
///
/// Same kind: the wider. Unsigned with signed: the signed type wide enough for both, and
/// float32 once uint64 is involved. Any int with a float: the float. float16 with bfloat16:
/// float32.
pub fn promote_types(a: Dtype, b: Dtype) -> Dtype {
    use Dtype::*;
    use Kind::{Float, Signed, Unsigned};
    if a == b {
        return a;
    }
    match (a.kind(), b.kind()) {
        (Kind::Bool, _) => b,
        (_, Kind::Bool) => a,
        (Float, Float) => match (a, b) {
            (Float16, Bfloat16) | (Bfloat16, Float16) => Float32,
            _ => {
                if a.size() >= b.size() {
                    a
                } else {
                    b
                }
            }
        },
        (Float, _) => a,
        (_, Float) => b,
        (Signed, Signed) | (Unsigned, Unsigned) => {
            if a.size() >= b.size() {
                a
            } else {
                b
            }
        }
        (Unsigned, Signed) => mixed_sign(a, b),
        (Signed, Unsigned) => mixed_sign(b, a),
    }
}

fn mixed_sign(unsigned: Dtype, signed: Dtype) -> Dtype {
    use Dtype::*;
    if unsigned == Uint64 {
        return Float32;
    }
    // The signed type must be strictly wider than the unsigned one.
    let need = (unsigned.size() * 2).max(signed.size());
    match need {
        1 => Int8,
        2 => Int16,
        4 => Int32,
        _ => Int64,
    }
}

/// A Rust type that is the element of some dtype.
pub trait Element: ember_cpu::Scalar + fmt::Debug {
    const DTYPE: Dtype;
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(
        impl Element for $t {
            const DTYPE: Dtype = Dtype::$d;
        }
    )*};
}
element!(bool => Bool, u8 => Uint8, u16 => Uint16, u32 => Uint32, u64 => Uint64, i8 => Int8,
    i16 => Int16, i32 => Int32, i64 => Int64, f16 => Float16, bf16 => Bfloat16, f32 => Float32,
    f64 => Float64);

/// Runs `$body` with `$T` bound to the Rust element type of `$dtype`.
#[macro_export]
macro_rules! dispatch {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::dispatch_among!($dtype, $T => $body, [
            Bool: bool, Uint8: u8, Uint16: u16, Uint32: u32, Uint64: u64,
            Int8: i8, Int16: i16, Int32: i32, Int64: i64,
            Float16: $crate::f16, Bfloat16: $crate::bf16, Float32: f32, Float64: f64
        ])
    };
}

/// Runs `$body` with `$T` bound to the Rust type of `$dtype` when it is one of the listed
/// `Variant: type` pairs, else `$fallback` with the dtype bound to `$other`.
#[doc(hidden)]
#[macro_export]
macro_rules! dispatch_among {
    ($dtype:expr, $T:ident => $body:expr, [$($variant:ident: $ty:ty),+ $(,)?]
        $(, $other:ident => $fallback:expr)?) => {{
        match $dtype {
            $($crate::Dtype::$variant => {
                type $T = $ty;
                $body
            })+
            $($other => $fallback,)?
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dtype::*;

    #[test]
    fn promotion_matches_mlx_table() {
        // Rows of MLX's promote_types table (mlx/dtype.cpp), spot-checked per kind pair.
        let cases = [
            (Bool, Int8, Int8),
            (Uint8, Int8, Int16),
            (Uint16, Int8, Int32),
            (Uint32, Int8, Int64),
            (Uint32, Int64, Int64),
            (Uint64, Int8, Float32),
            (Uint64, Int64, Float32),
            (Uint8, Int32, Int32),
            (Int32, Float16, Float16),
            (Int64, Bfloat16, Bfloat16),
            (Float16, Bfloat16, Float32),
            (Float16, Float32, Float32),
            (Bfloat16, Float64, Float64),
            (Uint8, Uint32, Uint32),
            (Int16, Int8, Int16),
            (Bool, Bool, Bool),
        ];
        for (a, b, want) in cases {
            assert_eq!(promote_types(a, b), want, "{a} + {b}");
            assert_eq!(promote_types(b, a), want, "{b} + {a}");
        }
    }

    #[test]
    fn promotion_is_commutative_everywhere() {
        for a in Dtype::ALL {
            for b in Dtype::ALL {
                assert_eq!(promote_types(a, b), promote_types(b, a));
            }
        }
    }
}
