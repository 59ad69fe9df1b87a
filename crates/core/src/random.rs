//! Seeded randomness for the routing policies: a small generator and the few distributions
//! Thompson sampling and power-of-two choices need.
//!
//! Written here rather than taken from `rand`: four distributions in a hundred lines, no
//! dependency, and a policy given the same seed makes the same choices on every platform, which
//! the tests and the routing benchmark ("same random seed for every policy") rely on.

/// xoshiro256++ (Blackman and Vigna): fast, 256 bits of state, good enough statistically for
/// sampling; not for secrets.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The state is filled from `seed` by SplitMix64, as the authors recommend.
    pub fn seeded(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        // Lemire's multiply-shift: unbiased enough for n far below 2^64.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Standard normal (Box-Muller; the second value of the pair is dropped for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang; shapes below 1 by the boost
    /// Gamma(a) = Gamma(a + 1) * U^(1/a).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let boost = self.uniform().max(f64::MIN_POSITIVE).powf(1.0 / shape);
            return self.gamma(shape + 1.0) * boost;
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Beta(a, b) from two gamma draws; `a` and `b` must be positive.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        if x + y == 0.0 { 0.5 } else { x / (x + y) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_var(mut draw: impl FnMut() -> f64) -> (f64, f64) {
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| draw()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        (mean, var)
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let mut a = Rng::seeded(7);
        let mut b = Rng::seeded(7);
        let mut c = Rng::seeded(8);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs, (0..8).map(|_| c.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn distributions_have_their_moments() {
        let mut r = Rng::seeded(1);
        let (m, v) = mean_var(|| r.uniform());
        assert!(
            (m - 0.5).abs() < 0.01 && (v - 1.0 / 12.0).abs() < 0.005,
            "{m} {v}"
        );
        let (m, v) = mean_var(|| r.normal());
        assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.03, "{m} {v}");
        for shape in [0.3, 1.0, 4.5] {
            let (m, v) = mean_var(|| r.gamma(shape));
            assert!((m - shape).abs() < 0.05 * shape.max(1.0), "{shape}: {m}");
            assert!((v - shape).abs() < 0.1 * shape.max(1.0), "{shape}: {v}");
        }
        let (a, b) = (3.0, 7.0);
        let (m, v) = mean_var(|| r.beta(a, b));
        let want_var = a * b / ((a + b).powi(2) * (a + b + 1.0));
        assert!(
            (m - 0.3).abs() < 0.01 && (v - want_var).abs() < 0.002,
            "{m} {v}"
        );
        let below: Vec<usize> = (0..10_000).map(|_| r.below(3)).collect();
        for k in 0..3 {
            let share = below.iter().filter(|&&x| x == k).count() as f64 / 10_000.0;
            assert!((share - 1.0 / 3.0).abs() < 0.03, "{k}: {share}");
        }
    }
}
