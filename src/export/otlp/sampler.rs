//! Which probe traces are kept, and how `OTEL_TRACES_SAMPLER` bears on it.
//!
//! A probe's span is built after the probe ends, so tailprobe samples on
//! the outcome (tail sampling): every failed, slow or SYN-retransmitting
//! probe is kept, the evidence a finding links to; healthy probes at a
//! ratio. The SDK's own sampler, which decides before anything is known,
//! is set to keep everything tailprobe hands it. `OTEL_TRACES_SAMPLER` is
//! honoured as the operator's word on volume:
//!
//! - `always_off` (or `parentbased_always_off`): no probe traces at all;
//!   metrics and alert records still go out, alerts then without a trace.
//! - `always_on` (or `parentbased_always_on`): every probe's trace.
//! - `traceidratio` (or `parentbased_traceidratio`) with
//!   `OTEL_TRACES_SAMPLER_ARG`: healthy probes at that ratio, in place of
//!   `[otlp] healthy_sample_ratio`; telling probes are still all kept,
//!   since a ratio that dropped them would drop the evidence.
//!
//! Probe spans have no parent, so a `parentbased_*` sampler is its root
//! sampler. Other samplers (`jaeger_remote`, `xray`) are not built in: a
//! warning says so and the `[otlp]` ratio stands.

/// The decision's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// No probe traces.
    Off,
    /// Every probe's trace.
    Every,
    /// Telling probes always, healthy ones at this ratio.
    Healthy(f64),
}

impl Sampling {
    /// From `OTEL_TRACES_SAMPLER` and its argument, read through `var`;
    /// `ratio` is `[otlp] healthy_sample_ratio`. The warning, when there is
    /// one, says what was not understood and what was done instead.
    pub fn from_env(ratio: f64, var: &dyn Fn(&str) -> Option<String>) -> (Self, Option<String>) {
        let Some(name) = var("OTEL_TRACES_SAMPLER") else {
            return (Sampling::Healthy(ratio), None);
        };
        let root = name.trim().to_ascii_lowercase();
        let root = root.strip_prefix("parentbased_").unwrap_or(&root);
        match root {
            "always_off" => (Sampling::Off, None),
            "always_on" => (Sampling::Every, None),
            "traceidratio" => {
                let arg = var("OTEL_TRACES_SAMPLER_ARG");
                match arg.as_deref().map(|a| a.trim().parse::<f64>()) {
                    None => (Sampling::Healthy(1.0), None),
                    Some(Ok(r)) if (0.0..=1.0).contains(&r) => (Sampling::Healthy(r), None),
                    _ => (
                        Sampling::Healthy(1.0),
                        Some(format!(
                            "OTEL_TRACES_SAMPLER_ARG={} is not a ratio from 0 to 1; sampling healthy probes at 1.0, as the specification's default",
                            arg.unwrap_or_default()
                        )),
                    ),
                }
            }
            other => (
                Sampling::Healthy(ratio),
                Some(format!(
                    "OTEL_TRACES_SAMPLER={other} is not built in (always_on, always_off, traceidratio and their parentbased_ forms are); keeping telling probes and healthy ones at [otlp] healthy_sample_ratio {ratio}"
                )),
            ),
        }
    }

    /// Whether a probe's trace is kept: `telling` is a failed, slow or
    /// SYN-retransmitting probe, `draw` uniform in [0, 1).
    pub fn keep(self, telling: bool, draw: f64) -> bool {
        match self {
            Sampling::Off => false,
            Sampling::Every => true,
            Sampling::Healthy(r) => telling || draw < r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(vars: &[(&str, &str)]) -> (Sampling, Option<String>) {
        let var = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        Sampling::from_env(0.01, &var)
    }

    #[test]
    fn the_sampler_variable_is_the_operators_word_on_volume() {
        assert_eq!(sampling(&[]), (Sampling::Healthy(0.01), None));
        assert_eq!(
            sampling(&[("OTEL_TRACES_SAMPLER", "always_off")]).0,
            Sampling::Off
        );
        assert_eq!(
            sampling(&[("OTEL_TRACES_SAMPLER", "parentbased_always_on")]).0,
            Sampling::Every
        );
        assert_eq!(
            sampling(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25")
            ])
            .0,
            Sampling::Healthy(0.25)
        );
        // No argument: the specification's default ratio, 1.0, said nothing.
        assert_eq!(
            sampling(&[("OTEL_TRACES_SAMPLER", "traceidratio")]),
            (Sampling::Healthy(1.0), None)
        );
        let (s, warn) = sampling(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        assert_eq!(s, Sampling::Healthy(1.0));
        assert!(warn.unwrap().contains("not a ratio"));
        let (s, warn) = sampling(&[("OTEL_TRACES_SAMPLER", "xray")]);
        assert_eq!(s, Sampling::Healthy(0.01));
        assert!(warn.unwrap().contains("xray is not built in"));
    }

    #[test]
    fn telling_probes_survive_every_ratio_but_off() {
        for s in [Sampling::Healthy(0.0), Sampling::Every] {
            assert!(s.keep(true, 0.99));
        }
        assert!(!Sampling::Off.keep(true, 0.0));
        assert!(!Sampling::Healthy(0.25).keep(false, 0.25));
        assert!(Sampling::Healthy(0.25).keep(false, 0.2499));
        assert!(Sampling::Every.keep(false, 0.99));
    }
}
