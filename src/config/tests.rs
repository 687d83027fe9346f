use super::*;

fn err(text: &str) -> (usize, usize, String) {
    let e = parse("c.toml", text).unwrap_err();
    let (l, c) = e.location().expect("a located error");
    (l, c, e.to_string())
}

#[test]
fn the_documented_example_is_valid() {
    let text = include_str!("../../config.toml");
    let loaded = parse("config.toml", text).unwrap();
    assert!(!loaded.targets.is_empty());
    let p = &loaded.config.passive;
    assert!(!p.enabled && p.pod_netns.is_empty());
    assert_eq!(
        (p.max_destinations, p.interval.get()),
        (2048, std::time::Duration::from_secs(1))
    );
}

#[test]
fn passive_bounds_are_checked_where_written() {
    let target = "\n[[target]]\nname = \"x\"\nurl = \"http://127.0.0.1/\"\n";
    let (l, _, m) = err(&format!("[passive]\nmax_destinations = 4\n{target}"));
    assert_eq!(l, 2);
    assert!(
        m.contains("[passive] max_destinations = 4 is out of range"),
        "{m}"
    );
    let (l, _, m) = err(&format!(
        "[passive]\npod_netns = [\"run/netns/p1\"]\n{target}"
    ));
    assert_eq!(l, 2);
    assert!(m.contains("not an absolute path"), "{m}");
    let (l, _, m) = err(&format!("source_kind = \"passive-host\"\n{target}"));
    assert_eq!(l, 1);
    assert!(m.contains("passive vantages come from [passive]"), "{m}");
}

#[test]
fn unknown_keys_are_located_and_suggested() {
    let (l, c, m) = err("[probe]\ninterval = \"5s\"\ntimout = \"3s\"\n");
    assert_eq!((l, c), (3, 1));
    assert_eq!(
        m,
        "c.toml:3:1: unknown key \"timout\" in [probe]; did you mean \"timeout\"?"
    );
    let (l, _, m) = err(
        "node = \"a\"\n\n[[target]]\nname = \"x\"\nurl = \"http://127.0.0.1/\"\nnoed = \"n\"\n",
    );
    assert_eq!(l, 6);
    assert!(m.contains("in [target]; did you mean \"node\"?"), "{m}");
}

#[test]
fn bad_values_are_located() {
    let (l, c, m) = err("[probe]\ntimeout = \"75x\"\n");
    assert_eq!((l, c), (2, 11));
    assert!(
        m.contains("invalid duration \"75x\"") && m.contains("such as \"75s\""),
        "{m}"
    );
    let (l, _, m) = err("[probe]\ntimeout = 75\n");
    assert_eq!(l, 2);
    assert!(m.contains("\"75s\""), "{m}");
    let (l, c, m) = err("[[target]]\nname = \"a\"\nurl = \"ftp://x/\"\n");
    assert_eq!((l, c), (3, 7));
    assert!(m.contains("https://"), "{m}");
}

#[test]
fn tls_fields_are_checked_where_they_are_written() {
    let t = "[[target]]\nname = \"a\"\n";
    // An unreadable CA file fails the check, at its line.
    let (l, c, m) = err(&format!(
        "{t}url = \"https://x/\"\nca_file = \"/nonexistent/ca.pem\"\n"
    ));
    assert_eq!((l, c), (4, 11));
    assert!(
        m.contains("cannot read the CA file /nonexistent/ca.pem"),
        "{m}"
    );
    // TLS settings on a plain-HTTP target are a mistake, not ignored.
    let (l, _, m) = err(&format!(
        "{t}url = \"http://x/\"\nserver_name = \"x.example\"\n"
    ));
    assert_eq!(l, 4);
    assert!(m.contains("applies to https:// targets only"), "{m}");
    let (l, _, m) = err(&format!(
        "{t}url = \"https://x/\"\nclient_cert = \"/etc/c.pem\"\n"
    ));
    assert_eq!(l, 4);
    assert!(m.contains("client_cert and client_key go together"), "{m}");
    let loaded = parse(
        "c.toml",
        &format!("{t}url = \"https://10.96.0.1/readyz\"\nserver_name = \"kubernetes.default.svc\"\ntls_timeout = \"3s\"\n"),
    )
    .unwrap();
    let (l, _, m) = err(&format!(
        "{t}url = \"http://10.0.0.1/\"\nall_addresses = true\n"
    ));
    assert_eq!(l, 4);
    assert!(m.contains("all_addresses needs a host name"), "{m}");
    let target = &loaded.targets[0];
    assert_eq!(
        (
            target.tls.as_ref().unwrap().server_name.as_str(),
            target.tls_timeout
        ),
        ("kubernetes.default.svc", std::time::Duration::from_secs(3))
    );
}

