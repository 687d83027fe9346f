//! The fake API server holds tailprobe to what the real one does, through
//! kube's own client: lists come in pages, an object leaving a watch's
//! selector is DELETED there, bookmarks arrive, an owner reference a field
//! manager stops applying goes, and RBAC refuses what it does not grant.

mod fake_kube;

use std::time::Duration;

use fake_kube::{FakeApi, Rule};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::json;

const NS: &str = "tailprobe";

async fn client(api: &FakeApi, token: &str) -> kube::Client {
    tailprobe::install_crypto();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&api.kubeconfig_as(token)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn service(name: &str, probe: bool) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS,
            "labels": {"tailprobe.io/probe": probe.to_string()}},
        "spec": {"ports": [{"port": 80}]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_and_watches_follow_their_selector() {
    let api = FakeApi::start().await;
    for i in 0..5 {
        api.put("services", service(&format!("s{i}"), true));
    }
    let services: Api<Service> = Api::namespaced(client(&api, "test").await, NS);
    let page = services
        .list(&ListParams::default().limit(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = services
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 3);
    assert_eq!(
        rest.metadata.resource_version, page.metadata.resource_version,
        "pages of one list share its resourceVersion"
    );

    // A watch on the selector: s0 leaving it is DELETED there, s9 entering
    // it is ADDED, and a bookmark (asked for by default) comes while
    // nothing happens.
    let rv = page.metadata.resource_version.unwrap();
    let mut events = services
        .watch(
            &WatchParams::default().labels("tailprobe.io/probe=true"),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    api.put("services", service("s0", false));
    api.put("services", service("s9", false));
    api.put("services", service("s9", true));
    let mut seen = Vec::new();
    let mut bookmark = false;
    while seen.len() < 2 || !bookmark {
        let e = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("events within 5 s")
            .unwrap()
            .unwrap();
        match e {
            WatchEvent::Added(s) => seen.push(format!("added {}", s.metadata.name.unwrap())),
            WatchEvent::Deleted(s) => seen.push(format!("deleted {}", s.metadata.name.unwrap())),
            WatchEvent::Modified(s) => seen.push(format!("modified {}", s.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => bookmark = true,
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(seen, ["deleted s0", "added s9"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_reference_no_longer_applied_goes() {
    let api = FakeApi::start().await;
    let services: Api<Service> = Api::namespaced(client(&api, "test").await, NS);
    let owned = |uids: &[&str]| {
        let refs: Vec<_> = uids
            .iter()
            .map(|u| json!({"apiVersion": "v1", "kind": "Pod", "name": u, "uid": u}))
            .collect();
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "n", "namespace": NS, "ownerReferences": refs},
            "spec": {"ports": [{"port": 80}]}})
    };
    let apply = |manager: &'static str, body: serde_json::Value| {
        let services = services.clone();
        async move {
            services
                .patch(
                    "n",
                    &PatchParams::apply(manager).force(),
                    &Patch::Apply(body),
                )
                .await
                .unwrap()
        }
    };
    apply("host", owned(&["pod-old"])).await;
    apply("pod", owned(&["pod-b"])).await;
    // The host prober restarted: its new pod replaces its old one.
    let s = apply("host", owned(&["pod-new"])).await;
    let mut uids: Vec<String> = s
        .metadata
        .owner_references
        .unwrap()
        .into_iter()
        .map(|o| o.uid)
        .collect();
    uids.sort();
    assert_eq!(uids, ["pod-b", "pod-new"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_refuses_what_it_does_not_grant() {
    let api = FakeApi::start().await;
    api.put("services", service("s0", true));
    api.authorize(
        "reader",
        vec![Rule {
            verbs: vec!["list".into()],
            resources: vec!["services".into()],
            namespace: Some(NS.into()),
        }],
    );
    let c = client(&api, "reader").await;
    let mine: Api<Service> = Api::namespaced(c.clone(), NS);
    assert_eq!(
        mine.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let code = |e: kube::Error| match e {
        kube::Error::Api(s) => s.code,
        other => panic!("{other}"),
    };
    let everywhere: Api<Service> = Api::all(c.clone());
    assert_eq!(
        code(everywhere.list(&ListParams::default()).await.unwrap_err()),
        403
    );
    assert_eq!(code(mine.get("s0").await.unwrap_err()), 403);
    let stranger: Api<Service> = Api::namespaced(client(&api, "stranger").await, NS);
    assert_eq!(
        code(stranger.list(&ListParams::default()).await.unwrap_err()),
        403
    );
    // Listing is granted, watching is not.
    let refused = match mine.watch(&WatchParams::default(), "0").await {
        Err(e) => code(e),
        Ok(stream) => match stream.boxed().next().await {
            Some(Err(e)) => code(e),
            other => panic!("a watch without the verb: {other:?}"),
        },
    };
    assert_eq!(refused, 403);
}

/// What the real server's validation refuses, the fake refuses too: an
/// endpoint on loopback, link-local or unspecified, and a changed
/// clusterIP; a Service gets its ClusterIP from the Service range, once.
#[tokio::test(flavor = "multi_thread")]
async fn addresses_and_immutable_fields_are_validated_as_the_server_does() {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let api = FakeApi::start().await;
    let client = client(&api, "test").await;
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let pp = PatchParams::apply("tailprobe-test");
    let svc = services
        .patch("s1", &pp, &Patch::Apply(service("s1", true)))
        .await
        .unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    assert!(ip.starts_with("10.96."), "from the Service range: {ip}");
    let mut moved = service("s1", true);
    moved["spec"]["clusterIP"] = json!("10.96.9.9");
    let err = services
        .patch("s1", &pp, &Patch::Apply(moved))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("field is immutable")),
        "{err}"
    );
    let mut same = service("s1", true);
    same["spec"]["clusterIP"] = json!(ip);
    services
        .patch("s1", &pp, &Patch::Apply(same))
        .await
        .expect("the same clusterIP written again is no change");

    let slices: Api<EndpointSlice> = Api::namespaced(client, NS);
    let slice = |addr: &str| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "s1-x", "namespace": NS,
                "labels": {"kubernetes.io/service-name": "s1"}},
            "addressType": if addr.contains(':') { "IPv6" } else { "IPv4" },
            "endpoints": [{"addresses": [addr]}],
            "ports": [{"port": 80}]})
    };
    for bad in [
        "127.0.0.1",
        "127.3.2.1",
        "::1",
        "169.254.10.1",
        "fe80::1",
        "0.0.0.0",
    ] {
        let err = slices
            .patch("s1-x", &pp, &Patch::Apply(slice(bad)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("may not be in the loopback range")),
            "{bad}: {err}"
        );
    }
    slices
        .patch("s1-x", &pp, &Patch::Apply(slice("10.244.1.7")))
        .await
        .expect("a pod address");
    assert_eq!(
        api.get("services", NS, "s1").unwrap()["spec"]["clusterIP"],
        json!(ip),
        "no kube-proxy stand-in moves the VIP"
    );
}
