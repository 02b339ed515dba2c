//! The element types kernels work on and the arithmetic each one has.
//!
//! Every dtype ember stores is a `Scalar`. Integer arithmetic wraps (as NumPy and MLX do);
//! half types compute through f32. Casting goes through the widest type of the target's kind,
//! so `cast` between any two types matches C `as` semantics (NumPy's `astype`).

use half::{bf16, f16};

/// An element type that kernels can compute with.
pub trait Scalar: Copy + Send + Sync + PartialOrd + PartialEq + Default + 'static {
    const IS_FLOAT: bool;
    const IS_SIGNED: bool;
    fn to_f64(self) -> f64;
    fn to_i64(self) -> i64;
    fn to_u64(self) -> u64;
    fn from_f64(v: f64) -> Self;
    fn from_i64(v: i64) -> Self;
    fn from_u64(v: u64) -> Self;
    fn zero() -> Self;
    fn one() -> Self;
    /// The identity of `max` (the smallest value, `-inf` for floats).
    fn lowest() -> Self;
    /// The identity of `min` (the largest value, `inf` for floats).
    fn highest() -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// Remainder with the sign of the divisor (Python's `%`).
    fn rem(self, o: Self) -> Self;
    /// Division rounded toward negative infinity (Python's `//`).
    fn floor_div(self, o: Self) -> Self;
    fn pow(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    fn sign(self) -> Self;
    fn is_nan(self) -> bool;
    /// `max` that propagates NaN, as MLX's `maximum` does.
    fn max_nan(self, o: Self) -> Self {
        if self.is_nan() || o.is_nan() {
            if self.is_nan() {
                self
            } else {
                o
            }
        } else if o > self {
            o
        } else {
            self
        }
    }
    /// `min` that propagates NaN.
    fn min_nan(self, o: Self) -> Self {
        if self.is_nan() || o.is_nan() {
            if self.is_nan() {
                self
            } else {
                o
            }
        } else if o < self {
            o
        } else {
            self
        }
    }
}

/// Converts between any two scalar types with NumPy `astype` semantics.
#[inline(always)]
pub fn cast<A: Scalar, B: Scalar>(a: A) -> B {
    if B::IS_FLOAT || A::IS_FLOAT {
        B::from_f64(a.to_f64())
    } else if A::IS_SIGNED {
        B::from_i64(a.to_i64())
    } else {
        B::from_u64(a.to_u64())
    }
}

macro_rules! int_scalar {
    ($t:ty, $signed:expr, $wide:ty) => {
        impl Scalar for $t {
            const IS_FLOAT: bool = false;
            const IS_SIGNED: bool = $signed;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self as u64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                // Through the wide type so that out-of-range values wrap like C, not saturate.
                if v.is_nan() {
                    0
                } else {
                    (v as $wide) as $t
                }
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            fn zero() -> Self {
                0
            }
            fn one() -> Self {
                1
            }
            fn lowest() -> Self {
                <$t>::MIN
            }
            fn highest() -> Self {
                <$t>::MAX
            }
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline(always)]
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            #[inline(always)]
            fn div(self, o: Self) -> Self {
                if o == 0 {
                    0
                } else {
                    self.wrapping_div(o)
                }
            }
            #[inline(always)]
            fn rem(self, o: Self) -> Self {
                if o == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(o);
                #[allow(unused_comparisons)]
                if r != 0 && ((r < 0) != (o < 0)) {
                    r.wrapping_add(o)
                } else {
                    r
                }
            }
            #[inline(always)]
            fn floor_div(self, o: Self) -> Self {
                if o == 0 {
                    return 0;
                }
                let q = self.wrapping_div(o);
                let r = self.wrapping_rem(o);
                #[allow(unused_comparisons)]
                if r != 0 && ((r < 0) != (o < 0)) {
                    q.wrapping_sub(1)
                } else {
                    q
                }
            }
            #[inline(always)]
            fn pow(self, o: Self) -> Self {
                #[allow(unused_comparisons)]
                if o < 0 {
                    return 0;
                }
                self.wrapping_pow(o as u32)
            }
            #[inline(always)]
            fn neg(self) -> Self {
                (0 as $t).wrapping_sub(self)
            }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn abs(self) -> Self {
                if self < 0 {
                    self.neg()
                } else {
                    self
                }
            }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn sign(self) -> Self {
                if self > 0 {
                    1
                } else if self < 0 {
                    (0 as $t).wrapping_sub(1)
                } else {
                    0
                }
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                false
            }
            #[inline(always)]
            fn max_nan(self, o: Self) -> Self {
                if o > self {
                    o
                } else {
                    self
                }
            }
            #[inline(always)]
            fn min_nan(self, o: Self) -> Self {
                if o < self {
                    o
                } else {
                    self
                }
            }
        }
    };
}

