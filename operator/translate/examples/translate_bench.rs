//! Translation benchmark on a synthetic mesh (issue 4):
//! 1,000 services x 3 ports in 20 namespaces, 10,000 endpoints (workloads, 10 per
//! service), 500 VirtualServices, 500 DestinationRules, 200 AuthorizationPolicies.
//!
//! Prints (one `key value` per line, then a summary): time to build the model, time to
//! translate one sidecar (cold: a fresh translator; warm: its namespace already seen),
//! time for 2,000 sidecars (2 per service) with one translator, the bytes of output
//! (distinct resources, as an xDS cache holds them, and as sent to every proxy), and the
//! ratio of the translate time to the time of merely protobuf-encoding the same output,
//! measured in the same run. Single-threaded: run it pinned to one core.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use trellis_api::mesh::AccessLogEncoding;
use trellis_model::{AccessLog, MeshModel, MeshSettings};
use trellis_translate::{
    ExplicitPorts, ListenerShape, ProxyResources, SdsSource, TranslateOptions, Translator,
};

#[path = "support/synthetic_mesh.rs"]
mod synthetic_mesh;
use synthetic_mesh::{proxies, resources};

// The operator's allocator (operator/src/main.rs): the translator is measured
// as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn options() -> TranslateOptions {
    TranslateOptions {
        shape: ListenerShape::Explicit(ExplicitPorts {
            outbound_http_port: 15001,
            ..Default::default()
        }),
        sds: SdsSource::Ads,
    }
}

/// Visits every resource of `out`; shared ones (`Arc`) are told apart by pointer.
fn for_each_resource(out: &ProxyResources, mut f: impl FnMut(Option<usize>, &dyn Encode)) {
    for l in &out.listeners {
        f(Some(Arc::as_ptr(l) as usize), l.as_ref());
    }
    for r in &out.routes {
        f(Some(Arc::as_ptr(r) as usize), &Packed(&r.any().value));
    }
    for c in &out.clusters {
        f(Some(Arc::as_ptr(c) as usize), c.as_ref());
    }
    for e in &out.endpoints {
        f(Some(Arc::as_ptr(e) as usize), e.as_ref());
    }
}

trait Encode {
    fn len(&self) -> usize;
    fn bytes(&self) -> Vec<u8>;
}

/// Bytes the translator already encoded (route configurations).
struct Packed<'a>(&'a [u8]);

