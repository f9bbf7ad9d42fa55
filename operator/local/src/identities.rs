//! The mesh CA and the workload certificates of universal mode, on disk.
//!
//! The root lives in `<state>/ca/` in Istio's `cacerts` layout and is reused
//! on every restart, so identities issued before a restart stay trusted. Each
//! service account's certificate goes to `<state>/certs/<ns>/<sa>/` through
//! [`write_cert_dir`], and is renewed like in Kubernetes: once the renewal
//! time of [`trellis_ca::renewal_time`] has passed.
use crate::error::{LocalError, Result};
use crate::state::{CertFile, StateDir, write_atomic, write_cert_dir};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};
use trellis_ca::{
    CaFiles, CertificateAuthority, CertificateInfo, KeyAlgorithm, RenewalPolicy, RenewalReason,
    Rng, RootOptions, SpiffeId, TrustDomain, WantedIdentity, renewal_due, renewal_time,
};

const CA_CERT: &str = "ca-cert.pem";
const CA_KEY: &str = "ca-key.pem";
const CA_CHAIN: &str = "cert-chain.pem";
const CA_ROOT: &str = "root-cert.pem";

/// Loads the CA from `<state>/ca/`, or creates a self-signed root there on
/// the first run.
pub fn load_or_create_ca(
    state: &StateDir,
    trust_domain: &TrustDomain,
    now: SystemTime,
    rng: Rng,
) -> Result<CertificateAuthority> {
    let dir = state.ca_dir();
    let ca_err = |source| LocalError::Ca {
        object: format!("mesh CA in {}", dir.display()),
        source,
    };
    if dir.join(CA_CERT).exists() {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| LocalError::io("reading", &path, e))
        };
        let (cert, key, chain, root) = (
            read(CA_CERT)?,
            read(CA_KEY)?,
            read(CA_CHAIN)?,
            read(CA_ROOT)?,
        );
        let files = CaFiles {
            ca_cert: &cert,
            ca_key: &key,
            cert_chain: &chain,
            root_cert: &root,
        };
        return CertificateAuthority::from_cacerts(trust_domain.clone(), files, now, rng)
            .map_err(ca_err);
    }
    let ca =
        CertificateAuthority::new_self_signed(&RootOptions::new(trust_domain.clone()), now, rng)
            .map_err(ca_err)?;
    let material = ca.to_material();
    // The key last: a directory with ca-cert.pem but no key is an error, not a new root.
    write_atomic(
        &dir.join(CA_KEY),
        material.ca_key_pem.expose().as_bytes(),
        0o600,
    )?;
    write_atomic(
        &dir.join(CA_CHAIN),
        material.cert_chain_pem.as_bytes(),
        0o644,
    )?;
    write_atomic(&dir.join(CA_ROOT), material.root_cert_pem.as_bytes(), 0o644)?;
    write_atomic(&dir.join(CA_CERT), material.ca_cert_pem.as_bytes(), 0o644)?;
    Ok(ca)
}

/// A service account that needs a certificate.
pub type Identity = (String, String);

/// Keeps one valid certificate per wanted service account on disk.
#[derive(Debug)]
pub struct IdentityKeeper {
    pub ttl: Duration,
    pub policy: RenewalPolicy,
    /// For each identity: (renew at, expires at).
    issued: BTreeMap<Identity, (SystemTime, SystemTime)>,
}

impl IdentityKeeper {
    pub fn new(ttl: Duration, policy: RenewalPolicy) -> Self {
        IdentityKeeper {
            ttl,
            policy,
            issued: BTreeMap::new(),
        }
    }

    /// Issues missing certificates, renews due ones, forgets unwanted ones.
    /// A certificate already on disk (from an earlier run) is kept while it is
    /// valid, chains to the current root and carries the right identity.
    /// Returns the identities whose files changed.
    pub fn reconcile(
        &mut self,
        state: &StateDir,
        ca: &CertificateAuthority,
        wanted: &BTreeSet<Identity>,
        now: SystemTime,
    ) -> Result<Vec<Identity>> {
        self.issued.retain(|id, _| wanted.contains(id));
        let mut changed = Vec::new();
        for id in wanted {
            let due = match self.issued.get(id) {
                Some((renew_at, _)) => *renew_at <= now,
                None => match self.adopt_existing(state, ca, id, now)? {
                    Some(times) => {
                        self.issued.insert(id.clone(), times);
                        false
                    }
                    None => true,
                },
            };
            if due {
                let times = self.issue(state, ca, id, now)?;
                self.issued.insert(id.clone(), times);
                changed.push(id.clone());
            }
        }
        Ok(changed)
    }

