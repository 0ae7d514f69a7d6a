//! Bearer tokens in reverse-proxy mode: a valid token reaches the app with
//! its identity (and beats the session cookie), a bad one gets 401
//! `invalid_token` and never reaches the app, groups decide as for sessions.

#[path = "../e2e/support/jwt.rs"]
mod jwt;

use serde_json::{json, Value};

use crate::support::{standard_rules, Harness, Opts};
use jwt::{claims, JwksServer, TestKey};

const ISS: &str = "https://ci.example.test";

/// The standard rules (with the harness's `{app}` placeholder) plus the issuer.
fn opts(server: &JwksServer) -> Opts {
    let marker = std::net::SocketAddr::from(([192, 0, 2, 1], 1));
    let rules = standard_rules(marker).replace(&marker.to_string(), "{app}");
    Opts {
        extra: format!(
            "{rules}\n[[oidc.bearer_issuers]]\nissuer = \"{ISS}\"\njwks_url = \"{}\"\naudiences = [\"ci\"]\n",
            server.url()
        ),
        ..Opts::default()
    }
}

#[tokio::test]
async fn proxied_requests_accept_bearer_tokens() {
    let key = TestKey::ed25519("ci-1");
    let server = JwksServer::start(jwt::jwks(&[&key]));
    let h = Harness::start_with(opts(&server)).await;
    let cookie = h.session_cookie("bob").await;
    let url = |path: &str| format!("http://app.test:{}{path}", h.gw.addr.port());
    let token = key.sign(&claims(
        ISS,
        "ci",
        "deployer",
        json!({"groups": ["admins"]}),
    ));
    let b = h.browser();
    let get = |path: &str, token: &str| {
        b.http
            .get(url(path))
            .header("Accept", "application/json")
            .header("Cookie", format!("_portcullis={cookie}"))
            .header("Authorization", format!("Bearer {token}"))
            .send()
    };

    let res = get("/admin/x", &token).await.unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["headers"]["x-auth-user"], json!(["deployer"]));
    assert_eq!(echo["headers"]["x-auth-groups"], json!(["admins"]));

    let expired = key.sign(&claims(
        ISS,
        "ci",
        "deployer",
        json!({"exp": jwt::now() - 3600}),
    ));
    let res = get("/page", &expired).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert!(!res.text().await.unwrap().contains("\"echo\""));

    let plain = key.sign(&claims(ISS, "ci", "viewer", json!({})));
    let res = get("/admin/x", &plain).await.unwrap();
    assert_eq!(res.status(), 403, "no admins group in the token");
}
