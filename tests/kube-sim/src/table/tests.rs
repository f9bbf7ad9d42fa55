use super::*;
use proptest::prelude::*;

const NOW: &str = "2024-05-10T12:00:00Z";

fn crd_version() -> Value {
    json!({"name": "v1", "additionalPrinterColumns": [
        {"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts"},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]})
}

fn widget(name: &str, created: &str) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
           "spec": {"hosts": ["a", "b"], "replicas": 3},
           "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

#[test]
fn crd_printer_columns() {
    let printer = Printer::for_crd_version(&crd_version()).unwrap();
    let table = to_table(
        &printer,
        &[widget("w1", "2024-05-10T11:57:00Z")],
        IncludeObject::Metadata,
        NOW,
    );
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Hosts", "Ready", "Replicas", "Age"]);
    assert_eq!(table["columnDefinitions"][0]["format"], "name");
    assert_eq!(table["columnDefinitions"][3]["priority"], 1);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["w1", r#"["a","b"]"#, "True", 3, "3m"])
    );
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "w1");
    assert!(table["rows"][0]["object"].get("spec").is_none());
}

#[test]
fn include_object_modes_and_missing_values() {
    let printer = Printer::for_crd_version(&crd_version()).unwrap();
    let bare = json!({"metadata": {"name": "x", "creationTimestamp": NOW}});
    let table = to_table(
        &printer,
        std::slice::from_ref(&bare),
        IncludeObject::None,
        NOW,
    );
    assert!(table["rows"][0].get("object").is_none());
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["x", null, null, null, "0s"])
    );
    let table = to_table(
        &printer,
        std::slice::from_ref(&bare),
        IncludeObject::Object,
        NOW,
    );
    assert_eq!(table["rows"][0]["object"], bare);
    assert_eq!(IncludeObject::parse(None).unwrap(), IncludeObject::Metadata);
    assert_eq!(
        IncludeObject::parse(Some("Object")).unwrap(),
        IncludeObject::Object
    );
    assert_eq!(IncludeObject::parse(Some("All")).unwrap_err().code, 400);
}

#[test]
fn defaults_and_builtins() {
    let printer = Printer::for_crd_version(&json!({"name": "v1"})).unwrap();
    let table = to_table(
        &printer,
        &[widget("w", "2024-05-08T08:00:00Z")],
        IncludeObject::None,
        NOW,
    );
    assert_eq!(table["rows"][0]["cells"], json!(["w", "2d4h"]));
    let cm = json!({"metadata": {"name": "c", "creationTimestamp": "2024-05-10T11:59:00Z"}, "data": {"a": "1", "b": "2"}});
    let table = to_table(
        &Printer::for_kind("ConfigMap"),
        &[cm],
        IncludeObject::None,
        NOW,
    );
    assert_eq!(table["rows"][0]["cells"], json!(["c", 2, "60s"]));
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                     "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1}]}});
    let table = to_table(&Printer::for_kind("Pod"), &[pod], IncludeObject::None, NOW);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["p", "1/2", "Running", "3", "<unknown>"])
    );
    let table = to_table(&Printer::for_kind("Lease"), &[], IncludeObject::None, NOW);
    assert_eq!(table["columnDefinitions"].as_array().unwrap().len(), 2);
    assert!(Printer::for_crd_version(&json!({"additionalPrinterColumns": [{"name": "X", "type": "string", "jsonPath": "bad"}]})).is_err());
}

#[test]
fn events_print_when_what_and_why() {
    let core = json!({"metadata": {"name": "a.1", "creationTimestamp": "2024-05-10T11:00:00Z"},
        "involvedObject": {"kind": "ConfigMap", "name": "a", "fieldPath": "data"},
        "reason": "Synced", "message": " all good\n", "type": "Normal",
        "source": {"component": "trellis"}, "count": 3,
        "firstTimestamp": "2024-05-10T11:50:00Z", "lastTimestamp": "2024-05-10T11:59:30Z"});
    let modern = json!({"metadata": {"name": "b.2", "creationTimestamp": "2024-05-10T11:00:00Z"},
        "regarding": {"kind": "Pod", "name": "web"}, "note": "pulled", "reason": "Pulled",
        "type": "Normal", "reportingController": "kubelet",
        "eventTime": "2024-05-10T11:58:00.000000Z"});
    let table = to_table(
        &Printer::for_kind("Event"),
        &[core, modern],
        IncludeObject::None,
        NOW,
    );
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
    assert_eq!(
        table["rows"][0]["cells"],
        json!([
            "30s",
            "Normal",
            "Synced",
            "configmap/a",
            "data",
            "trellis",
            "all good",
            "10m",
            "3",
            "a.1"
        ])
    );
    assert_eq!(
        table["rows"][1]["cells"],
        json!([
            "2m", "Normal", "Pulled", "pod/web", "", "kubelet", "pulled", "2m", "1", "b.2"
        ])
    );
}

#[test]
fn ages_like_kubectl() {
    let cases = [
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (180, "3m"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 600, "3h10m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (52 * 3600, "2d4h"),
        (3 * 86_400, "3d"),
        (10 * 86_400, "10d"),
        (800 * 86_400, "2y70d"),
        (9 * 365 * 86_400, "9y"),
        (-1, "0s"),
        (-5, "<invalid>"),
    ];
    for (seconds, expected) in cases {
        assert_eq!(human_duration(seconds), expected, "{seconds}");
    }
}

#[test]
fn timestamps() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339("2024-05-10T12:00:00Z"), Some(1_715_342_400));
    assert_eq!(
        parse_rfc3339("2024-05-10T14:00:00.123456+02:00"),
        Some(1_715_342_400)
    );
    assert_eq!(parse_rfc3339("2024-05-10"), None);
    assert_eq!(parse_rfc3339("2024-13-10T12:00:00Z"), None);
}

proptest! {
    #[test]
    fn timestamp_parser_never_panics(s in "\\PC{0,30}") {
        let _ = parse_rfc3339(&s);
    }

    #[test]
    fn timestamps_round_trip_days(days in 0i64..40_000, secs in 0i64..86_400) {
        let t = days * 86_400 + secs;
        // Format through the inverse civil algorithm to check the parser against it.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let text = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60);
        prop_assert_eq!(parse_rfc3339(&text), Some(t));
    }

    #[test]
    fn human_duration_is_never_empty(s in -10i64..1_000_000_000) {
        prop_assert!(!human_duration(s).is_empty());
    }
}