    /// When the next renewal is due, if any identity is kept.
    pub fn next_renewal(&self) -> Option<SystemTime> {
        self.issued.values().map(|(renew, _)| *renew).min()
    }

    pub fn expiry(&self, id: &Identity) -> Option<SystemTime> {
        self.issued.get(id).map(|(_, exp)| *exp)
    }

    fn issue(
        &self,
        state: &StateDir,
        ca: &CertificateAuthority,
        (ns, sa): &Identity,
        now: SystemTime,
    ) -> Result<(SystemTime, SystemTime)> {
        let object = format!("ServiceAccount {ns}/{sa}");
        let issued = ca
            .issue_for_service_account(ns, sa, self.ttl, now)
            .map_err(|source| LocalError::Ca {
                object: object.clone(),
                source,
            })?;
        let dir = state.cert_dir(ns, sa)?;
        write_cert_dir(
            &dir,
            &[
                CertFile {
                    name: CA_CHAIN,
                    contents: issued.cert_chain_pem.as_bytes(),
                    private: false,
                },
                CertFile {
                    name: "key.pem",
                    contents: issued.key_pem.expose().as_bytes(),
                    private: true,
                },
                CertFile {
                    name: CA_ROOT,
                    contents: issued.root_cert_pem.as_bytes(),
                    private: false,
                },
            ],
        )?;
        let leaf = CertificateInfo::all_from_pem(CA_CHAIN, &issued.cert_chain_pem)
            .map_err(|source| LocalError::Ca { object, source })?;
        let renew_at = leaf.first().map_or(now, |l| self.renew_at(l));
        Ok((renew_at, issued.not_after))
    }

    /// When to renew `leaf`: the policy's fraction of the lifetime this keeper
    /// asked for. The CA backdates `notBefore` for clock skew (minutes), which
    /// for a short TTL would put the renewal time before the issuance and renew
    /// on every tick; so the lifetime is counted from `notAfter - ttl`.
    fn renew_at(&self, leaf: &CertificateInfo) -> SystemTime {
        let mut effective = leaf.clone();
        if let Some(start) = leaf.not_after.checked_sub(self.ttl) {
            effective.not_before = effective.not_before.max(start);
        }
        renewal_time(&effective, &self.policy)
    }

