//! `make bench` for a push round of the operator's xDS server: every sidecar of the
//! synthetic mesh (operator/translate/examples/support/synthetic_mesh.rs, 2,000
//! sidecars) gets its snapshot from [`ModelSnapshots`], as `flush` asks for them after a
//! change: translated in the interception shape, packed and interned.
//!
//! Baseline, measured in the same run: translating the same proxies with one
//! translator and nothing else (issue 4's "all sidecars" figure, in this shape).
//! `--proxies N` takes the first N sidecars only. Prints `key value` lines.
use std::alloc::{GlobalAlloc, Layout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use trellis_model::{MeshModel, MeshSettings};
use trellis_sources::ModelSnapshots;
use trellis_translate::{ListenerShape, SdsSource, TranslateOptions, Translator};
use trellis_xds::{ProxyId, ProxyKind, SnapshotSource};

#[path = "../../translate/examples/support/synthetic_mesh.rs"]
#[allow(dead_code)]
mod synthetic_mesh;

// The operator's allocator (operator/src/main.rs), counting what is freed while
// `COUNT_FREES` is on (a relaxed load otherwise).
#[global_allocator]
static ALLOCATOR: CountingFrees = CountingFrees;
static COUNT_FREES: AtomicBool = AtomicBool::new(false);
static FREED: AtomicUsize = AtomicUsize::new(0);

struct CountingFrees;

unsafe impl GlobalAlloc for CountingFrees {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNT_FREES.load(Ordering::Relaxed) {
            FREED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// The shape and certificate files of an injected sidecar (as the operator runs it).
fn options() -> TranslateOptions {
    TranslateOptions {
        shape: ListenerShape::Interception,
        sds: SdsSource::Files {
            workload_cert_file: "/etc/trellis/certs/cert-chain.pem".into(),
            trust_bundle_file: "/etc/trellis/certs/root-cert.pem".into(),
            watched_directory: Some("/etc/trellis/certs".into()),
        },
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let limit = match argv.as_slice() {
        [] => usize::MAX,
        [flag, n] if flag == "--proxies" => n.parse().expect("--proxies N"),
        _ => panic!("usage: snapshot_bench [--proxies N]"),
    };
    let mut model = MeshModel::new(MeshSettings::default());
    for r in synthetic_mesh::resources() {
        model.apply(r).expect("apply synthetic resource");
    }
    let model = Arc::new(model);
    let proxies: Vec<_> = synthetic_mesh::proxies().into_iter().take(limit).collect();

    let t = Instant::now();
    let mut translator = Translator::new(&model, options());
    let translated: usize = proxies
        .iter()
        .map(|p| translator.translate(p).clusters.len())
        .sum();
    let translate_all = t.elapsed();
    drop(translator);

    let snapshots = ModelSnapshots::new(options());
    snapshots.set(model.clone(), Default::default());
    let ids: Vec<ProxyId> = proxies
        .iter()
        .map(|p| {
            let w = model.workload(&p.namespace, &p.name).expect("workload");
            ProxyId::new(
                ProxyKind::Sidecar,
                &p.namespace,
                &p.name,
                &w.service_account,
            )
        })
        .collect();
    let t = Instant::now();
    let held: Vec<_> = ids
        .iter()
        .map(|id| snapshots.snapshot(id).expect("snapshot"))
        .collect();
    let push = t.elapsed();
    let clusters: usize = held
        .iter()
        .map(|s| s.get(trellis_xds::ResourceType::Cluster).len())
        .sum();
    assert_eq!(
        clusters, translated,
        "snapshots carry every translated cluster"
    );
    // What the source keeps between snapshots (the translator and the packed
    // resources): the bytes freed when a new model replaces them.
    COUNT_FREES.store(true, Ordering::Relaxed);
    snapshots.set(
        Arc::new(MeshModel::new(MeshSettings::default())),
        Default::default(),
    );
    COUNT_FREES.store(false, Ordering::Relaxed);
    let kept_bytes = FREED.load(Ordering::Relaxed);
    // What the server holds for the proxies it serves: their snapshots, with
    // the packed resources only they keep now.
    FREED.store(0, Ordering::Relaxed);
    COUNT_FREES.store(true, Ordering::Relaxed);
    drop(held);
    COUNT_FREES.store(false, Ordering::Relaxed);
    let held_bytes = FREED.load(Ordering::Relaxed);

    println!("proxies {}", proxies.len());
    println!("translate_all_ms {:.1}", translate_all.as_secs_f64() * 1e3);
    println!("push_round_ms {:.1}", push.as_secs_f64() * 1e3);
    println!(
        "push_per_proxy_ms {:.2}",
        push.as_secs_f64() * 1e3 / proxies.len() as f64
    );
    println!("translator_kept_mb {:.1}", kept_bytes as f64 / 1e6);
    println!("snapshots_held_mb {:.1}", held_bytes as f64 / 1e6);
    println!(
        "ratio_push_to_translate {:.2}",
        push.as_secs_f64() / translate_all.as_secs_f64()
    );
}
