//! `X-Request-Id`: returned on every answer, passed to the upstream in
//! reverse-proxy mode, kept from a trusted peer when well formed, replaced
//! from anyone else.

use crate::support::{Harness, Opts};

const RULES: &str = r#"
[[rule]]
name = "rid-proxied"
host = "proxied.test"
policy = "public"
upstream = "http://{app}"
"#;

async fn harness(server: &str) -> Harness {
    Harness::start_with(Opts {
        extra: RULES.into(),
        server: server.into(),
        ..Opts::default()
    })
    .await
}

/// `GET /echo` on the proxied host with an optional `X-Request-Id`: the id
/// the client got back and the ids the upstream saw.
async fn proxied(h: &Harness, sent: Option<&str>) -> (String, Vec<String>) {
    let mut req = h
        .client()
        .get(format!("{}/echo", h.base))
        .header("Host", "proxied.test")
        .header("Accept", "application/json");
    if let Some(id) = sent {
        req = req.header("X-Request-Id", id);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let back = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let echo: serde_json::Value = res.json().await.unwrap();
    let seen = echo["headers"]["x-request-id"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (back, seen)
}

#[tokio::test]
async fn a_trusted_peers_id_is_kept_and_passed_upstream() {
    let h = harness("").await;
    let (back, seen) = proxied(&h, Some("edge-42")).await;
    assert_eq!(back, "edge-42");
    assert_eq!(seen, ["edge-42"]);
    // Without one, an id is made, returned and passed on.
    let (back, seen) = proxied(&h, None).await;
    assert!(back.len() == 25 && back.as_bytes()[8] == b'-', "{back}");
    assert_eq!(seen, std::slice::from_ref(&back));
    // A malformed one (too long) is replaced.
    let long = "x".repeat(129);
    let (back, seen) = proxied(&h, Some(&long)).await;
    assert_ne!(back, long);
    assert_eq!(seen, [back]);
}

#[tokio::test]
async fn an_untrusted_peers_id_is_replaced() {
    let h = harness("trusted_proxies = [\"10.0.0.0/8\"]").await;
    let (back, seen) = proxied(&h, Some("chosen-by-the-client")).await;
    assert_ne!(back, "chosen-by-the-client");
    assert_eq!(seen, [back]);
}

#[tokio::test]
async fn forward_auth_answers_carry_an_id() {
    let h = harness("").await;
    let a = h.check("GET", "proxied.test", "/").send().await.unwrap();
    let b = h.check("GET", "proxied.test", "/").send().await.unwrap();
    let id = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id(&a), id(&b), "each check gets its own id");
    let kept = h
        .check("GET", "proxied.test", "/")
        .header("X-Request-Id", "traefik-7")
        .send()
        .await
        .unwrap();
    assert_eq!(id(&kept), "traefik-7");
}
