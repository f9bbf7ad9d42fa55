//! The kubeconfig a simulator writes, for kubectl and kube::Client alike.

use crate::tls::TlsMaterial;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

/// A kubeconfig for `url` with the admin client certificate (HTTPS) or no credentials (HTTP).
/// Data is embedded so the file stands alone.
pub fn render(url: &str, tls: Option<&TlsMaterial>, namespace: &str) -> String {
    let mut cluster = json!({"server": url});
    let mut user = json!({});
    if let Some(tls) = tls {
        cluster["certificate-authority-data"] = json!(STANDARD.encode(&tls.ca_pem));
        user["client-certificate-data"] = json!(STANDARD.encode(&tls.client_cert_pem));
        user["client-key-data"] = json!(STANDARD.encode(tls.client_key_pem()));
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-sim", "cluster": cluster}],
        "users": [{"name": "kube-sim-admin", "user": user}],
        "contexts": [{"name": "kube-sim", "context": {
            "cluster": "kube-sim", "user": "kube-sim-admin", "namespace": namespace}}],
        "current-context": "kube-sim",
        "preferences": {},
    });
    // A JSON document is valid YAML, and serde_yaml renders it the way kubectl writes them.
    serde_yaml::to_string(&doc).unwrap_or_else(|_| doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_kubeconfig_has_no_credentials() {
        let text = render("http://127.0.0.1:1234", None, "default");
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"].as_str(),
            Some("http://127.0.0.1:1234")
        );
        assert!(doc["users"][0]["user"].get("client-key-data").is_none());
        assert_eq!(doc["current-context"].as_str(), Some("kube-sim"));
    }
}
