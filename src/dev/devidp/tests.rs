//! Flow tests for the development issuer over real loopback HTTP, using a
//! plain reqwest client (no redirects followed) so every status, header and
//! error code the issuer sends is visible.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::header::LOCATION;
use sha2::{Digest, Sha256};

use super::*;

const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback";

struct Harness {
    idp: DevIdp,
    http: reqwest::Client,
}

/// One login's PKCE pair, state and nonce.
struct Flow {
    verifier: String,
    challenge: String,
    state: String,
    nonce: String,
}

fn config() -> DevIdpConfig {
    let mut cfg = DevIdpConfig::demo("app", Some("s3cret"), REDIRECT);
    cfg.clients.push(DevClient {
        client_id: "public".into(),
        client_secret: None,
        redirect_uris: vec![],
    });
    cfg
}

async fn harness(cfg: DevIdpConfig) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let idp = start(listener, cfg).await.expect("issuer starts");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Harness { idp, http }
}

impl Flow {
    fn new() -> Self {
        let verifier = format!("{}{}", random_token(), "-._~");
        let challenge = keys::b64(&Sha256::digest(verifier.as_bytes()));
        Flow {
            verifier,
            challenge,
            state: random_token(),
            nonce: random_token(),
        }
    }

    fn authorize_params<'a>(
        &'a self,
        client_id: &'a str,
        redirect_uri: &'a str,
        scope: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", scope),
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("code_challenge", &self.challenge),
            ("code_challenge_method", "S256"),
        ]
    }
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .expect("absolute location")
        .query_pairs()
        .into_owned()
        .collect()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get(LOCATION)
        .expect("Location header")
        .to_str()
        .expect("ascii")
        .to_owned()
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.idp.issuer())
    }

    /// Logs in through the form and returns the code.
    async fn login(
        &self,
        flow: &Flow,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
        user: &str,
    ) -> String {
        let params = flow.authorize_params(client_id, redirect_uri, scope);
        let form_page = self
            .http
            .get(self.url("/authorize"))
            .query(&params)
            .send()
            .await
            .expect("get");
        assert_eq!(form_page.status(), 200);
        let html = form_page.text().await.expect("body");
        assert!(html.contains("Development issuer \u{2014} users alice and bob, password demo"));
        let mut form = params.clone();
        form.push(("username", user));
        form.push(("password", "demo"));
        let res = self
            .http
            .post(self.url("/authorize"))
            .form(&form)
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 302);
        let loc = location(&res);
        assert!(loc.starts_with(redirect_uri), "{loc}");
        let q = query_of(&loc);
        assert_eq!(q["state"], flow.state);
        assert_eq!(q["iss"], self.idp.issuer());
        q["code"].clone()
    }

    async fn token(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.post(self.url("/token")).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let res = req.send().await.expect("token request");
        let status = res.status().as_u16();
        (status, res.json().await.expect("json body"))
    }

    async fn redeem(&self, flow: &Flow, code: &str) -> (u16, serde_json::Value) {
        self.token(
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &flow.verifier),
            ],
            Some(("app", "s3cret")),
        )
        .await
    }

    fn claims(&self, id_token: &serde_json::Value) -> serde_json::Value {
        self.idp
            .shared
            .keys
            .verify(id_token.as_str().expect("id_token string"))
            .expect("signed by the issuer")
    }

    async fn userinfo(&self, access_token: &str) -> (u16, serde_json::Value) {
        let res = self
            .http
            .get(self.url("/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("userinfo");
        let status = res.status().as_u16();
        (status, res.json().await.expect("json body"))
    }
}

#[tokio::test]
async fn discovery_and_jwks() {
    let h = harness(config()).await;
    let d: serde_json::Value = h
        .http
        .get(h.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(d["issuer"], h.idp.issuer());
    assert!(!h.idp.issuer().ends_with('/'));
    assert_eq!(d["token_endpoint"], h.url("/token"));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    let jwks: serde_json::Value = h
        .http
        .get(h.url("/jwks"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], h.idp.shared.keys.kid());
    let res = h.http.delete(h.url("/jwks")).send().await.expect("delete");
    assert_eq!(res.status(), 405);
    let res = h.http.get(h.url("/nope")).send().await.expect("get");
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn code_flow_with_basic_auth_userinfo_and_refresh() {
    let h = harness(config()).await;
    let flow = Flow::new();
    let code = h
        .login(
            &flow,
            "app",
            REDIRECT,
            "openid profile email groups offline_access",
            "alice",
        )
        .await;
    let (status, tokens) = h.redeem(&flow, &code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    let claims = h.claims(&tokens["id_token"]);
    assert_eq!(claims["iss"], h.idp.issuer());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "app");
    assert_eq!(claims["azp"], "app");
    assert_eq!(claims["nonce"], flow.nonce.as_str());
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "staff"]));
    assert_eq!(
        claims["at_hash"],
        keys::at_hash(tokens["access_token"].as_str().expect("str"))
    );
    assert!(claims["exp"].as_u64() > claims["iat"].as_u64());

    let access = tokens["access_token"].as_str().expect("access token");
    let (status, info) = h.userinfo(access).await;
    assert_eq!(status, 200);
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["email_verified"], true);

    assert!(h.idp.set_groups("alice", ["staff"]));
    assert!(!h.idp.set_groups("nobody", Vec::<String>::new()));
    let refresh = tokens["refresh_token"].as_str().expect("refresh token");
    let (status, renewed) = h
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            Some(("app", "s3cret")),
        )
        .await;
    assert_eq!(status, 200, "{renewed}");
    let claims2 = h.claims(&renewed["id_token"]);
    assert_eq!(claims2["groups"], serde_json::json!(["staff"]));
    assert_eq!(claims2["sid"], claims["sid"]);
    assert_eq!(claims2["auth_time"], claims["auth_time"]);
    assert!(claims2.get("nonce").is_none());
    let (_, info) = h
        .userinfo(renewed["access_token"].as_str().expect("str"))
        .await;
    assert_eq!(info["groups"], serde_json::json!(["staff"]));

    // Refresh tokens rotate: the old one is spent.
    let (status, err) = h
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
            Some(("app", "s3cret")),
        )
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let stats = h.idp.stats();
    assert_eq!(stats.token_requests, 3);
    assert_eq!(stats.refresh_requests, 2);
    assert_eq!(stats.userinfo_requests, 2);
    assert_eq!(stats.logins, 1);
}

