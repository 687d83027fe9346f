use super::*;
use crate::model::Outcome;

fn result(outcome: Outcome, rtx: u32, total_ms: u64) -> ProbeResult {
    let mut r = crate::stats::tests::result(total_ms, outcome, std::time::UNIX_EPOCH);
    r.syn_retransmits = rtx;
    r
}

#[test]
fn every_telling_probe_is_kept_and_healthy_ones_at_one_percent() {
    let cfg = OtlpConfig::default();
    assert_eq!(cfg.healthy_sample_ratio, 0.01);
    // Whatever the draw, a failure, a lost SYN or a slow probe is kept.
    for draw in [0.0, 0.5, 0.999] {
        assert!(keep(&cfg, &result(Outcome::Refused, 0, 1), draw));
        assert!(keep(&cfg, &result(Outcome::Ok, 1, 1), draw));
        assert!(keep(&cfg, &result(Outcome::Ok, 0, 1000), draw));
    }
    // A healthy probe is kept only on a draw under the ratio.
    let healthy = result(Outcome::Ok, 0, 1);
    assert!(keep(&cfg, &healthy, 0.0099));
    assert!(!keep(&cfg, &healthy, 0.01));
    let kept = (0..10_000)
        .filter(|i| keep(&cfg, &healthy, f64::from(*i) / 10_000.0))
        .count();
    assert_eq!(kept, 100, "one in a hundred over an even spread of draws");
    assert!(
        !keep(&cfg, &result(Outcome::Ok, 0, 999), 0.5),
        "999 ms is under `slow`"
    );
}
