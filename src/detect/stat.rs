//! The statistics the detector needs, in log space so they hold for
//! thousands of probes and tiny probabilities: the binomial tail, Fisher's
//! exact test, and the shape of a ladder's rungs.

use std::collections::BTreeMap;

/// ln Γ(x) for x >= 1, the only arguments [`ln_choose`] passes: the
/// Lanczos approximation (g = 7, n = 9), accurate to about 1e-15 there.
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let a = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |a, (i, c)| a + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// P(X >= k) for X ~ Binomial(n, p).
pub fn binomial_tail(n: u64, k: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut total = 0.0;
    for i in k..=n {
        let term = (ln_choose(n, i) + i as f64 * lp + (n - i) as f64 * lq).exp();
        total += term;
        if term < total * 1e-16 {
            break;
        }
    }
    total.min(1.0)
}

/// One-sided Fisher exact test: the probability of `a` or more hits in the
/// first group of `n1` when `a + b` hits fall among `n1 + n2` trials at
/// random. Small means the first group has more hits than chance allows.
/// Every term is a possible table: from `x >= a` the second group's hits,
/// `hits - x`, are at most `b <= n2`.
pub fn fisher_greater(a: u64, n1: u64, b: u64, n2: u64) -> f64 {
    let (hits, n) = (a + b, n1 + n2);
    let denom = ln_choose(n, hits);
    (a..=hits.min(n1))
        .map(|x| (ln_choose(n1, x) + ln_choose(n2, hits - x) - denom).exp())
        .sum::<f64>()
        .min(1.0)
}

/// How a scope's lost SYNs are spread over the rungs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RungShape {
    /// The probes that lost SYNs lost the same number: a rule, a stale
    /// state or a timer, not chance.
    Deterministic,
    /// What independent loss gives: one lost SYN far more often than two,
    /// two more than three.
    Geometric,
}

/// The rung shape of `counts` (lost SYNs -> probes; give-ups count as
/// having lost every SYN, `all_lost`) among `judged` probes, or `None` when
/// the data cannot tell. Two models compete by likelihood:
/// - geometric: each SYN lost on its own with one probability (its
///   maximum-likelihood estimate);
/// - a point mass: a share of the probes loses exactly the dominant number
///   of SYNs, the rest none, with 5 % of the hits allowed elsewhere.
///
/// Deterministic when the point mass is 100 times likelier; geometric when
/// it is less than 3 times likelier.
pub fn rung_shape(counts: &BTreeMap<u32, u64>, judged: u64, all_lost: u32) -> Option<RungShape> {
    let hits: u64 = counts.values().sum();
    if hits < 2 || judged < hits {
        return None;
    }
    if counts.get(&all_lost) == Some(&judged) {
        // No SYN got through at all: a wall, not chance.
        return Some(RungShape::Deterministic);
    }
    let d = point_over_geometric(counts, judged, all_lost, hits);
    if d > 100f64.ln() {
        Some(RungShape::Deterministic)
    } else if d < 3f64.ln() {
        Some(RungShape::Geometric)
    } else {
        None
    }
}

