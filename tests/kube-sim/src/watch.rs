//! Watch streams: newline-delimited JSON watch events over a chunked response, fed by the
//! store's broadcast, caught up from the store's history when a watcher falls behind.

use crate::error::ApiError;
use crate::http::Body;
use crate::registry::ResourceType;
use crate::store::{Broadcast, Store, WatchEvent};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Renders one object as the one-row Table a watch with `as=Table` sends.
pub type TableRenderer = Box<dyn Fn(&Value) -> Value + Send + Sync>;

/// What a watch request asked for.
pub struct WatchParams {
    /// None: start with the current objects (resourceVersion unset or "0").
    pub from: Option<u64>,
    pub namespace: Option<String>,
    pub filter: Box<dyn Fn(&Value) -> bool + Send + Sync>,
    pub bookmarks: bool,
    pub timeout: Duration,
    /// `sendInitialEvents=true`: replay current objects, then a bookmark marking their end.
    pub send_initial_events: bool,
    pub bookmark_interval: Duration,
    /// `as=Table`: each event's object is sent as a one-row Table.
    pub table: Option<TableRenderer>,
}

/// Starts a watch; the 410 for a too-old resourceVersion comes back as an error before any
/// stream starts, as the API server does.
pub fn start(
    store: Arc<Store>,
    rt: ResourceType,
    params: WatchParams,
) -> Result<Response<Body>, ApiError> {
    let from = if params.send_initial_events {
        None
    } else {
        params.from
    };
    let started = store.watch(&rt, from)?;
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(stream_events(store, rt, params, started, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let body: Body = http_body_util::StreamBody::new(stream).boxed_unsync();
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .header("cache-control", "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| Response::new(crate::http::full(Bytes::new()))))
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut text =
        serde_json::to_string(&json!({"type": event_type, "object": object})).unwrap_or_default();
    text.push('\n');
    Bytes::from(text)
}

struct Watcher {
    rt: ResourceType,
    params: WatchParams,
    tx: mpsc::Sender<Bytes>,
    /// The highest resourceVersion already accounted for (sent or filtered out).
    last_rv: u64,
}

impl Watcher {
    fn wants(&self, event: &WatchEvent) -> bool {
        event.key.group == self.rt.group
            && event.key.resource == self.rt.resource
            && self
                .params
                .namespace
                .as_ref()
                .is_none_or(|ns| !self.rt.namespaced || &event.key.namespace == ns)
            && (self.params.filter)(&event.object)
    }

    /// Sends one event if it is new and matches; false when the client has gone.
    async fn send(&mut self, event: &WatchEvent) -> bool {
        if event.rv <= self.last_rv {
            return true;
        }
        self.last_rv = event.rv;
        if !self.wants(event) {
            return true;
        }
        self.tx.send(self.event_line(event)).await.is_ok()
    }

    /// The event as this watcher's client reads it: shared JSON, or a Table of its own.
    fn event_line(&self, event: &WatchEvent) -> Bytes {
        match &self.params.table {
            Some(render) => line(event.event_type.as_str(), &render(&event.object)),
            None => event.line.clone(),
        }
    }

    async fn bookmark(&self, initial_end: bool) -> bool {
        let mut object = json!({
            "kind": self.rt.kind,
            "apiVersion": self.rt.api_version(),
            "metadata": {"resourceVersion": self.last_rv.to_string()},
        });
        if initial_end {
            object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.tx.send(line("BOOKMARK", &object)).await.is_ok()
    }

    async fn expired(&self, err: &ApiError) {
        let _ = self.tx.send(line("ERROR", &err.to_status())).await;
    }
}

async fn stream_events(
    store: Arc<Store>,
    rt: ResourceType,
    params: WatchParams,
    started: crate::store::WatchStart,
    tx: mpsc::Sender<Bytes>,
) {
    let mut feed = started.feed;
    let mut w = Watcher {
        rt,
        params,
        tx,
        last_rv: started.replay.first().map(|e| e.rv - 1).unwrap_or(0),
    };
    let initial = w.params.from.is_none() || w.params.send_initial_events;
    if initial {
        // Synthetic ADDED events all carry the current resourceVersion; send each.
        for event in &started.replay {
            if w.wants(event) && w.tx.send(w.event_line(event)).await.is_err() {
                return;
            }
        }
        w.last_rv = started.current_rv;
        if w.params.send_initial_events && w.params.bookmarks && !w.bookmark(true).await {
            return;
        }
    } else {
        w.last_rv = w.params.from.unwrap_or(0);
        for event in &started.replay {
            if !w.send(event).await {
                return;
            }
        }
        w.last_rv = w.last_rv.max(started.current_rv);
    }
    let deadline = tokio::time::sleep(w.params.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(w.params.bookmark_interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = w.tx.closed() => return,
            _ = ticker.tick(), if w.params.bookmarks => {
                if !w.bookmark(false).await {
                    return;
                }
            }
            msg = feed.recv() => match msg {
                Ok(Broadcast::Event(event)) => {
                    if !w.send(&event).await {
                        return;
                    }
                }
                Ok(Broadcast::Expire) => {
                    w.expired(&ApiError::gone("too old resource version: the watch cache dropped this watcher")).await;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match store.events_after(w.last_rv) {
                        Ok(events) => {
                            for event in events {
                                if !w.send(&event).await {
                                    return;
                                }
                            }
                        }
                        Err(err) => {
                            w.expired(&err).await;
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
