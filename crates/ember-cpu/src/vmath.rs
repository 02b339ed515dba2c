//! Vectorisable f32 transcendentals: `exp`, `tanh`, `sigmoid`, `log` and `erf` written as
//! straight-line arithmetic (range reduction, polynomials, selects instead of branches), so a
//! loop applying one of them over a slice compiles to SIMD code instead of a libm call per
//! element. Each is within a few ulp of the correctly rounded result (tests below check
//! against f64). `FMA` fuses the polynomial multiply-adds: only for code compiled with the
//! `fma` target feature, as `mul_add` is a slow library call elsewhere.

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// The polynomial with coefficients `c` (highest degree first) at `x`, by Horner's rule.
#[inline(always)]
fn horner<const FMA: bool, const N: usize>(x: f32, c: [f32; N]) -> f32 {
    c[1..].iter().fold(c[0], |p, &ci| madd::<FMA>(p, x, ci))
}

/// `2^k` for `k` in `[-150, 128]`, as two normal factors whose product rounds once.
#[inline(always)]
fn scale(p: f32, k: i32) -> f32 {
    let k1 = k >> 1;
    let s1 = f32::from_bits(((k1 + 127) << 23) as u32);
    let s2 = f32::from_bits(((k - k1 + 127) << 23) as u32);
    p * s1 * s2
}

/// `e^x`: Cody-Waite reduction by `ln 2` and Cephes' degree-6 polynomial (about 1 ulp).
#[inline(always)]
pub fn exp<const FMA: bool>(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer that then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-104.0, 88.75);
    let t = madd::<FMA>(xc, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = madd::<FMA>(n, -LN2_LO, madd::<FMA>(n, -LN2_HI, xc));
    let p = horner::<FMA, 6>(
        r,
        [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5],
    );
    let p = madd::<FMA>(p * r, r, r) + 1.0;
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let y = scale(p, k);
    if x > 88.722_84 {
        f32::INFINITY
    } else if x < -104.0 {
        0.0
    } else {
        y
    }
}

/// `tanh(x)`: the 13/6-degree rational interpolant of Eigen (also in MLAS and tract) on
/// `[-9, 9]`, outside of which `tanh` rounds to `±1`: no exponential and one division, about
/// half the work of `1 - 2 / (e^{2x} + 1)`. `clamp` keeps NaN.
#[inline(always)]
pub fn tanh<const FMA: bool>(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let p = horner::<FMA, 7>(
        x2,
        [
            -2.760_768_5e-16,
            2.000_188e-13,
            -8.604_672e-11,
            5.122_297e-8,
            1.485_722_4e-5,
            6.372_619_3e-4,
            4.893_524_6e-3,
        ],
    );
    let q = horner::<FMA, 4>(x2, [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3]);
    x * p / q
}

/// The logistic function `1 / (1 + e^-x)` (exact limits 0 and 1 far out).
#[inline(always)]
pub fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<FMA>(-x))
}

/// `ln(x)`: Cephes' reduction of the mantissa to `[sqrt(1/2) - 1, sqrt(2) - 1]` and a
/// degree-9 polynomial; subnormal inputs are scaled up first.
#[inline(always)]
pub fn log<const FMA: bool>(x: f32) -> f32 {
    let subnormal = x < f32::MIN_POSITIVE;
    let xs = if subnormal { x * 8_388_608.0 } else { x };
    let bits = xs.to_bits() as i32;
    // x = m * 2^e with m in [0.5, 1).
    let e = ((bits >> 23) & 0xff) - 126 - if subnormal { 23 } else { 0 };
    let m = f32::from_bits(((bits & 0x007f_ffff) | 0x3f00_0000) as u32);
    let low = m < std::f32::consts::FRAC_1_SQRT_2;
    let ef = (e - i32::from(low)) as f32;
    let m = if low { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let p = horner::<FMA, 9>(
        m,
        [
            7.037_683_6e-2,
            -1.151_461e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_8e-1,
            2.000_071_4e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ],
    );
    let mut y = p * m * z;
    y = madd::<FMA>(ef, -2.121_944_4e-4, y);
    y = madd::<FMA>(z, -0.5, y);
    let r = madd::<FMA>(ef, 0.693_359_4, m + y);
    if x == 0.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        x
    } else if x < 0.0 || x.is_nan() {
        f32::NAN
    } else {
        r
    }
}

