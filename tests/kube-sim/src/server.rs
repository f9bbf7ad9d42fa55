//! The HTTP(S) front: accepts connections, reads requests, routes them to discovery or the
//! resource handlers, and renders responses.

use crate::error::ApiError;
use crate::http::{self, Body};
use crate::registry::ResourceType;
use crate::routing::{self, ApiPath};
use crate::store::Store;
use crate::{discovery, openapi, table};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Method, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Largest request body accepted (the API server's limit is 3 MiB per object; leave room).
const MAX_BODY: usize = 8 * 1024 * 1024;
/// How many unfinished paginated lists are remembered.
const MAX_CONTINUATIONS: usize = 64;

/// A request with its body read.
pub struct Request {
    pub method: Method,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type")
    }

    pub fn accept(&self) -> &str {
        self.header("accept")
    }

    pub fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }
}

/// Everything a handler needs: the store and per-server settings.
pub struct Ctx {
    pub store: Arc<Store>,
    pub bookmark_interval: Duration,
    pub service_resolver: crate::admission::ServiceResolver,
    continuations: Mutex<VecDeque<(String, u64, Vec<Value>)>>,
}

impl Ctx {
    pub fn new(store: Arc<Store>, bookmark_interval: Duration) -> Self {
        Ctx {
            store,
            bookmark_interval,
            service_resolver: crate::webhooks::no_services(),
            continuations: Mutex::new(VecDeque::new()),
        }
    }

    /// Remembers the rest of a list so that the next page is consistent with the first.
    pub fn save_continuation(&self, rv: u64, rest: Vec<Value>) -> String {
        let token = crate::meta::new_uid();
        let mut c = self.continuations.lock().unwrap_or_else(|p| p.into_inner());
        c.push_back((token.clone(), rv, rest));
        while c.len() > MAX_CONTINUATIONS {
            c.pop_front();
        }
        token
    }

    pub fn take_continuation(&self, token: &str) -> Result<(u64, Vec<Value>), ApiError> {
        let mut c = self.continuations.lock().unwrap_or_else(|p| p.into_inner());
        let pos = c.iter().position(|(t, _, _)| t == token).ok_or_else(|| {
            ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            )
        })?;
        let (_, rv, items) = c.remove(pos).unwrap_or_default();
        Ok((rv, items))
    }

    pub fn render_one(&self, req: &Request, rt: &ResourceType, obj: Value) -> Response<Body> {
        self.render_one_code(req, rt, obj, 200)
    }

    pub fn render_one_code(
        &self,
        req: &Request,
        rt: &ResourceType,
        obj: Value,
        code: u16,
    ) -> Response<Body> {
        if wants_table(req) {
            let rv = obj["metadata"]["resourceVersion"].clone();
            return match self.table(req, rt, std::slice::from_ref(&obj), rv, Value::Null) {
                Ok(table) => http::json(code, &table),
                Err(e) => http::error(&e),
            };
        }
        http::json(code, &obj)
    }

    pub fn render_list(&self, req: &Request, rt: &ResourceType, list: Value) -> Response<Body> {
        if wants_table(req) {
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let meta = &list["metadata"];
            return match self.table(
                req,
                rt,
                &items,
                meta["resourceVersion"].clone(),
                meta["continue"].clone(),
            ) {
                Ok(table) => http::json(200, &table),
                Err(e) => http::error(&e),
            };
        }
        http::json(200, &list)
    }

    fn table(
        &self,
        req: &Request,
        rt: &ResourceType,
        objects: &[Value],
        rv: Value,
        cont: Value,
    ) -> Result<Value, ApiError> {
        let printer = match &rt.crd_version {
            Some(version) => table::Printer::for_crd_version(version)?,
            None => table::Printer::for_kind(&rt.kind),
        };
        let include = table::IncludeObject::parse(req.param("includeObject"))?;
        let mut t = table::to_table(&printer, objects, include, &crate::meta::now_rfc3339());
        if !rv.is_null() {
            t["metadata"]["resourceVersion"] = rv;
        }
        if cont.is_string() {
            t["metadata"]["continue"] = cont;
        }
        Ok(t)
    }
}

impl Ctx {
    /// For a watch asking for `as=Table`: renders one object as a one-row Table.
    pub fn watch_table(
        &self,
        req: &Request,
        rt: &ResourceType,
    ) -> Result<Option<crate::watch::TableRenderer>, ApiError> {
        if !wants_table(req) {
            return Ok(None);
        }
        let printer = match &rt.crd_version {
            Some(version) => table::Printer::for_crd_version(version)?,
            None => table::Printer::for_kind(&rt.kind),
        };
        let include = table::IncludeObject::parse(req.param("includeObject"))?;
        Ok(Some(Box::new(move |object: &Value| {
            let mut t = table::to_table(
                &printer,
                std::slice::from_ref(object),
                include,
                &crate::meta::now_rfc3339(),
            );
            t["metadata"]["resourceVersion"] = object["metadata"]["resourceVersion"].clone();
            t
        })))
    }
}