    fn adopt_existing(
        &self,
        state: &StateDir,
        ca: &CertificateAuthority,
        (ns, sa): &Identity,
        now: SystemTime,
    ) -> Result<Option<(SystemTime, SystemTime)>> {
        let dir = state.cert_dir(ns, sa)?;
        let (Ok(chain_pem), Ok(root_pem), true) = (
            std::fs::read_to_string(dir.join(CA_CHAIN)),
            std::fs::read_to_string(dir.join(CA_ROOT)),
            dir.join("key.pem").exists(),
        ) else {
            return Ok(None);
        };
        let Ok(chain) = CertificateInfo::all_from_pem(CA_CHAIN, &chain_pem) else {
            return Ok(None);
        };
        let spiffe_id =
            SpiffeId::for_service_account(ca.trust_domain(), ns, sa).map_err(|source| {
                LocalError::Ca {
                    object: format!("ServiceAccount {ns}/{sa}"),
                    source,
                }
            })?;
        let wanted = WantedIdentity {
            spiffe_id: &spiffe_id,
            key_algorithm: KeyAlgorithm::EcdsaP256,
            bundle: ca.trust_bundle(),
        };
        // A bundle on disk that differs from the CA's (a new root) means reissue.
        if root_pem != ca.trust_bundle().to_pem() {
            return Ok(None);
        }
        match renewal_due(&chain, now, &self.policy, &wanted) {
            None | Some(RenewalReason::LifetimeElapsed { .. }) => {}
            Some(_) => return Ok(None),
        }
        let Some(leaf) = chain.first() else {
            return Ok(None);
        };
        let renew_at = self.renew_at(leaf);
        if renew_at <= now {
            return Ok(None);
        }
        Ok(Some((renew_at, leaf.not_after)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use trellis_ca::SystemRandom;

    fn rng() -> Rng {
        Arc::new(SystemRandom::new())
    }

    fn id(ns: &str, sa: &str) -> Identity {
        (ns.to_string(), sa.to_string())
    }

    #[test]
    fn root_is_reused_and_certificates_adopted_across_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let td = TrustDomain::new("cluster.local").unwrap();
        let now = SystemTime::now();
        let ca = load_or_create_ca(&state, &td, now, rng()).unwrap();
        let wanted: BTreeSet<Identity> = [id("shop", "cart"), id("shop", "email")].into();
        let mut keeper = IdentityKeeper::new(Duration::from_secs(3600), RenewalPolicy::default());
        assert_eq!(
            keeper.reconcile(&state, &ca, &wanted, now).unwrap().len(),
            2
        );
        let chain = std::fs::read_to_string(state.cert_dir("shop", "cart").unwrap().join(CA_CHAIN))
            .unwrap();
        let leaf = &CertificateInfo::all_from_pem("x", &chain).unwrap()[0];
        assert_eq!(
            leaf.uri_sans,
            vec!["spiffe://cluster.local/ns/shop/sa/cart".to_string()]
        );

        // "Restart": same root, existing certificates kept (nothing changed).
        let ca2 = load_or_create_ca(&state, &td, now, rng()).unwrap();
        assert_eq!(ca2.root().sha256_fingerprint, ca.root().sha256_fingerprint);
        let mut keeper2 = IdentityKeeper::new(Duration::from_secs(3600), RenewalPolicy::default());
        assert!(
            keeper2
                .reconcile(&state, &ca2, &wanted, now)
                .unwrap()
                .is_empty()
        );
        let again = std::fs::read_to_string(state.cert_dir("shop", "cart").unwrap().join(CA_CHAIN))
            .unwrap();
        assert_eq!(chain, again);
    }

    /// The CA backdates notBefore by minutes; a 60 s certificate must still
    /// live about half its lifetime, not be renewed on every tick.
    #[test]
    fn short_ttl_renews_at_half_the_requested_lifetime_not_every_tick() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let td = TrustDomain::new("cluster.local").unwrap();
        let now = SystemTime::now();
        let ca = load_or_create_ca(&state, &td, now, rng()).unwrap();
        let wanted: BTreeSet<Identity> = [id("shop", "cart")].into();
        let ttl = Duration::from_secs(60);
        let mut keeper = IdentityKeeper::new(ttl, RenewalPolicy::default());
        keeper.reconcile(&state, &ca, &wanted, now).unwrap();
        let renew_at = keeper.next_renewal().unwrap();
        assert!(
            renew_at >= now + Duration::from_secs(29),
            "{renew_at:?} vs {now:?}"
        );
        assert!(renew_at < keeper.expiry(&id("shop", "cart")).unwrap());
        for s in [1, 10, 25] {
            assert!(
                keeper
                    .reconcile(&state, &ca, &wanted, now + Duration::from_secs(s))
                    .unwrap()
                    .is_empty(),
                "renewed after {s}s"
            );
        }
        // A restart adopts the fresh certificate instead of reissuing it.
        let mut keeper2 = IdentityKeeper::new(ttl, RenewalPolicy::default());
        assert!(
            keeper2
                .reconcile(&state, &ca, &wanted, now + Duration::from_secs(2))
                .unwrap()
                .is_empty()
        );
        assert_eq!(keeper2.next_renewal(), Some(renew_at));
    }

    #[test]
    fn renews_after_the_renewal_time_and_never_logs_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let td = TrustDomain::new("cluster.local").unwrap();
        let now = SystemTime::now();
        let ca = load_or_create_ca(&state, &td, now, rng()).unwrap();
        let wanted: BTreeSet<Identity> = [id("shop", "cart")].into();
        let mut keeper = IdentityKeeper::new(Duration::from_secs(60), RenewalPolicy::default());
        keeper.reconcile(&state, &ca, &wanted, now).unwrap();
        let renew_at = keeper.next_renewal().unwrap();
        assert!(renew_at < keeper.expiry(&id("shop", "cart")).unwrap());
        assert!(
            keeper
                .reconcile(&state, &ca, &wanted, renew_at - Duration::from_secs(1))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            keeper.reconcile(&state, &ca, &wanted, renew_at).unwrap(),
            vec![id("shop", "cart")]
        );
        assert!(!format!("{keeper:?}").contains("PRIVATE KEY"));
        // Dropping an identity forgets it.
        keeper
            .reconcile(&state, &ca, &BTreeSet::new(), now)
            .unwrap();
        assert!(keeper.next_renewal().is_none());
    }

    #[test]
    fn unsafe_service_account_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let td = TrustDomain::new("cluster.local").unwrap();
        let ca = load_or_create_ca(&state, &td, SystemTime::now(), rng()).unwrap();
        let wanted: BTreeSet<Identity> = [id("shop", "..")].into();
        let mut keeper = IdentityKeeper::new(Duration::from_secs(60), RenewalPolicy::default());
        let err = keeper
            .reconcile(&state, &ca, &wanted, SystemTime::now())
            .unwrap_err()
            .to_string();
        assert!(err.contains("shop/.."), "{err}");
    }
}