/// The error function: Cephes' odd polynomial below 1, else `1 - erfc` with the Chebyshev
/// fit of Numerical Recipes (`erfc(z) = t e^{-z^2} e^{q(t)}`, `t = 1 / (1 + z/2)`), where
/// `e^{-z^2}` takes `z^2` split into a rounded part and its error so no precision is lost.
#[inline(always)]
pub fn erf<const FMA: bool>(x: f32) -> f32 {
    let s = x * x;
    let p = horner::<FMA, 7>(
        s,
        [
            7.853_861_4e-5,
            -8.010_193_6e-4,
            5.188_327_7e-3,
            -2.685_381_3e-2,
            1.128_358_5e-1,
            -3.761_262_6e-1,
            std::f32::consts::FRAC_2_SQRT_PI,
        ],
    );
    let small = p * x;
    let z = x.abs().min(10.0);
    let t = 1.0 / madd::<FMA>(0.5, z, 1.0);
    let q = horner::<FMA, 10>(
        t,
        [
            0.170_872_77,
            -0.822_152_23,
            1.488_515_9,
            -1.135_204,
            0.278_868_07,
            -0.186_288_06,
            0.096_784_18,
            0.374_091_96,
            1.000_023_7,
            -1.265_512_2,
        ],
    );
    let hi = z * z;
    let lo = if FMA { z.mul_add(z, -hi) } else { 0.0 };
    let erfc = t * exp::<FMA>(-hi) * (1.0 - lo) * exp::<FMA>(q);
    let big = (1.0 - erfc).copysign(x);
    if x.abs() < 1.0 || x.is_nan() {
        small
    } else {
        big
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance in units in the last place between `got` and the f64 reference.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        if got == w || (got.is_nan() && w.is_nan()) {
            return 0.0;
        }
        let ulp = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        (got as f64 - want).abs() / ulp
    }

    /// Max ulp error of `f` over a dense sweep of `[lo, hi]`, both FMA settings.
    fn max_ulps(f: [fn(f32) -> f32; 2], reference: fn(f64) -> f64, lo: f32, hi: f32) -> f64 {
        let n = 200_000;
        let mut worst: f64 = 0.0;
        for i in 0..=n {
            let x = lo + (hi - lo) * i as f32 / n as f32;
            for g in f {
                worst = worst.max(ulps(g(x), reference(x as f64)));
            }
        }
        worst
    }

    #[test]
    fn exp_is_within_two_ulps_and_overflows_like_libm() {
        assert!(max_ulps([exp::<false>, exp::<true>], f64::exp, -87.0, 88.7) <= 2.0);
        for x in [89.0f32, 1e30, f32::INFINITY] {
            assert_eq!(exp::<false>(x), f32::INFINITY);
        }
        assert_eq!(exp::<true>(-200.0), 0.0);
        assert_eq!(exp::<true>(f32::NEG_INFINITY), 0.0);
        assert!(exp::<true>(f32::NAN).is_nan());
        // Subnormal results keep their value.
        let sub = exp::<true>(-100.0) as f64;
        assert!((sub - (-100f64).exp()).abs() < 1e-45);
    }

    #[test]
    fn tanh_and_sigmoid_are_within_a_few_ulps() {
        // The rational tanh is worst (about 7 ulp, 4e-7 relative) just below 1.
        assert!(max_ulps([tanh::<false>, tanh::<true>], f64::tanh, -12.0, 12.0) <= 7.0);
        assert!(max_ulps([tanh::<false>, tanh::<true>], f64::tanh, -1e-3, 1e-3) <= 4.0);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        assert!(max_ulps([sigmoid::<false>, sigmoid::<true>], sig, -80.0, 30.0) <= 3.0);
        assert_eq!(tanh::<true>(100.0), 1.0);
        assert_eq!(tanh::<true>(-f32::INFINITY), -1.0);
        assert!(tanh::<true>(f32::NAN).is_nan());
        assert_eq!(sigmoid::<true>(-200.0), 0.0);
    }

    #[test]
    fn log_is_within_two_ulps_with_ieee_edge_cases() {
        assert!(max_ulps([log::<false>, log::<true>], f64::ln, 1e-3, 100.0) <= 2.0);
        assert!(max_ulps([log::<false>, log::<true>], f64::ln, 0.5, 2.0) <= 2.0);
        assert_eq!(log::<true>(0.0), f32::NEG_INFINITY);
        assert_eq!(log::<true>(f32::INFINITY), f32::INFINITY);
        assert!(log::<true>(-1.0).is_nan());
        assert!(log::<false>(f32::NAN).is_nan());
        let tiny = 1e-40f32; // subnormal
        assert!(ulps(log::<true>(tiny), (tiny as f64).ln()) <= 2.0);
    }

    #[test]
    fn erf_is_within_four_ulps() {
        let reference = |x: f64| libm::erf(x);
        assert!(max_ulps([erf::<false>, erf::<true>], reference, -5.0, 5.0) <= 4.0);
        assert_eq!(erf::<true>(1e30), 1.0);
        assert_eq!(erf::<true>(-f32::INFINITY), -1.0);
        assert!(erf::<true>(f32::NAN).is_nan());
    }
}