int_scalar!(u8, false, u64);
int_scalar!(u16, false, u64);
int_scalar!(u32, false, u64);
int_scalar!(u64, false, u64);
int_scalar!(i8, true, i64);
int_scalar!(i16, true, i64);
int_scalar!(i32, true, i64);
int_scalar!(i64, true, i64);

impl Scalar for bool {
    const IS_FLOAT: bool = false;
    const IS_SIGNED: bool = false;
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn to_u64(self) -> u64 {
        self as u64
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    fn from_u64(v: u64) -> Self {
        v != 0
    }
    fn zero() -> Self {
        false
    }
    fn one() -> Self {
        true
    }
    fn lowest() -> Self {
        false
    }
    fn highest() -> Self {
        true
    }
    fn add(self, o: Self) -> Self {
        self | o
    }
    fn sub(self, o: Self) -> Self {
        self ^ o
    }
    fn mul(self, o: Self) -> Self {
        self & o
    }
    fn div(self, o: Self) -> Self {
        self & o
    }
    fn rem(self, _o: Self) -> Self {
        false
    }
    fn floor_div(self, o: Self) -> Self {
        self & o
    }
    fn pow(self, o: Self) -> Self {
        self || !o
    }
    fn neg(self) -> Self {
        self
    }
    fn abs(self) -> Self {
        self
    }
    fn sign(self) -> Self {
        self
    }
    fn is_nan(self) -> bool {
        false
    }
}

macro_rules! float_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            const IS_FLOAT: bool = true;
            const IS_SIGNED: bool = true;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                if self < 0.0 {
                    (self as i64) as u64
                } else {
                    self as u64
                }
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            fn zero() -> Self {
                0.0
            }
            fn one() -> Self {
                1.0
            }
            fn lowest() -> Self {
                <$t>::NEG_INFINITY
            }
            fn highest() -> Self {
                <$t>::INFINITY
            }
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                self + o
            }
            #[inline(always)]
            fn sub(self, o: Self) -> Self {
                self - o
            }
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                self * o
            }
            #[inline(always)]
            fn div(self, o: Self) -> Self {
                self / o
            }
            #[inline(always)]
            fn rem(self, o: Self) -> Self {
                let r = self % o;
                if r != 0.0 && ((r < 0.0) != (o < 0.0)) {
                    r + o
                } else {
                    r
                }
            }
            #[inline(always)]
            fn floor_div(self, o: Self) -> Self {
                (self / o).floor()
            }
            #[inline(always)]
            fn pow(self, o: Self) -> Self {
                self.powf(o)
            }
            #[inline(always)]
            fn neg(self) -> Self {
                -self
            }
            #[inline(always)]
            fn abs(self) -> Self {
                self.abs()
            }
            #[inline(always)]
            fn sign(self) -> Self {
                if self > 0.0 {
                    1.0
                } else if self < 0.0 {
                    -1.0
                } else {
                    self
                }
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                self.is_nan()
            }
        }
    };
}

float_scalar!(f32);
float_scalar!(f64);

macro_rules! half_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            const IS_FLOAT: bool = true;
            const IS_SIGNED: bool = true;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self.to_f64()
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self.to_f32() as i64
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self.to_f32().to_u64()
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                <$t>::from_f64(v)
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                <$t>::from_f32(v as f32)
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                <$t>::from_f32(v as f32)
            }
            fn zero() -> Self {
                <$t>::ZERO
            }
            fn one() -> Self {
                <$t>::ONE
            }
            fn lowest() -> Self {
                <$t>::NEG_INFINITY
            }
            fn highest() -> Self {
                <$t>::INFINITY
            }
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32() + o.to_f32())
            }
            #[inline(always)]
            fn sub(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32() - o.to_f32())
            }
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32() * o.to_f32())
            }
            #[inline(always)]
            fn div(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32() / o.to_f32())
            }
            #[inline(always)]
            fn rem(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32().rem(o.to_f32()))
            }
            #[inline(always)]
            fn floor_div(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32().floor_div(o.to_f32()))
            }
            #[inline(always)]
            fn pow(self, o: Self) -> Self {
                <$t>::from_f32(self.to_f32().powf(o.to_f32()))
            }
            #[inline(always)]
            fn neg(self) -> Self {
                -self
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::from_f32(self.to_f32().abs())
            }
            #[inline(always)]
            fn sign(self) -> Self {
                <$t>::from_f32(self.to_f32().sign())
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                self.is_nan()
            }
        }
    };
}

half_scalar!(f16);
half_scalar!(bf16);

/// A floating-point type that unary math runs in natively (half types widen to f32 first).
pub trait Float: Scalar + num_like::FloatMath {}
impl Float for f32 {}
impl Float for f64 {}

