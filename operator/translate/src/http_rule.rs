//! A VirtualService `http[]` rule after host resolution: the form the route
//! builder reads. The mapping from the API object lives in `virtual_service`.
use crate::policy::HashKey;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    /// RE2 syntax, as Envoy runs it.
    Regex(String),
    /// Istio's `{}`: any value; for a header or a query parameter, present.
    Any,
}

/// One `match[]` entry; every set condition must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestMatch {
    /// Istio's `match[].name`: suffixes the route's name (stats, access logs).
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    /// `http` or `https`, as the request arrived.
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub headers: BTreeMap<String, StringMatch>,
    pub without_headers: BTreeMap<String, StringMatch>,
    pub query_params: BTreeMap<String, StringMatch>,
    pub ignore_uri_case: bool,
    /// Only for requests arriving on this port.
    pub port: Option<u16>,
    /// `statPrefix`: the prefix of the route's own stats.
    pub stat_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderOps {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    pub request: HeaderOps,
    pub response: HeaderOps,
}

/// A resolved destination: `cluster` is the Envoy cluster name it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub cluster: String,
    pub weight: u32,
    pub headers: Headers,
    /// `consistentHash.httpHeaderName` of the destination's DestinationRule.
    pub hash_key: Option<HashKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub scheme: Option<String>,
    pub port: Option<RedirectPort>,
    /// 301 unless set.
    pub code: Option<u32>,
}

/// The port a redirect's Location names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectPort {
    /// `port`.
    Number(u16),
    /// `derivePort: FROM_PROTOCOL_DEFAULT`: none (the scheme's default).
    ProtocolDefault,
    /// `derivePort: FROM_REQUEST_PORT`: the port the route serves.
    RequestPort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Route(Vec<Destination>),
    Redirect(Redirect),
    DirectResponse { status: u32, body: Option<Body> },
}

/// A direct response's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
    /// `uriRegexRewrite`: (RE2 pattern, substitution).
    pub uri_regex: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    /// Envoy `retry_on` (Istio's comma list; bare status codes go to `retriable_status_codes`).
    pub retry_on: Option<String>,
}

/// Percentages are 0..=100 with fractions.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub delay: Option<(Duration, f64)>,
    pub abort: Option<(AbortStatus, f64)>,
}

/// What an injected abort answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortStatus {
    Http(u32),
    /// A gRPC status code (the response is a gRPC error).
    Grpc(u32),
}

impl Eq for Fault {}

#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    pub cluster: String,
    /// 0..=100; `None` is 100 %.
    pub percentage: Option<f64>,
}

impl Eq for Mirror {}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cors {
    pub allow_origins: Vec<StringMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: Option<bool>,
    /// Envoy's `forward_not_matching_preflights` (Istio's `unmatchedPreflights`).
    pub forward_not_matching_preflights: Option<bool>,
}

/// One `http[]` rule of a VirtualService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    pub name: String,
    /// Empty: matches every request.
    pub matches: Vec<RequestMatch>,
    pub action: Action,
    pub rewrite: Option<Rewrite>,
    pub timeout: Option<Duration>,
    /// `None`: Istio's default retry policy.
    pub retries: Option<Retries>,
    pub fault: Option<Fault>,
    /// `mirror`, or each of `mirrors`.
    pub mirrors: Vec<Mirror>,
    pub headers: Headers,
    pub cors: Option<Cors>,
}

impl HttpRule {
    /// A rule that sends everything to one cluster, as for a host without a VirtualService.
    pub fn default_to(cluster: String, hash_key: Option<HashKey>) -> HttpRule {
        HttpRule {
            name: "default".into(),
            matches: Vec::new(),
            action: Action::Route(vec![Destination {
                cluster,
                weight: 100,
                headers: Headers::default(),
                hash_key,
            }]),
            rewrite: None,
            timeout: None,
            retries: None,
            fault: None,
            mirrors: Vec::new(),
            headers: Headers::default(),
            cors: None,
        }
    }
}
