use super::*;
use crate::security::sds::SdsSource;
use crate::security::tls::downstream_mtls;
use proptest::prelude::*;

fn policy(
    ns: &str,
    name: &str,
    order: i64,
    selector: Option<&[(&str, &str)]>,
    mode: MtlsMode,
) -> PeerAuthnPolicy {
    PeerAuthnPolicy {
        namespace: ns.into(),
        name: name.into(),
        creation_order: order,
        selector: selector.map(|s| {
            s.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }),
        mode,
        port_level: BTreeMap::new(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mode_of(
    policies: &[PeerAuthnPolicy],
    ns: &str,
    l: &BTreeMap<String, String>,
    port: u32,
) -> EffectiveMtls {
    effective_mode(
        policies,
        "istio-system",
        WorkloadRef {
            namespace: ns,
            labels: l,
        },
        port,
    )
}

#[test]
fn nothing_set_is_permissive() {
    assert_eq!(
        mode_of(&[], "shop", &labels(&[]), 80),
        EffectiveMtls::Permissive
    );
}

#[test]
fn workload_beats_namespace_beats_mesh() {
    let l = labels(&[("app", "cart")]);
    let mesh = policy("istio-system", "default", 1, None, MtlsMode::Strict);
    let ns = policy("shop", "ns", 2, None, MtlsMode::Disable);
    let wl = policy(
        "shop",
        "wl",
        3,
        Some(&[("app", "cart")]),
        MtlsMode::Permissive,
    );
    assert_eq!(
        mode_of(std::slice::from_ref(&mesh), "shop", &l, 80),
        EffectiveMtls::Strict
    );
    assert_eq!(
        mode_of(&[mesh.clone(), ns.clone()], "shop", &l, 80),
        EffectiveMtls::Disable
    );
    assert_eq!(
        mode_of(&[mesh.clone(), ns.clone(), wl.clone()], "shop", &l, 80),
        EffectiveMtls::Permissive
    );
    // a selector that does not match is ignored
    let other = labels(&[("app", "web")]);
    assert_eq!(
        mode_of(&[mesh, ns, wl], "shop", &other, 80),
        EffectiveMtls::Disable
    );
}

#[test]
fn unset_inherits_and_port_level_overrides() {
    let l = labels(&[("app", "cart")]);
    let mesh = policy("istio-system", "default", 1, None, MtlsMode::Strict);
    let mut wl = policy("shop", "wl", 3, Some(&[("app", "cart")]), MtlsMode::Unset);
    wl.port_level.insert(8080, MtlsMode::Disable);
    wl.port_level.insert(9090, MtlsMode::Unset);
    let all = [mesh, wl];
    assert_eq!(mode_of(&all, "shop", &l, 8080), EffectiveMtls::Disable);
    assert_eq!(mode_of(&all, "shop", &l, 9090), EffectiveMtls::Strict);
    assert_eq!(mode_of(&all, "shop", &l, 80), EffectiveMtls::Strict);
}

#[test]
fn oldest_duplicate_wins_and_other_namespaces_do_not_apply() {
    let l = labels(&[]);
    let newer = policy("shop", "b", 20, None, MtlsMode::Disable);
    let older = policy("shop", "a", 10, None, MtlsMode::Strict);
    let elsewhere = policy("other", "x", 1, None, MtlsMode::Disable);
    assert_eq!(
        mode_of(&[newer, older, elsewhere], "shop", &l, 80),
        EffectiveMtls::Strict
    );
}

#[test]
fn chains_per_mode() {
    let tls = downstream_mtls(&SdsSource::Ads);
    let base = FilterChainMatch::default();
    let filter = |name: &str| Filter {
        name: name.into(),
        ..Default::default()
    };
    let chains = |mode| {
        inbound_filter_chains(
            "in",
            mode,
            base.clone(),
            &tls,
            vec![filter("served")],
            vec![filter("passed")],
        )
    };
    let (strict, inspect) = chains(EffectiveMtls::Strict);
    assert_eq!(strict.len(), 1);
    assert!(strict[0].transport_socket.is_some());
    assert!(!inspect);
    let (permissive, inspect) = chains(EffectiveMtls::Permissive);
    assert!(inspect);
    let shape: Vec<_> = permissive
        .iter()
        .map(|c| {
            let m = c.filter_chain_match.as_ref().unwrap();
            (
                m.transport_protocol.as_str(),
                m.application_protocols.clone(),
                c.transport_socket.is_some(),
                c.filters[0].name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("tls", vec!["istio".to_string()], true, "served"),
            ("tls", vec![], false, "passed"),
            ("raw_buffer", vec![], false, "served"),
        ],
        "the mesh's mTLS terminated, other TLS passed to the app, plaintext served"
    );
    let (disable, _) = chains(EffectiveMtls::Disable);
    assert!(disable[0].transport_socket.is_none());
}

fn any_mode() -> impl Strategy<Value = MtlsMode> {
    prop_oneof![
        Just(MtlsMode::Unset),
        Just(MtlsMode::Disable),
        Just(MtlsMode::Permissive),
        Just(MtlsMode::Strict)
    ]
}

proptest! {
    // Resolution never panics and a matching workload policy with a set mode always decides.
    #[test]
    fn workload_mode_decides_when_set(
        modes in proptest::collection::vec((any_mode(), any::<bool>(), 0i64..5), 0..6),
        wl_mode in any_mode(),
    ) {
        let l = labels(&[("app", "cart")]);
        let mut all: Vec<PeerAuthnPolicy> = modes
            .iter()
            .enumerate()
            .map(|(i, (m, root, order))| {
                let ns = if *root { "istio-system" } else { "shop" };
                policy(ns, &format!("p{i}"), *order, None, *m)
            })
            .collect();
        let _ = mode_of(&all, "shop", &l, 80);
        all.push(policy("shop", "wl", -1, Some(&[("app", "cart")]), wl_mode));
        let got = mode_of(&all, "shop", &l, 80);
        match wl_mode {
            MtlsMode::Strict => prop_assert_eq!(got, EffectiveMtls::Strict),
            MtlsMode::Disable => prop_assert_eq!(got, EffectiveMtls::Disable),
            MtlsMode::Permissive => prop_assert_eq!(got, EffectiveMtls::Permissive),
            MtlsMode::Unset => {}
        }
    }
}