/// A float storage type and the type it computes in.
pub trait FloatElem: Scalar {
    type Acc: Float;
    fn widen(self) -> Self::Acc;
    fn narrow(v: Self::Acc) -> Self;
}

/// f32 and f64 compute in themselves.
macro_rules! native_float_elem {
    ($($t:ty),*) => {$(
        impl FloatElem for $t {
            type Acc = $t;
            #[inline(always)]
            fn widen(self) -> $t { self }
            #[inline(always)]
            fn narrow(v: $t) -> Self { v }
        }
    )*};
}
native_float_elem!(f32, f64);

/// The half types compute in f32.
macro_rules! half_float_elem {
    ($($t:ty),*) => {$(
        impl FloatElem for $t {
            type Acc = f32;
            #[inline(always)]
            fn widen(self) -> f32 { self.to_f32() }
            #[inline(always)]
            fn narrow(v: f32) -> Self { <$t>::from_f32(v) }
        }
    )*};
}
half_float_elem!(f16, bf16);

/// Bitwise operations of the integer types and bool.
pub trait BitOps: Scalar {
    fn and(self, o: Self) -> Self;
    fn or(self, o: Self) -> Self;
    fn xor(self, o: Self) -> Self;
    fn not(self) -> Self;
    /// Shifts by `o` bits; shifting by the bit width or more gives 0 (or -1 for negative
    /// values shifted right), never undefined behaviour.
    fn shl(self, o: Self) -> Self;
    fn shr(self, o: Self) -> Self;
}

macro_rules! int_bits {
    ($($t:ty),*) => {$(
        impl BitOps for $t {
            #[inline(always)]
            fn and(self, o: Self) -> Self { self & o }
            #[inline(always)]
            fn or(self, o: Self) -> Self { self | o }
            #[inline(always)]
            fn xor(self, o: Self) -> Self { self ^ o }
            #[inline(always)]
            fn not(self) -> Self { !self }
            #[inline(always)]
            fn shl(self, o: Self) -> Self {
                let bits = <$t>::BITS as u64;
                let n = o.to_u64();
                if o.to_i64() < 0 || n >= bits { 0 } else { self << n }
            }
            #[inline(always)]
            fn shr(self, o: Self) -> Self {
                let bits = <$t>::BITS as u64;
                let n = o.to_u64();
                if o.to_i64() < 0 || n >= bits {
                    if self.to_i64() < 0 && <$t>::IS_SIGNED { self.sign() } else { 0 }
                } else {
                    self >> n
                }
            }
        }
    )*};
}
int_bits!(u8, u16, u32, u64, i8, i16, i32, i64);

impl BitOps for bool {
    fn and(self, o: Self) -> Self {
        self & o
    }
    fn or(self, o: Self) -> Self {
        self | o
    }
    fn xor(self, o: Self) -> Self {
        self ^ o
    }
    fn not(self) -> Self {
        !self
    }
    fn shl(self, o: Self) -> Self {
        self && !o
    }
    fn shr(self, o: Self) -> Self {
        self && !o
    }
}

/// The inverse error function, by Giles' single-precision approximation refined with two
/// Newton steps on `erf` so that f64 results are accurate too.
pub fn erfinv(y: f64) -> f64 {
    if y <= -1.0 {
        return if y == -1.0 { f64::NEG_INFINITY } else { f64::NAN };
    }
    if y >= 1.0 {
        return if y == 1.0 { f64::INFINITY } else { f64::NAN };
    }
    let w = -((1.0 - y) * (1.0 + y)).ln();
    let mut x = if w < 5.0 {
        let w = w - 2.5;
        let mut p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = c + p * w;
        }
        p * y
    } else {
        let w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = c + p * w;
        }
        p * y
    };
    // Newton: x -= (erf(x) - y) / erf'(x), erf'(x) = 2/sqrt(pi) * exp(-x^2).
    for _ in 0..2 {
        let err = libm::erf(x) - y;
        x -= err / (std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp());
    }
    x
}