#[tokio::test]
async fn claims_only_in_userinfo_when_flags_are_off() {
    let mut cfg = config();
    cfg.groups_in_id_token = false;
    cfg.email_in_id_token = false;
    let h = harness(cfg).await;
    let flow = Flow::new();
    let code = h
        .login(&flow, "app", REDIRECT, "openid email groups", "bob")
        .await;
    let (_, tokens) = h.redeem(&flow, &code).await;
    let claims = h.claims(&tokens["id_token"]);
    assert!(claims.get("groups").is_none());
    assert!(claims.get("email").is_none());
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    let (_, info) = h
        .userinfo(tokens["access_token"].as_str().expect("str"))
        .await;
    assert_eq!(info["groups"], serde_json::json!(["staff"]));
    assert_eq!(info["email"], "bob@example.com");
    assert!(
        info.get("preferred_username").is_none(),
        "profile scope not granted"
    );
}

#[tokio::test]
async fn public_client_with_loopback_redirect_and_post_auth() {
    let h = harness(config()).await;
    let flow = Flow::new();
    let redirect = "http://localhost:43210/cb?x=1";
    let code = h.login(&flow, "public", redirect, "openid", "bob").await;
    let (status, tokens) = h
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &flow.verifier),
                ("client_id", "public"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{tokens}");

    // client_secret_post for the confidential client.
    let flow = Flow::new();
    let code = h.login(&flow, "app", REDIRECT, "openid", "bob").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &flow.verifier),
        ("client_id", "app"),
        ("client_secret", "s3cret"),
    ];
    let (status, _) = h.token(&form, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn token_endpoint_rejections() {
    let h = harness(config()).await;

    // Wrong PKCE verifier.
    let flow = Flow::new();
    let code = h.login(&flow, "app", REDIRECT, "openid", "alice").await;
    let wrong = Flow::new();
    let (status, err) = h.redeem(&wrong, &code).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // The failed attempt spent the code.
    let (status, err) = h.redeem(&flow, &code).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Reuse after success revokes what the first redemption issued.
    let flow = Flow::new();
    let code = h
        .login(&flow, "app", REDIRECT, "openid offline_access", "alice")
        .await;
    let (status, tokens) = h.redeem(&flow, &code).await;
    assert_eq!(status, 200);
    let (status, err) = h.redeem(&flow, &code).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = h
        .userinfo(tokens["access_token"].as_str().expect("str"))
        .await;
    assert_eq!(status, 401);

    // redirect_uri differs from the authorization request.
    let flow = Flow::new();
    let code = h.login(&flow, "app", REDIRECT, "openid", "alice").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:9/other"),
        ("code_verifier", &flow.verifier),
    ];
    let (status, err) = h.token(&form, Some(("app", "s3cret"))).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Client authentication.
    let flow = Flow::new();
    let code = h.login(&flow, "app", REDIRECT, "openid", "alice").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &flow.verifier),
    ];
    let (status, err) = h.token(&form, Some(("app", "wrong"))).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, err) = h.token(&form, None).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let mut both = form.to_vec();
    both.push(("client_secret", "s3cret"));
    let (status, err) = h.token(&both, Some(("app", "s3cret"))).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // The client errors above did not spend the code.
    let (status, _) = h.token(&form, Some(("app", "s3cret"))).await;
    assert_eq!(status, 200);

    let (status, err) = h
        .token(&[("grant_type", "password")], Some(("app", "s3cret")))
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let res = h
        .http
        .post(h.url("/token"))
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode("app:s3cret")),
        )
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    let (status, err) = h
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("code", "y"),
            ],
            Some(("app", "s3cret")),
        )
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_request"))
    );

    let (status, _) = h.userinfo("not-a-token").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn wrong_password_rerenders_the_form() {
    let h = harness(config()).await;
    let flow = Flow::new();
    let mut form = flow.authorize_params("app", REDIRECT, "openid");
    form.push(("username", "alice"));
    form.push(("password", "nope"));
    let res = h
        .http
        .post(h.url("/authorize"))
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    let html = res.text().await.expect("body");
    assert!(html.contains("Invalid username or password"));
    assert!(html.contains(&format!("value=\"{}\"", flow.challenge)));
    assert_eq!(h.idp.stats().logins, 0);
}