impl Encode for Packed<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn bytes(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl<M: Message> Encode for M {
    fn len(&self) -> usize {
        self.encoded_len()
    }
    fn bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let t = Instant::now();
    let resources = resources();
    let generate = t.elapsed();

    let t = Instant::now();
    let mut model = MeshModel::new(MeshSettings::default());
    for r in resources.iter().cloned() {
        model.apply(r).expect("apply synthetic resource");
    }
    let build_model = t.elapsed();
    // The same mesh with MeshConfig's access log on (JSON, the default line):
    // its cost is the post-pass over every proxy's listeners.
    let mut logged_model = MeshModel::new(MeshSettings {
        access_log: Some(AccessLog {
            path: "/dev/stdout".into(),
            encoding: AccessLogEncoding::Json,
            format: None,
        }),
        ..MeshSettings::default()
    });
    for r in resources {
        logged_model.apply(r).expect("apply synthetic resource");
    }

    let proxies = proxies();
    let one = &proxies[0];
    // cold: a fresh translator computes the proxy's scope; best of 5
    let mut cold = Duration::MAX;
    let mut one_out = ProxyResources::default();
    for _ in 0..5 {
        let t = Instant::now();
        one_out = Translator::new(&model, options()).translate(one);
        cold = cold.min(t.elapsed());
    }
    assert!(
        one_out.errors.is_empty(),
        "synthetic mesh has errors: {:?}",
        &one_out.errors[..one_out.errors.len().min(5)]
    );
    // warm: other sidecars of the same namespace once its scope exists (median of 50)
    let mut warm_translator = Translator::new(&model, options());
    warm_translator.translate(one);
    let mut warm_times: Vec<Duration> = proxies
        .iter()
        .filter(|p| p.namespace == one.namespace)
        .skip(1)
        .take(50)
        .map(|p| {
            let t = Instant::now();
            let out = warm_translator.translate(p);
            let d = t.elapsed();
            assert!(out.errors.is_empty());
            d
        })
        .collect();
    warm_times.sort();
    let warm = warm_times[warm_times.len() / 2];

    // all proxies with one translator (shared resources computed once per scope)
    let t = Instant::now();
    let mut translator = Translator::new(&model, options());
    let outputs: Vec<ProxyResources> = proxies.iter().map(|p| translator.translate(p)).collect();
    let all = t.elapsed();
    let errors: usize = outputs.iter().map(|o| o.errors.len()).sum();
    // All proxies again, without and with access logs, alternating (best of
    // three each): each run's output is dropped before the next, so neither
    // pays for fresh pages the other did not.
    let (mut all_again, mut all_logged) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        for (m, best) in [(&model, &mut all_again), (&logged_model, &mut all_logged)] {
            let t = Instant::now();
            let mut translator = Translator::new(m, options());
            let out: Vec<ProxyResources> =
                proxies.iter().map(|p| translator.translate(p)).collect();
            *best = (*best).min(t.elapsed());
            drop((translator, out));
        }
    }

    // bytes: distinct resources once (what an xDS cache encodes), and as sent to every proxy
    let mut seen = HashSet::new();
    let (mut distinct_bytes, mut sent_bytes, mut distinct_count) = (0usize, 0usize, 0usize);
    let mut size_cache: std::collections::HashMap<usize, usize> = Default::default();
    for out in &outputs {
        for_each_resource(out, |ptr, m| {
            let len = match ptr {
                Some(p) => *size_cache.entry(p).or_insert_with(|| m.len()),
                None => m.len(),
            };
            sent_bytes += len;
            if ptr.is_none_or(|p| seen.insert(p)) {
                distinct_bytes += len;
                distinct_count += 1;
            }
        });
    }
    // the baseline: protobuf-encode the same distinct output (best of 3)
    let mut encode = Duration::MAX;
    for _ in 0..3 {
        let mut seen = HashSet::new();
        let mut total = 0usize;
        let t = Instant::now();
        for out in &outputs {
            for_each_resource(out, |ptr, m| {
                if ptr.is_none_or(|p| seen.insert(p)) {
                    total += m.bytes().len();
                }
            });
        }
        encode = encode.min(t.elapsed());
        assert_eq!(total, distinct_bytes);
    }
    let one_bytes: usize = {
        let mut n = 0;
        for_each_resource(&one_out, |_, m| n += m.len());
        n
    };

    println!("generate_ms {:.1}", ms(generate));
    println!("build_model_ms {:.1}", ms(build_model));
    println!("one_sidecar_cold_ms {:.2}", ms(cold));
    println!("one_sidecar_warm_ms {:.3}", ms(warm));
    println!("one_sidecar_clusters {}", one_out.clusters.len());
    println!("one_sidecar_endpoints {}", one_out.endpoints.len());
    println!("one_sidecar_bytes {one_bytes}");
    println!("proxies {}", proxies.len());
    println!("all_proxies_ms {:.1}", ms(all));
    println!("translation_errors {errors}");
    println!("all_proxies_access_log_ms {:.1}", ms(all_logged));
    println!("all_proxies_again_ms {:.1}", ms(all_again));
    println!("distinct_resources {distinct_count}");
    println!("distinct_output_bytes {distinct_bytes}");
    println!("sent_output_bytes {sent_bytes}");
    println!("encode_distinct_ms {:.1}", ms(encode));
    println!(
        "ratio_translate_all_to_encode {:.2}",
        all.as_secs_f64() / encode.as_secs_f64()
    );
}