/// The transcendental functions the unary kernels need, for f32 and f64.
pub mod num_like {
    pub trait FloatMath: Copy {
        fn exp(self) -> Self;
        fn exp_m1(self) -> Self;
        fn ln(self) -> Self;
        fn ln_1p(self) -> Self;
        fn log2(self) -> Self;
        fn log10(self) -> Self;
        fn sqrt(self) -> Self;
        fn sin(self) -> Self;
        fn cos(self) -> Self;
        fn tan(self) -> Self;
        fn asin(self) -> Self;
        fn acos(self) -> Self;
        fn atan(self) -> Self;
        fn atan2(self, o: Self) -> Self;
        fn sinh(self) -> Self;
        fn cosh(self) -> Self;
        fn tanh(self) -> Self;
        fn asinh(self) -> Self;
        fn acosh(self) -> Self;
        fn atanh(self) -> Self;
        fn floor(self) -> Self;
        fn ceil(self) -> Self;
        fn round_ties_even(self) -> Self;
        fn is_infinite(self) -> bool;
        fn is_finite(self) -> bool;
        fn erf(self) -> Self;
        fn erfinv(self) -> Self;
    }
    macro_rules! impl_math {
        ($t:ty) => {
            impl FloatMath for $t {
                fn exp(self) -> Self {
                    <$t>::exp(self)
                }
                fn exp_m1(self) -> Self {
                    <$t>::exp_m1(self)
                }
                fn ln(self) -> Self {
                    <$t>::ln(self)
                }
                fn ln_1p(self) -> Self {
                    <$t>::ln_1p(self)
                }
                fn log2(self) -> Self {
                    <$t>::log2(self)
                }
                fn log10(self) -> Self {
                    <$t>::log10(self)
                }
                fn sqrt(self) -> Self {
                    <$t>::sqrt(self)
                }
                fn sin(self) -> Self {
                    <$t>::sin(self)
                }
                fn cos(self) -> Self {
                    <$t>::cos(self)
                }
                fn tan(self) -> Self {
                    <$t>::tan(self)
                }
                fn asin(self) -> Self {
                    <$t>::asin(self)
                }
                fn acos(self) -> Self {
                    <$t>::acos(self)
                }
                fn atan(self) -> Self {
                    <$t>::atan(self)
                }
                fn atan2(self, o: Self) -> Self {
                    <$t>::atan2(self, o)
                }
                fn sinh(self) -> Self {
                    <$t>::sinh(self)
                }
                fn cosh(self) -> Self {
                    <$t>::cosh(self)
                }
                fn tanh(self) -> Self {
                    <$t>::tanh(self)
                }
                fn asinh(self) -> Self {
                    <$t>::asinh(self)
                }
                fn acosh(self) -> Self {
                    <$t>::acosh(self)
                }
                fn atanh(self) -> Self {
                    <$t>::atanh(self)
                }
                fn floor(self) -> Self {
                    <$t>::floor(self)
                }
                fn ceil(self) -> Self {
                    <$t>::ceil(self)
                }
                fn round_ties_even(self) -> Self {
                    <$t>::round_ties_even(self)
                }
                fn is_infinite(self) -> bool {
                    <$t>::is_infinite(self)
                }
                fn is_finite(self) -> bool {
                    <$t>::is_finite(self)
                }
                fn erf(self) -> Self {
                    libm::erf(self as f64) as $t
                }
                fn erfinv(self) -> Self {
                    super::erfinv(self as f64) as $t
                }
            }
        };
    }
    impl_math!(f32);
    impl_math!(f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_remainder_and_floor_division() {
        assert_eq!((-7i32).rem(3), 2);
        assert_eq!(7i32.rem(-3), -2);
        assert_eq!((-7i32).floor_div(2), -4);
        assert_eq!((-7.0f32).rem(3.0), 2.0);
        assert_eq!((-7.0f64).floor_div(2.0), -4.0);
        assert_eq!(7u8.floor_div(2), 3);
    }

    #[test]
    fn casts_follow_c_semantics() {
        assert_eq!(cast::<f32, i32>(-3.7), -3);
        assert_eq!(cast::<i32, u8>(300), 44);
        assert_eq!(cast::<f64, u8>(300.0), 44);
        assert_eq!(cast::<i8, u16>(-1), u16::MAX);
        assert!(cast::<f32, bool>(0.5));
        assert_eq!(cast::<u64, i64>(u64::MAX), -1);
        assert_eq!(cast::<f32, bf16>(1.5), bf16::from_f32(1.5));
    }

    #[test]
    fn erfinv_inverts_erf() {
        for y in [-0.999, -0.5, -0.1, 0.0, 0.3, 0.9, 0.99999] {
            assert!((libm::erf(erfinv(y)) - y).abs() < 1e-12, "{y}");
        }
        assert_eq!(erfinv(1.0), f64::INFINITY);
        assert!(erfinv(1.5).is_nan());
    }

    #[test]
    fn shifts_past_the_width_are_defined() {
        assert_eq!(1u8.shl(9), 0);
        assert_eq!((-8i32).shr(40), -1);
        assert_eq!(8i32.shr(40), 0);
        assert_eq!(3u16.shl(2), 12);
    }

    #[test]
    fn maximum_propagates_nan() {
        assert!(1.0f32.max_nan(f32::NAN).is_nan());
        assert!(f32::NAN.min_nan(1.0).is_nan());
        assert_eq!(3i8.max_nan(-4), 3);
    }
}
