//! What the demo learns from the configuration directory itself: where the
//! ingress gateway listens and for which host, and which issuer, audience and
//! key id the frontend's RequestAuthentication expects.
use crate::assignments::gateway_port;
use crate::plan::PlanOptions;
use std::path::Path;
use trellis_api::Resource;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoTargets {
    /// The host the gateway serves (sent as `Host`).
    pub host: String,
    /// The gateway's port on 127.0.0.1 (after the privileged-port offset).
    pub gateway_port: u16,
    pub issuer: String,
    pub audience: String,
    pub kid: String,
}

/// Every resource in the YAML files of `dir` (load errors are `trellis up`'s to report).
pub fn load_dir(dir: &Path) -> Result<Vec<Resource>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut resources = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let (loaded, _errors) = trellis_api::load_all(&path.display().to_string(), &text);
        resources.extend(loaded);
    }
    Ok(resources)
}

/// Finds the first HTTP Gateway server with a concrete host and the first
/// RequestAuthentication rule with an inline JWKS.
pub fn discover(resources: &[Resource], plan: &PlanOptions) -> Result<DemoTargets, String> {
    let (host, declared) = resources
        .iter()
        .filter_map(|r| match r {
            Resource::Gateway(g) => Some(g),
            _ => None,
        })
        .flat_map(|g| g.spec.servers.iter())
        .filter(|s| {
            s.tls.is_none()
                && s.port
                    .protocol
                    .as_deref()
                    .is_none_or(|p| p.eq_ignore_ascii_case("HTTP"))
        })
        .find_map(|s| {
            let host = s
                .hosts
                .iter()
                .map(|h| h.rsplit('/').next().unwrap_or(h))
                .find(|h| !h.contains('*'))?;
            Some((host.to_string(), s.port.number))
        })
        .ok_or("no Gateway with a plain HTTP server for a concrete host (spec.servers[].hosts)")?;
    let declared = u16::try_from(declared)
        .map_err(|_| format!("Gateway port {declared} is not a port number"))?;
    let port = gateway_port(declared, plan.running_as_root, plan.gateway_port_offset);
    let rule = resources
        .iter()
        .filter_map(|r| match r {
            Resource::RequestAuthentication(ra) => Some(ra),
            _ => None,
        })
        .flat_map(|ra| ra.spec.jwt_rules.iter())
        .find(|rule| rule.jwks.is_some())
        .ok_or("no RequestAuthentication with an inline jwks (spec.jwtRules[].jwks)")?;
    let jwks: serde_json::Value = serde_json::from_str(rule.jwks.as_deref().unwrap_or(""))
        .map_err(|e| format!("RequestAuthentication spec.jwtRules[].jwks: not JSON: {e}"))?;
    let kid = jwks["keys"][0]["kid"].as_str().unwrap_or("").to_string();
    let audience = rule
        .audiences
        .first()
        .cloned()
        .unwrap_or_else(|| host.clone());
    Ok(DemoTargets {
        host,
        gateway_port: port,
        issuer: rule.issuer.clone(),
        audience,
        kid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_example_names_its_gateway_and_issuer() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/boutique"
        ));
        let resources = load_dir(dir).unwrap();
        let t = discover(&resources, &PlanOptions::default()).unwrap();
        assert_eq!(t.host, "onlineboutique.com");
        assert_eq!(t.gateway_port, 8080);
        assert_eq!(t.issuer, "https://demo.trellis.dev");
        assert_eq!(t.audience, "onlineboutique.com");
        assert_eq!(t.kid, "trellis-demo");
        let root = PlanOptions {
            running_as_root: true,
            ..PlanOptions::default()
        };
        assert_eq!(discover(&resources, &root).unwrap().gateway_port, 80);
    }

    #[test]
    fn missing_pieces_are_named() {
        let e = discover(&[], &PlanOptions::default()).unwrap_err();
        assert!(e.contains("Gateway"), "{e}");
    }
}