/// Whether the client asked for server-side printing (`as=Table`).
fn wants_table(req: &Request) -> bool {
    req.accept().split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
    })
}

/// Handles one request.
pub async fn handle(ctx: Arc<Ctx>, req: hyper::Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return http::error(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("request body could not be read: {e}"),
            ));
        }
    };
    let request = Request {
        method: parts.method,
        query: routing::parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
    };
    let path = routing::parse_path(parts.uri.path());
    match route(&ctx, &request, &path).await {
        Ok(resp) => resp,
        Err(err) => http::error(&err),
    }
}

async fn route(ctx: &Ctx, req: &Request, path: &ApiPath) -> Result<Response<Body>, ApiError> {
    if !matches!(path, ApiPath::Resource(_)) && req.method != Method::GET {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let aggregated = discovery::wants_aggregated(req.accept());
    match path {
        ApiPath::Version => Ok(http::json(200, &discovery::version())),
        ApiPath::Healthz => Ok(Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(http::full("ok"))
            .unwrap_or_else(|_| Response::new(http::full("ok")))),
        ApiPath::CoreVersions | ApiPath::Groups => {
            let core = matches!(path, ApiPath::CoreVersions);
            match aggregated {
                Some(v) => {
                    let api_version = format!("apidiscovery.k8s.io/{v}");
                    let doc = discovery::aggregated(&ctx.store.registry(), core, &api_version);
                    Ok(http::json_with_type(
                        200,
                        &doc,
                        &format!(
                            "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                        ),
                    ))
                }
                None if core => Ok(http::json(200, &discovery::core_versions())),
                None => Ok(http::json(
                    200,
                    &discovery::group_list(&ctx.store.registry()),
                )),
            }
        }
        ApiPath::Group(g) => discovery::group(&ctx.store.registry(), g)
            .map(|doc| http::json(200, &doc))
            .ok_or_else(http::no_such_path),
        ApiPath::GroupVersion(g, v) => discovery::resource_list(&ctx.store.registry(), g, v)
            .map(|doc| http::json(200, &doc))
            .ok_or_else(http::no_such_path),
        ApiPath::Resource(rp) => crate::handlers::resource(ctx, req, rp).await,
        ApiPath::OpenApiV3(None) => Ok(http::json(200, &openapi::root(&ctx.store.registry()))),
        ApiPath::OpenApiV3(Some((g, v))) => {
            let reg = ctx.store.registry();
            if reg.in_group_version(g, v).next().is_none() {
                return Err(http::no_such_path());
            }
            Ok(http::json(200, &openapi::group_version(&reg, g, v)))
        }
        ApiPath::OpenApiV2 => Ok(openapi::v2_document()),
        ApiPath::Unknown => Err(http::no_such_path()),
    }
}

/// Serves connections from `listener` until the returned task is aborted; aborting it ends
/// every connection it accepted too.
pub fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let mut connections = JoinSet::new();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(_) => continue,
            };
            let _ = stream.set_nodelay(true);
            let ctx = ctx.clone();
            let acceptor = acceptor.clone();
            connections.spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls_stream) = acceptor.accept(stream).await {
                            // A client without a certificate is anonymous; with anonymous
                            // auth disabled the API server answers every request 401.
                            let authenticated = tls_stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .is_some_and(|certs| !certs.is_empty());
                            let service = hyper::service::service_fn(move |req| {
                                let ctx = ctx.clone();
                                async move {
                                    Ok::<_, std::convert::Infallible>(if authenticated {
                                        handle(ctx, req).await
                                    } else {
                                        http::error(&ApiError::new(
                                            401,
                                            "Unauthorized",
                                            "Unauthorized",
                                        ))
                                    })
                                }
                            });
                            let _ = builder
                                .serve_connection(TokioIo::new(tls_stream), service)
                                .await;
                        }
                    }
                    None => {
                        let service = hyper::service::service_fn(move |req| {
                            let ctx = ctx.clone();
                            async move { Ok::<_, std::convert::Infallible>(handle(ctx, req).await) }
                        });
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
            // Reap finished connections so the set does not grow without bound.
            while connections.try_join_next().is_some() {}
        }
    })
}
