//! Operator overloads for `&Array` (`&a + &b`, `-&a`, ...). Like slice indexing they panic on
//! invalid input with the op's error message; the named ops return `Result`.

use crate::array::Array;
use crate::ops;
use std::ops::{Add, BitAnd, BitOr, BitXor, Div, Mul, Neg, Not, Rem, Sub};

macro_rules! binary_operator {
    ($($trait:ident $method:ident => $op:path),*) => {$(
        impl $trait<&Array> for &Array {
            type Output = Array;
            fn $method(self, rhs: &Array) -> Array {
                $op(self, rhs).unwrap_or_else(|e| panic!("{e}"))
            }
        }
        impl $trait<Array> for Array {
            type Output = Array;
            fn $method(self, rhs: Array) -> Array {
                $op(&self, &rhs).unwrap_or_else(|e| panic!("{e}"))
            }
        }
    )*};
}

binary_operator!(
    Add add => ops::add, Sub sub => ops::subtract, Mul mul => ops::multiply,
    Div div => ops::divide, Rem rem => ops::remainder, BitAnd bitand => ops::bitwise_and,
    BitOr bitor => ops::bitwise_or, BitXor bitxor => ops::bitwise_xor
);

impl Neg for &Array {
    type Output = Array;
    fn neg(self) -> Array {
        ops::negative(self).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Not for &Array {
    type Output = Array;
    fn not(self) -> Array {
        ops::bitwise_invert(self).unwrap_or_else(|e| panic!("{e}"))
    }
}