#[test]
fn duplicate_target_names_point_at_the_second() {
    let text = "[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\n[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\n";
    let (l, c, m) = err(text);
    assert_eq!((l, c), (5, 8));
    assert!(m.contains("used twice"), "{m}");
}

#[test]
fn syntax_errors_are_located() {
    let (l, _, m) = err("[probe\n");
    assert_eq!(l, 1);
    assert!(m.starts_with("c.toml:1:"), "{m}");
}

#[test]
fn defaults_fill_targets() {
    let loaded = parse(
        "c.toml",
        "[probe]\ntimeout = \"20s\"\nconnect_timeout = \"5s\"\n[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:81/\"\ninterval = \"250ms\"\n",
    )
    .unwrap();
    let t = &loaded.targets[0];
    assert_eq!(t.timeout, std::time::Duration::from_secs(20));
    assert_eq!(t.connect_timeout, std::time::Duration::from_secs(5));
    assert_eq!(t.interval, std::time::Duration::from_millis(250));
    assert_eq!(t.node, crate::model::TargetNode::Unknown);
}

#[test]
fn node_comes_from_the_key_first() {
    let loaded = parse(
        "c.toml",
        "node = \"node2\"\n[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:81/\"\n",
    )
    .unwrap();
    assert_eq!(loaded.node(), "node2");
}

#[test]
fn kubernetes_table_is_checked_and_located() {
    let loaded = parse(
        "c.toml",
        "[kubernetes]\nservice_selector = \"team=payments\"\nremote_nodes_per_round = 8\n",
    )
    .unwrap();
    let k = loaded.config.kubernetes.unwrap();
    assert_eq!(k.remote_nodes_per_round, 8);
    assert_eq!(k.node_service_port, 80);
    let (l, c, m) = err("[kubernetes]\nservice_selector = \"team=pay ments\"\n");
    assert_eq!((l, c), (2, 20));
    assert!(m.contains("not a label value"), "{m}");
    let (l, c, m) = err("\n[kubernetes]\nremote_nodes_per_round = 0\n");
    assert_eq!((l, c), (3, 26), "at the value");
    assert!(
        m.contains("remote_nodes_per_round = 0 is out of range"),
        "{m}"
    );
    let (l, _, m) = err("[kubernetes]\nfull_mesh_max_node = 3\n");
    assert_eq!(l, 2);
    assert!(m.contains("did you mean \"full_mesh_max_nodes\""), "{m}");
}

/// A target, so a table under test is the only thing wrong.
const TARGET: &str = "[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:81/\"\n";

#[test]
fn what_run_cannot_do_is_refused_by_check_with_the_reason() {
    // (configuration, line, what the message must say)
    let cases: &[(String, usize, &str)] = &[
        ("".into(), 1, "names nothing to probe"),
        ("# only a comment\n".into(), 1, "names nothing to probe"),
        (
            "[hub]\nprobers = [\"10.0.0.5:9797\"]\n".into(),
            2,
            "prober \"10.0.0.5:9797\" is not a base URL",
        ),
        (
            "[hub]\nprobers = [\"http://a:9797\"]\ninterval = \"2s\"\ntimeout = \"5s\"\n".into(),
            4,
            "at most [hub] interval",
        ),
        (
            "[hub]\nprobers = [\"http://a:9797\"]\nforget_after = \"1s\"\n".into(),
            3,
            "at least one round",
        ),
        (
            format!("{TARGET}[ui]\ntrace_url = \"http://jaeger/trace/\"\n"),
            TARGET.lines().count() + 2,
            "with {trace_id} in it",
        ),
        (
            format!("[probe]\ntimeout = \"300000000000y\"\n{TARGET}"),
            2,
            "longer than a year",
        ),
        (
            format!("[probe]\ntimeout = \"2h\"\n{TARGET}"),
            2,
            "timeout = \"2h\" is out of range",
        ),
        (
            format!("[probe]\ninterval = \"1ns\"\n{TARGET}"),
            2,
            "write \"1ms\" to \"1h\"",
        ),
        (
            format!("[probe]\nsyn_poll = \"0s\"\n{TARGET}"),
            2,
            "below 10 ms it only burns CPU",
        ),
        (
            format!("[probe]\nmax_in_flight = 0\n{TARGET}"),
            2,
            "max_in_flight = 0 is out of range",
        ),
        (
            format!("[probe]\nsyn_retries = 200\n{TARGET}"),
            2,
            "TCP_SYNCNT from 1 to 127",
        ),
        (
            format!("[detect]\nwindow = \"300d\"\n{TARGET}"),
            2,
            "[detect] window",
        ),
        (
            format!("[detect]\ninterval = \"1ms\"\n{TARGET}"),
            2,
            "[detect] interval",
        ),
        (
            format!("[detect]\nbackground_syn_loss = 1.5\n{TARGET}"),
            2,
            "above 0 and below 1",
        ),
        (
            format!("[otlp]\nmax_queue = 100000000000000\n{TARGET}"),
            2,
            "max_queue",
        ),
        (
            format!("[otlp]\nhealthy_sample_ratio = 2.0\n{TARGET}"),
            2,
            "from 0 to 1",
        ),
        (format!("[matrix]\nsamples = 0\n{TARGET}"), 2, "samples = 0"),
        (
            format!("node = \"a\\u0000b\"\n{TARGET}"),
            1,
            "no spaces or control characters",
        ),
        (
            format!("{TARGET}timeout = \"90m\"\n"),
            4,
            "[[target]] number 1 timeout",
        ),
        (
            format!(
                "{TARGET}[[target]]\nname = \"b\"\nurl = \"dns://10.96.0.10/x?attempts=4000000000\"\n"
            ),
            6,
            "attempts",
        ),
    ];
    for (text, line, says) in cases {
        let (l, _, m) = err(text);
        assert!(m.contains(says), "{text:?}: {m}");
        assert_eq!(l, *line, "{text:?}: {m}");
    }
}

