use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn cond<'a>(s: &'a MeshStatusStatus, t: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == t).expect(t)
}

fn healthy_ns() -> NamespaceFacts {
    NamespaceFacts {
        workloads: 3,
        pods_with_sidecar: 2,
        identities: Some(IdentityFacts {
            issued: 2,
            earliest_expiry: Some(now() + DAY),
            expiring: 0,
            failed: vec![],
        }),
        config_accepted: 4,
        proxies: 2,
        proxies_in_sync: 2,
        root_not_after: Some(now() + 365 * DAY),
        ..Default::default()
    }
}

#[test]
fn a_healthy_namespace_is_ready_and_not_degraded() {
    let s = namespace_status(&healthy_ns(), now(), None);
    assert_eq!(s.ready, Some(true));
    assert_eq!(cond(&s, READY).status, "True");
    assert_eq!(
        cond(&s, READY).message.as_deref(),
        Some(
            "3 workloads (2 with a sidecar), 2 identities, 2 of 2 proxies in sync and 4 configuration objects accepted."
        )
    );
    assert_eq!(cond(&s, DEGRADED).status, "False");
    assert_eq!(s.identities, Some(2));
    assert_eq!(s.workloads, Some(3));
    assert_eq!(s.pods_with_sidecar, Some(2));
    assert_eq!(
        s.earliest_cert_expiry.as_deref(),
        Some("2027-01-16T08:00:00Z")
    );
    assert_eq!(s.errors, Some(0));
    assert_eq!(
        cond(&s, READY).last_transition_time.as_deref(),
        Some("2027-01-15T08:00:00Z")
    );
}

#[test]
fn rejected_config_makes_a_namespace_not_ready_naming_the_object() {
    let mut f = healthy_ns();
    f.config_rejected = 1;
    f.first_rejected = Some("VirtualService/shop/r: spec.http[0].route: weights sum to 90".into());
    let s = namespace_status(&f, now(), None);
    assert_eq!(s.ready, Some(false));
    let m = cond(&s, READY).message.clone().unwrap();
    assert_eq!(
        m,
        "1 of 5 mesh configuration objects rejected; first: VirtualService/shop/r: spec.http[0].route: weights sum to 90."
    );
    assert_eq!(s.config_rejected, Some(1));
    assert_eq!(s.errors, Some(1));
}

#[test]
fn an_identity_that_could_not_be_renewed_degrades_the_namespace() {
    let mut f = healthy_ns();
    f.identities.as_mut().unwrap().failed = vec![("cart".into(), "the CA refused the key".into())];
    let s = namespace_status(&f, now(), None);
    assert_eq!(cond(&s, DEGRADED).status, "True");
    assert_eq!(
        cond(&s, DEGRADED).message.as_deref(),
        Some(
            "1 identity could not be issued or renewed; first: service account cart: the CA refused the key."
        )
    );
    assert_eq!(s.ready, Some(false));
}

#[test]
fn a_root_within_30_days_degrades_both_namespace_and_control_plane() {
    let mut f = healthy_ns();
    f.root_not_after = Some(now() + 29 * DAY);
    let s = namespace_status(&f, now(), None);
    assert_eq!(cond(&s, DEGRADED).status, "True");
    assert!(
        cond(&s, DEGRADED)
            .message
            .as_deref()
            .unwrap()
            .contains("within 30 days")
    );
    assert_eq!(s.ready, Some(true), "a root about to expire still serves");

    f.root_not_after = Some(now() + 31 * DAY);
    assert_eq!(
        cond(&namespace_status(&f, now(), None), DEGRADED).status,
        "False"
    );

    let cp = ControlPlaneFacts {
        ca: Some(CaFacts {
            mode: "self-signed".into(),
            root_fingerprint: "ab".repeat(32),
            root_not_after: now() + 10 * DAY,
        }),
        trust_domain: "cluster.local".into(),
        synced: true,
        operator_version: "0.1.0".into(),
        ..Default::default()
    };
    let s = control_plane_status(&cp, now(), None);
    assert_eq!(s.ready, Some(true));
    assert_eq!(cond(&s, DEGRADED).status, "True");
    assert_eq!(s.ca_mode.as_deref(), Some("self-signed"));
    assert_eq!(s.root_expiry.as_deref(), Some("2027-01-25T08:00:00Z"));
}

#[test]
fn the_control_plane_explains_what_it_waits_for() {
    let mut cp = ControlPlaneFacts {
        trust_domain: "cluster.local".into(),
        operator_version: "0.1.0".into(),
        leader: Some("pod-a".into()),
        ..Default::default()
    };
    let s = control_plane_status(&cp, now(), None);
    assert_eq!(s.ready, Some(false));
    assert_eq!(
        cond(&s, READY).message.as_deref(),
        Some("No CA is loaded yet.")
    );
    cp.ca = Some(CaFacts {
        mode: "plugged-in".into(),
        root_fingerprint: "cd".repeat(32),
        root_not_after: now() + 400 * DAY,
    });
    let s = control_plane_status(&cp, now(), None);
    assert_eq!(
        cond(&s, READY).message.as_deref(),
        Some("The Kubernetes caches have not been listed yet.")
    );
    cp.synced = true;
    cp.proxies = 1;
    cp.ca_problem = Some("Secret istio-system/cacerts: ca-key.pem: not a PEM key".into());
    let s2 = control_plane_status(&cp, now() + DAY, Some(&s));
    assert_eq!(
        cond(&s2, READY).message.as_deref(),
        Some("The plugged-in CA is loaded, caches are synced and 1 proxy is connected.")
    );
    assert_eq!(cond(&s2, DEGRADED).status, "True");
    assert!(
        cond(&s2, DEGRADED)
            .message
            .as_deref()
            .unwrap()
            .contains("cacerts")
    );
    assert_eq!(s2.leader.as_deref(), Some("pod-a"));
    // Ready changed: new transition time; Degraded changed too.
    assert_ne!(
        cond(&s2, READY).last_transition_time,
        cond(&s, READY).last_transition_time
    );
    // Unchanged facts at a later time: identical status (no write).
    let s3 = control_plane_status(&cp, now() + 2 * DAY, Some(&s2));
    assert_eq!(s3, s2);

    // A root rotation reports its progress.
    cp.ca_problem = None;
    cp.rotation_remaining = Some(7);
    let s4 = control_plane_status(&cp, now(), None);
    assert_eq!(s4.rotation_remaining, Some(7));
    assert_eq!(
        cond(&s4, READY).message.as_deref(),
        Some(
            "The plugged-in CA is loaded, caches are synced and 1 proxy is connected; a root rotation is under way with 7 identities still to reissue."
        )
    );
}