#[tokio::test]
async fn authorize_rejections() {
    let h = harness(config()).await;
    let flow = Flow::new();

    // Unknown redirect_uri or client: an error page, never a redirect.
    for (client, redirect) in [
        ("app", "http://127.0.0.1:9/evil"),
        ("nobody", REDIRECT),
        ("public", "http://localhost.evil.com/cb"),
        ("public", "https://example.com/cb"),
    ] {
        let res = h
            .http
            .get(h.url("/authorize"))
            .query(&flow.authorize_params(client, redirect, "openid"))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 400, "{client} {redirect}");
        assert!(res.headers().get(LOCATION).is_none());
        assert!(res.text().await.expect("body").contains("<h1>"));
    }

    // Everything else goes back to the client with error and state.
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("response_type", Some("token"), "unsupported_response_type"),
        ("scope", Some("profile email"), "invalid_scope"),
        ("code_challenge", None, "invalid_request"),
        ("code_challenge_method", Some("plain"), "invalid_request"),
        ("prompt", Some("none"), "login_required"),
    ];
    for (name, value, expected) in cases {
        let mut params: Vec<(&str, &str)> = flow
            .authorize_params("app", REDIRECT, "openid")
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect();
        if let Some(value) = value {
            params.push((name, value));
        }
        let res = h
            .http
            .get(h.url("/authorize"))
            .query(&params)
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 302, "{name}");
        let q = query_of(&location(&res));
        assert_eq!(q["error"], expected, "{name}");
        assert_eq!(q["state"], flow.state);
        assert!(q.contains_key("error_description"));
    }

    // The hidden fields are re-validated on POST.
    let mut form: Vec<(&str, &str)> =
        flow.authorize_params("app", "http://127.0.0.1:9/evil", "openid");
    form.push(("username", "alice"));
    form.push(("password", "demo"));
    let res = h
        .http
        .post(h.url("/authorize"))
        .form(&form)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn end_session() {
    let h = harness(config()).await;
    let res = h.http.get(h.url("/end_session")).send().await.expect("get");
    assert_eq!(res.status(), 200);
    assert!(res.text().await.expect("body").contains("Signed out"));

    let flow = Flow::new();
    let code = h
        .login(&flow, "app", REDIRECT, "openid offline_access", "alice")
        .await;
    let (_, tokens) = h.redeem(&flow, &code).await;
    let id_token = tokens["id_token"].as_str().expect("str");
    let res = h
        .http
        .get(h.url("/end_session"))
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "http://127.0.0.1:9/bye"),
            ("state", "s1"),
        ])
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 302);
    assert_eq!(location(&res), "http://127.0.0.1:9/bye?state=s1");
    // The login's tokens are revoked.
    let (status, _) = h
        .userinfo(tokens["access_token"].as_str().expect("str"))
        .await;
    assert_eq!(status, 401);

    for query in [
        vec![("post_logout_redirect_uri", "http://127.0.0.1:9/bye")],
        vec![
            ("client_id", "app"),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ],
        vec![("id_token_hint", "a.b.c")],
    ] {
        let res = h
            .http
            .get(h.url("/end_session"))
            .query(&query)
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 400, "{query:?}");
    }
    let res = h
        .http
        .get(h.url("/end_session"))
        .query(&[
            ("client_id", "app"),
            ("post_logout_redirect_uri", "http://127.0.0.1:9/"),
        ])
        .send()
        .await
        .expect("get");
    assert_eq!(location(&res), "http://127.0.0.1:9/");
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let h = harness(config()).await;
    let url = h.url("/jwks");
    assert!(h.http.get(&url).send().await.is_ok());
    h.idp.shutdown();
    let fresh = reqwest::Client::new();
    let mut refused = false;
    for _ in 0..50 {
        if fresh.get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "issuer still answers after shutdown");
}