/// ln of how much likelier the point mass makes `counts` than the
/// geometric model does (see [`rung_shape`]); `hits` is their sum, at least
/// 2 and at most `judged`, and not every probe gave up.
fn point_over_geometric(counts: &BTreeMap<u32, u64>, judged: u64, all_lost: u32, hits: u64) -> f64 {
    const IMPURITY: f64 = 0.05;
    let xlny = |x: f64, y: f64| if x == 0.0 { 0.0 } else { x * y.ln() };
    // Geometric: every SYN lost is a failure, every probe that got through
    // one success (a give-up had none).
    let lost: f64 = counts.iter().map(|(k, c)| f64::from(*k) * *c as f64).sum();
    let passed = (judged - counts.get(&all_lost).copied().unwrap_or(0)) as f64;
    let p = lost / (lost + passed);
    let geometric = xlny(lost, p) + xlny(passed, 1.0 - p);
    // Point mass: a probe is a hit with the hits' share; a hit lands on the
    // dominant rung, or, with the impurity, on any one of the others.
    let top = counts.values().copied().max().unwrap_or(0);
    let s = hits as f64 / judged as f64;
    let point = xlny((judged - hits) as f64, 1.0 - s)
        + xlny(top as f64, s * (1.0 - IMPURITY))
        + xlny(
            (hits - top) as f64,
            s * IMPURITY / f64::from(all_lost.max(2) - 1),
        );
    point - geometric
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9_f64.max(b.abs() * 1e-6)
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        // Γ(n + 1) = n!; Γ(1.5) = √π / 2.
        for (x, want) in [
            (1.0, 0.0),
            (2.0, 0.0),
            (5.0, 24f64.ln()),
            (11.0, 3_628_800f64.ln()),
            (1.5, (std::f64::consts::PI.sqrt() / 2.0).ln()),
        ] {
            assert!(close(ln_gamma(x), want), "ln Γ({x}) = {}", ln_gamma(x));
        }
        // 50 choose 25, and a choose as large as a day's probes give.
        assert!(close(ln_choose(50, 25), 126_410_606_437_752f64.ln()));
        assert!(close(ln_choose(100_000, 1), 100_000f64.ln()));
    }

    #[test]
    fn binomial_tail_matches_direct_sums() {
        assert!(close(binomial_tail(3, 1, 0.5), 0.875));
        assert!(close(binomial_tail(20, 2, 1e-4), 1.897_721_452_88e-6));
        assert!(close(binomial_tail(3, 3, 0.5), 0.125), "every trial a hit");
        assert_eq!(binomial_tail(10, 0, 0.3), 1.0);
        assert_eq!(binomial_tail(10, 11, 0.3), 0.0);
    }

    #[test]
    fn fisher_matches_a_known_table() {
        // The tea-tasting table: 3 of 4 versus 1 of 4, one-sided p = 17/70.
        assert!(close(fisher_greater(3, 4, 1, 4), 17.0 / 70.0));
        assert!(fisher_greater(20, 20, 0, 40) < 1e-15);
        assert!(close(fisher_greater(0, 20, 0, 40), 1.0));
        // 1 or more of 3 hits in the first half of 6: (9 + 9 + 1) / 20.
        assert!(close(fisher_greater(1, 3, 2, 3), 19.0 / 20.0));
        // More hits than the first group holds: only x = 2 is possible.
        assert!(close(fisher_greater(2, 2, 3, 4), 4.0 / 6.0));
    }

    fn shape(counts: &[(u32, u64)], judged: u64) -> Option<RungShape> {
        rung_shape(&counts.iter().copied().collect(), judged, 7)
    }

    #[test]
    fn the_likelihood_ratio_by_hand() {
        // 18 probes lost one SYN, 2 lost two, 1 gave up (7 SYNs) of 40.
        // Geometric: 29 SYNs lost, 39 got through, p = 29/68.
        // Point mass: 19 of 40 clean, 18 on the top rung, 3 elsewhere, the
        // impurity shared among the 6 other rungs.
        let s: f64 = 21.0 / 40.0;
        let geometric = 29.0 * (29.0f64 / 68.0).ln() + 39.0 * (39.0f64 / 68.0).ln();
        let point =
            19.0 * (19.0f64 / 40.0).ln() + 18.0 * (s * 0.95).ln() + 3.0 * (s * 0.05 / 6.0).ln();
        let counts = [(1, 18), (2, 2), (7, 1)].into_iter().collect();
        let d = point_over_geometric(&counts, 40, 7, 21);
        assert!(close(d, point - geometric), "{d}");
        assert!(close(d, 3.434_419_787_786), "{d}");
    }

    #[test]
    fn rung_shapes() {
        use RungShape::*;
        // Every probe on the 63 s rung; the same with one in ten escaping.
        assert_eq!(shape(&[(6, 13)], 13), Some(Deterministic));
        assert_eq!(shape(&[(6, 9)], 10), Some(Deterministic));
        // Rehashed: nearly all on the first rung, now and then a second.
        assert_eq!(shape(&[(1, 27), (2, 3)], 30), Some(Deterministic));
        // 30 % of probes losing exactly 3, none 1 or 2.
        assert_eq!(shape(&[(3, 18)], 60), Some(Deterministic));
        // 10 % random loss over 200 probes: 18 lost one, 2 lost two.
        assert_eq!(shape(&[(1, 18), (2, 2)], 200), Some(Geometric));
        // A few single losses among many: chance explains them.
        assert_eq!(shape(&[(1, 6)], 120), Some(Geometric));
        // 30 % losing exactly one: either could be it.
        assert_eq!(shape(&[(1, 18)], 60), None);
        assert_eq!(shape(&[(1, 1)], 60), None, "one hit says nothing");
        // Two are the fewest that can show a shape.
        assert_eq!(shape(&[(6, 2)], 2), Some(Deterministic));
        // More hits than probes judged: the counts are not of these probes.
        assert_eq!(shape(&[(6, 3)], 2), None);
        // Every SYN lost on every probe: a rule, not chance.
        assert_eq!(shape(&[(7, 10)], 10), Some(Deterministic));
        // One give-up beside two single losses in 20: no wall yet. A
        // give-up sent no SYN that passed, so it is not among the passes.
        assert_eq!(shape(&[(1, 2), (7, 1)], 20), None);
        // Many single losses and a few double: chance, once the 5 % of hits
        // the point mass allows elsewhere is shared among the other rungs.
        assert_eq!(shape(&[(1, 12), (2, 2)], 30), Some(Geometric));
    }
}