#[test]
fn a_comment_that_names_the_key_does_not_move_the_error() {
    let text =
        format!("# max_in_flight is the probes in flight\n\n[probe]\nmax_in_flight = 0\n{TARGET}");
    let (l, c, _) = err(&text);
    assert_eq!((l, c), (4, 17));
}

#[test]
fn valid_status_codes_take_classes_codes_and_ranges() {
    let loaded = parse(
        "c.toml",
        "[probe]\nvalid_status_codes = [\"2xx\", \"301\"]\n\
         [[target]]\nname = \"a\"\nurl = \"http://127.0.0.1:81/\"\n\
         [[target]]\nname = \"b\"\nurl = \"http://127.0.0.1:82/\"\nvalid_status_codes = [\"200-204\"]\n",
    )
    .unwrap();
    let (a, b) = (&loaded.targets[0], &loaded.targets[1]);
    assert!(a.status_ok(204) && a.status_ok(301) && !a.status_ok(302));
    assert!(b.status_ok(204) && !b.status_ok(205) && !b.status_ok(301));
    let (l, _, m) = err(&format!(
        "[probe]\nvalid_status_codes = [\"6xx\"]\n{TARGET}"
    ));
    assert_eq!(l, 2);
    assert!(m.contains("a class like \"2xx\""), "{m}");
    let (_, _, m) = err(&format!("[probe]\nvalid_status_codes = []\n{TARGET}"));
    assert!(m.contains("no probe could end ok"), "{m}");
}

#[test]
fn metrics_and_ui_tables_are_checked_and_located() {
    let t = "[[target]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\n";
    let loaded = parse(
        "c.toml",
        &format!(
            "[metrics]\nphases = [\"connect\", \"total\"]\nbuckets = \"fine\"\nper = \"path\"\n{t}"
        ),
    )
    .unwrap();
    let m = &loaded.config.metrics;
    assert_eq!(m.phases, [MetricPhase::Connect, MetricPhase::Total]);
    assert_eq!((m.buckets, m.per), (Buckets::Fine, Grain::Path));
    let (l, _, m) = err(&format!("[metrics]\nbuckets = \"all\"\n{t}"));
    assert_eq!(l, 2);
    assert!(m.contains("rungs") && m.contains("none"), "{m}");
    let (l, _, m) = err(&format!("[metrics]\nphases = [\"connect\", \"ssl\"]\n{t}"));
    assert_eq!(l, 2);
    assert!(m.contains("first_byte"), "{m}");
    // A comment naming the key above the table does not take the error.
    let (l, c, m) = err(&format!(
        "# runbook_base = \"x\"\n[ui]\nrunbook_base = \"README.md#kubernetes\"\n{t}"
    ));
    assert_eq!((l, c), (3, 16));
    assert!(m.contains("without a #fragment"), "{m}");
}
