//! Property tests for the parsers that read what others wrote: the config
//! file, target URLs (`dns://` queries included) and DNS replies. None may
//! panic on any input, and each keeps its promises on what it accepts.
//! Time-boxed: a fixed number of cases each, a few seconds in all.

use proptest::prelude::*;
use tailprobe::model::{ProbeKind, Target};
use tailprobe::probe::dns::{DnsAnswer, decode_answer, encode_query};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    }
}

/// Lines a configuration is made of: real keys with odd values, tables,
/// comments, garbage.
fn config_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "node",
        "interval",
        "timeout",
        "jitter",
        "syn_poll",
        "max_in_flight",
        "samples",
        "window",
        "max_queue",
        "url",
        "name",
        "first_byte_timeout",
        "endpoint_cidrs",
        "service_namespaces",
    ]);
    let value = prop_oneof![
        "\"[0-9]{1,15}(ns|ms|s|m|h|d|y)\"",
        "[0-9]{1,20}",
        "-?[0-9]{1,5}\\.[0-9]{1,5}(e[0-9]{1,3})?",
        "\"(http|tcp|dns|ftp)://[a-z0-9.:\\[\\]]{0,20}/[a-z?=&0-9]{0,20}\"",
        "\"[\\PC]{0,12}\"",
        "\\[\"[0-9./:a-f]{0,20}\"\\]",
        "(true|false)",
    ];
    prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        prop::sample::select(vec![
            "[probe]",
            "[server]",
            "[matrix]",
            "[detect]",
            "[otlp]",
            "[kubernetes]",
            "[[target]]",
            "[[slo]]",
        ])
        .prop_map(str::to_string),
        "# [\\PC]{0,30}",
        "[\\PC]{0,30}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_config_parser_never_panics_and_locates_its_errors(
        lines in prop::collection::vec(config_line(), 0..12)
    ) {
        let text = lines.join("\n");
        match tailprobe::config::parse("p.toml", &text) {
            Ok(loaded) => {
                // What check accepts, run can do: something to probe, and
                // every deadline within an hour.
                prop_assert!(!loaded.targets.is_empty() || loaded.config.kubernetes.is_some());
                for t in &loaded.targets {
                    prop_assert!(t.timeout <= std::time::Duration::from_secs(3600));
                    prop_assert!(!t.interval.is_zero());
                }
            }
            Err(e) => {
                let (line, column) = e.location().expect("a parse error is located");
                prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "{e}");
                prop_assert!(column >= 1, "{e}");
                prop_assert!(e.to_string().starts_with("p.toml:"), "{e}");
            }
        }
    }

    #[test]
    fn any_url_parses_or_says_why(url in "[\\PC]{0,60}") {
        if let Ok(t) = Target::parse("t", &url) {
            prop_assert!(!t.host.is_empty());
            prop_assert!(t.path.starts_with('/') || t.path.is_empty() || t.kind != ProbeKind::Http);
        }
    }

    #[test]
    fn dns_targets_keep_their_bounds(
        name in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}",
        timeout in "[0-9]{1,12}(ms|s|m|h)",
        attempts in "[0-9]{1,12}",
    ) {
        let url = format!("dns://10.96.0.10/{name}?timeout={timeout}&attempts={attempts}");
        match Target::parse("t", &url) {
            Ok(t) => match t.kind {
                ProbeKind::Dns(q) => {
                    prop_assert!((1..=10).contains(&q.attempts));
                    prop_assert!(q.attempt_timeout <= std::time::Duration::from_secs(60));
                    prop_assert!(!q.attempt_timeout.is_zero());
                    prop_assert_eq!(q.name, name);
                }
                _ => prop_assert!(false, "dns:// is a DNS probe"),
            },
            Err(e) => prop_assert!(e.contains(&url), "{e}"),
        }
    }

    #[test]
    fn the_dns_decoder_never_panics_on_any_reply(
        id in any::<u16>(),
        msg in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = decode_answer(id, &msg);
    }

    #[test]
    fn the_decoder_reads_back_what_the_encoder_asked(
        id in any::<u16>(),
        name in "[a-z0-9]{1,20}(\\.[a-z0-9]{1,20}){0,4}",
        answers in 0u16..5,
    ) {
        // A reply is the query with the response bit set and an answer count.
        let mut reply = encode_query(id, &name).unwrap();
        reply[2] |= 0x80;
        reply[6..8].copy_from_slice(&answers.to_be_bytes());
        prop_assert_eq!(
            decode_answer(id, &reply),
            Some(DnsAnswer::Answered { rcode: 0, answers })
        );
        prop_assert!(decode_answer(id.wrapping_add(1), &reply).is_none(), "another ID is not ours");
    }
}
