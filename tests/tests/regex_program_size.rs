//! Everyday regexes compile to RE2 programs larger than Envoy's default limit
//! (100): `^/api/v[0-9]+/users/[a-z0-9-]{1,64}$` is 268, and Envoy would refuse
//! the whole route table. Trellis bootstraps raise the limit as Istio's do; on
//! real Envoy the route loads and matches.
use std::net::Ipv4Addr;

use trellis_e2e::Upstream;
use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{plain_workload, service, start_client, virtual_service};

#[test]
fn a_regex_over_envoys_default_program_size_routes() {
    let users = Upstream::echo("users", Ipv4Addr::new(127, 0, 0, 195));
    let resources = vec![
        service("users", "users"),
        plain_workload("users-1", "users", users.addr(), &[]),
        virtual_service(
            r#"
metadata: {name: users, namespace: shop}
spec:
  hosts: [users]
  http:
  - match: [{uri: {regex: "^/api/v[0-9]+/users/[a-z0-9-]{1,64}$"}}]
    route: [{destination: {host: users}}]
"#,
        ),
    ];
    let client = start_client(&test_ca(), resources, Ipv4Addr::new(127, 0, 0, 194));
    assert_eq!(client.served_by("users", "/api/v2/users/alice-01"), "users");
    assert_eq!(
        client.get("users", "/api/v2/users/Alice").status,
        404,
        "no route matches"
    );
}
