//! `trellis operator` against the Kubernetes API simulator, checked with the real
//! kubectl: mesh objects get `Accepted` conditions on their status subresource
//! (invalid → False naming the field, valid → True with observedGeneration),
//! `kubectl get meshstatus -A` shows the mesh, rejected configuration raises an
//! event, and the operator never writes a user's spec, labels or annotations —
//! nor rewrites an unchanged status after a restart.

use kube_sim::{Kubectl, TestServer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `trellis operator`; killed by PID when dropped, even on failure.
struct Operator {
    child: Option<Child>,
    log: PathBuf,
}

impl Operator {
    fn start(server: &TestServer, dir: &Path, identity: &str) -> Operator {
        let log = dir.join(format!("{identity}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["operator", "--kubeconfig"])
            .arg(server.kubeconfig_path())
            .args([
                "--namespace",
                "trellis-system",
                "--metrics-addr",
                "127.0.0.1:0",
                "--xds-addr",
                "127.0.0.1:0",
                "--webhook-addr",
                "127.0.0.1:0",
                "--identity",
                identity,
                "--lease-duration",
                "3s",
                "--renew-deadline",
                "2s",
                "--retry-period",
                "500ms",
            ])
            .env("RUST_LOG", "info,trellis_status=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting trellis operator");
        Operator {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded) for the graceful exit that releases the Lease.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the operator did not stop on SIGTERM:\n{}", self.log());
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` until it returns Some (bounded wait for the operator to act).
fn eventually<T>(what: &str, op: &Operator, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; operator log:\n{}", op.log());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn vs(name: &str, a: i32, b: i32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: shop
  labels: {{team: payments}}
  annotations: {{owner: alice}}
spec:
  hosts: [cart]
  http:
  - route:
    - destination: {{host: cart, subset: v1}}
      weight: {a}
    - destination: {{host: cart, subset: v2}}
      weight: {b}
"
    )
}

/// What `kubectl get -o yaml` shows, parsed.
fn yaml(k: &Kubectl, args: &[&str]) -> (String, serde_yaml::Value) {
    let mut all = args.to_vec();
    all.extend(["-o", "yaml"]);
    let text = k.run(&all);
    let value = serde_yaml::from_str(&text).expect("kubectl YAML");
    (text, value)
}

/// CRDs from `trellis crds`, the operator's namespace, mesh namespace `shop` with a
/// valid and an invalid VirtualService.
fn setup(k: &Kubectl) {
    let crds = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .arg("crds")
        .output()
        .expect("trellis crds");
    assert!(crds.status.success());
    k.apply(&String::from_utf8(crds.stdout).unwrap());
    k.run(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=20s",
    ]);
    k.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: trellis-system}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    k.run(&["label", "namespace", "shop", "istio-injection=enabled"]);
    k.apply(&vs("good", 90, 10));
    k.apply(&vs("bad", 60, 30));
}

#[test]
fn operator_writes_status_conditions_meshstatus_and_events_without_touching_spec() {
    let server = TestServer::start().expect("simulator starts");
    let k = Kubectl::new(server.kubeconfig_path());
    let dir = tempfile::tempdir().unwrap();

    setup(&k);

    let op = Operator::start(&server, dir.path(), "op-a");

    // Invalid: Accepted=False naming the field, visible through `kubectl get vs -o yaml`.
    let bad = eventually("Accepted on VirtualService bad", &op, || {
        let v = k.get_json(&["vs", "bad", "-n", "shop"])?;
        condition(&v, "Accepted").is_some().then_some(v)
    });
    let accepted = condition(&bad, "Accepted").unwrap();
    assert_eq!(accepted["status"], "False", "{bad}");
    assert_eq!(accepted["reason"], "Invalid");
    assert_eq!(
        accepted["message"],
        "spec.http[0].route: weights of the destinations must sum to 100 (they sum to 90)"
    );
    assert_eq!(accepted["observedGeneration"], 1);
    let (text, parsed) = yaml(&k, &["get", "vs", "bad", "-n", "shop"]);
    assert!(
        text.contains("spec.http[0].route: weights of the destinations"),
        "{text}"
    );
    assert_eq!(
        parsed["status"]["observedGeneration"],
        serde_yaml::Value::from(1)
    );

    // Valid: Accepted=True at the object's generation.
    let good = eventually("Accepted on VirtualService good", &op, || {
        let v = k.get_json(&["vs", "good", "-n", "shop"])?;
        condition(&v, "Accepted").is_some().then_some(v)
    });
    let accepted = condition(&good, "Accepted").unwrap();
    assert_eq!(accepted["status"], "True", "{good}");
    assert_eq!(accepted["reason"], "Accepted");
    assert_eq!(
        good["status"]["observedGeneration"],
        good["metadata"]["generation"]
    );

    // An edit of the spec: the new generation is observed.
    k.apply(&vs("good", 80, 20));
    let good = eventually("observedGeneration 2 on good", &op, || {
        let v = k.get_json(&["vs", "good", "-n", "shop"])?;
        (v["status"]["observedGeneration"] == 2).then_some(v)
    });
    assert_eq!(good["metadata"]["generation"], 2);
    assert_eq!(
        condition(&good, "Accepted").unwrap()["observedGeneration"],
        2
    );

    // The operator wrote status only: its managedFields entry is on the status
    // subresource and owns nothing but status; spec, labels, annotations are the user's.
    let full = k
        .get_json(&["vs", "good", "-n", "shop", "--show-managed-fields"])
        .expect("VirtualService good");
    let entries = full["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    let ours: Vec<&Value> = entries
        .iter()
        .filter(|e| e["manager"] == "trellis")
        .collect();
    assert_eq!(ours.len(), 1, "{entries:?}");
    assert_eq!(ours[0]["subresource"], "status");
    assert_eq!(ours[0]["operation"], "Apply");
    let owned: Vec<&String> = ours[0]["fieldsV1"].as_object().unwrap().keys().collect();
    assert_eq!(owned, ["f:status"], "{}", ours[0]);
    assert_eq!(
        full["metadata"]["labels"],
        serde_json::json!({"team": "payments"})
    );
    assert_eq!(full["metadata"]["annotations"]["owner"], "alice");
    assert_eq!(full["spec"]["http"][0]["route"][0]["weight"], 80);

    // MeshStatus: the control plane and the mesh namespace, with the printer columns.
    eventually("control-plane MeshStatus ready", &op, || {
        let v = k.get_json(&["meshstatus", "mesh", "-n", "trellis-system"])?;
        (v["status"]["ready"] == true).then_some(v)
    });
    let shop = eventually("MeshStatus of shop", &op, || {
        let v = k.get_json(&["meshstatus", "mesh", "-n", "shop"])?;
        (v["status"]["configRejected"] == 1).then_some(v)
    });
    assert_eq!(shop["status"]["ready"], false, "{shop}");
    assert_eq!(shop["status"]["configAccepted"], 1);
    let ready = condition(&shop, "Ready").unwrap();
    assert_eq!(
        ready["message"],
        "1 of 2 mesh configuration objects rejected; first: VirtualService/shop/bad: spec.http[0].route: weights of the destinations must sum to 100 (they sum to 90)."
    );
    assert_eq!(condition(&shop, "Degraded").unwrap()["status"], "False");
    let table = k.run(&["get", "meshstatus", "-A"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "PROXIES",
            "WORKLOADS",
            "IDENTITIES",
            "EXPIRING",
            "ERRORS",
            "AGE"
        ],
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert_eq!(
        &lines[1][..8],
        ["shop", "mesh", "false", "0", "0", "0", "0", "1"],
        "{table}"
    );
    assert_eq!(
        &lines[2][..5],
        ["trellis-system", "mesh", "true", "0", "0"],
        "{table}"
    );
    let cp = k
        .get_json(&["meshstatus", "mesh", "-n", "trellis-system"])
        .expect("the control-plane MeshStatus");
    assert_eq!(cp["status"]["caMode"], "self-signed", "{cp}");
    assert_eq!(cp["status"]["trustDomain"], "cluster.local");
    assert_eq!(cp["status"]["leader"], "op-a");
    // openssl's `-fingerprint -sha256` form: 32 hex pairs joined by colons.
    let fingerprint = cp["status"]["rootFingerprint"].as_str().unwrap_or_default();
    assert_eq!(fingerprint.split(':').count(), 32, "{cp}");
    assert!(
        fingerprint
            .split(':')
            .all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok())
    );
    assert!(
        cp["status"]["rootExpiry"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{cp}"
    );

    // The rejection is an event on the VirtualService.
    let events = eventually("ConfigRejected event", &op, || {
        let v = k.get_json(&["events.events.k8s.io", "-n", "shop"])?;
        let found = v["items"]
            .as_array()?
            .iter()
            .any(|e| e["reason"] == "ConfigRejected" && e["regarding"]["name"] == "bad");
        found.then_some(v)
    });
    let event = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "ConfigRejected")
        .unwrap();
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["kind"], "VirtualService");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("spec.http[0].route"),
        "{event}"
    );

    // A restart rewrites nothing that is already right: once the new leader has
    // made its first pass (its identity is in the control-plane MeshStatus), the
    // VirtualServices still have the resourceVersions they had.
    let rv = |name: &str| {
        k.get_json(&["vs", name, "-n", "shop"])
            .expect("VirtualService")["metadata"]["resourceVersion"]
            .clone()
    };
    let before = (rv("good"), rv("bad"));
    op.stop();
    let op = Operator::start(&server, dir.path(), "op-b");
    eventually("op-b leading and through a pass", &op, || {
        let v = k.get_json(&["meshstatus", "mesh", "-n", "trellis-system"])?;
        (v["status"]["leader"] == "op-b").then_some(())
    });
    assert_eq!(
        (rv("good"), rv("bad")),
        before,
        "statuses were rewritten after a restart"
    );
    // ...and the new leader does not report the same rejection again.
    let rejected_events = k
        .list(&["events.events.k8s.io", "-n", "shop"])
        .iter()
        .filter(|e| e["reason"] == "ConfigRejected" && e["regarding"]["name"] == "bad")
        .count();
    assert_eq!(rejected_events, 1);

    // Fixing the object flips it to Accepted and the namespace to ready.
    k.apply(&vs("bad", 50, 50));
    eventually("bad accepted at generation 2", &op, || {
        let v = k.get_json(&["vs", "bad", "-n", "shop"])?;
        let c = condition(&v, "Accepted")?;
        (c["status"] == "True" && c["observedGeneration"] == 2).then_some(())
    });
    eventually("shop ready", &op, || {
        let v = k.get_json(&["meshstatus", "mesh", "-n", "shop"])?;
        (v["status"]["ready"] == true && v["status"]["errors"] == 0).then_some(())
    });

    // Translation findings: with a Service `cart` but no DestinationRule defining its
    // subsets, both VirtualServices stay accepted with a Warning naming the field.
    k.apply("apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {app: cart}\n  ports: [{name: http, port: 8080}]\n");
    let warned = eventually("Warning on good", &op, || {
        let v = k.get_json(&["vs", "good", "-n", "shop"])?;
        condition(&v, "Warning").cloned()
    });
    assert_eq!(warned["status"], "True", "{warned}");
    assert_eq!(warned["reason"], "UnknownSubset", "{warned}");
    assert!(
        warned["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.http[0].route[0].destination"),
        "{warned}"
    );
    let good = k
        .get_json(&["vs", "good", "-n", "shop"])
        .expect("VirtualService good");
    assert_eq!(condition(&good, "Accepted").unwrap()["status"], "True");
    eventually("shop counting the warnings", &op, || {
        let v = k.get_json(&["meshstatus", "mesh", "-n", "shop"])?;
        (v["status"]["errors"] == 2).then_some(())
    });

    // Leaving the mesh removes the namespace's MeshStatus.
    k.run(&["label", "namespace", "shop", "istio-injection-"]);
    eventually("MeshStatus of shop removed", &op, || {
        k.get_json(&["meshstatus", "mesh", "-n", "shop"])
            .is_none()
            .then_some(())
    });
    op.stop();
}

#[test]
fn only_the_leader_writes_status_and_the_other_replica_takes_over() {
    let server = TestServer::start().expect("simulator starts");
    let k = Kubectl::new(server.kubeconfig_path());
    let dir = tempfile::tempdir().unwrap();
    setup(&k);
    let mut replicas = [
        Some(Operator::start(&server, dir.path(), "op-a")),
        Some(Operator::start(&server, dir.path(), "op-b")),
    ];
    let watch = |i: usize| replicas[i].as_ref().unwrap();
    let leader = eventually("the control-plane MeshStatus", watch(0), || {
        let v = k.get_json(&["meshstatus", "mesh", "-n", "trellis-system"])?;
        v["status"]["leader"].as_str().map(str::to_string)
    });
    let lease = k
        .get_json(&["lease", "trellis-operator-leader", "-n", "trellis-system"])
        .expect("the leader Lease");
    assert_eq!(lease["spec"]["holderIdentity"], leader.as_str(), "{lease}");
    eventually("Accepted on bad", watch(0), || {
        let v = k.get_json(&["vs", "bad", "-n", "shop"])?;
        condition(&v, "Accepted").map(|_| ())
    });
    // A change both replicas see: the leader writes its status; the follower, which
    // would write MeshStatus with its own name in the same pass, writes nothing.
    k.apply(&vs("third", 70, 30));
    eventually("Accepted on third", watch(0), || {
        let v = k.get_json(&["vs", "third", "-n", "shop"])?;
        condition(&v, "Accepted").map(|_| ())
    });
    let ms = k
        .get_json(&["meshstatus", "mesh", "-n", "trellis-system"])
        .expect("the control-plane MeshStatus");
    assert_eq!(ms["status"]["leader"], leader.as_str(), "{ms}");

    // The leader dies without releasing the Lease; the other replica, which has
    // served from its own caches all along, takes over the writes after expiry.
    let (dead, survivor, next) = if leader == "op-a" {
        (0, 1, "op-b")
    } else {
        (1, 0, "op-a")
    };
    drop(replicas[dead].take());
    let survivor = replicas[survivor].take().unwrap();
    eventually("the other replica writing MeshStatus", &survivor, || {
        let v = k.get_json(&["meshstatus", "mesh", "-n", "trellis-system"])?;
        (v["status"]["leader"] == next).then_some(())
    });
    // It picks up changes made after the handover.
    k.apply(&vs("bad", 50, 50));
    eventually("bad accepted by the new leader", &survivor, || {
        let v = k.get_json(&["vs", "bad", "-n", "shop"])?;
        let c = condition(&v, "Accepted")?;
        (c["status"] == "True" && c["observedGeneration"] == 2).then_some(())
    });
    survivor.stop();
}
