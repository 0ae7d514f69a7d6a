//! Bearer tokens end to end: the built gateway verifies
//! `Authorization: Bearer` JWTs on forward-auth checks — tokens from the
//! real `oidc-provider` IdP (its test signing hook, and RFC 9068 JWT access
//! tokens from a client_credentials grant) and tokens the test mints with
//! its own RSA / EC / Ed25519 keys, served by JWKS endpoints the test runs
//! and whose fetches it counts. Hostile tokens (alg none, HS256 with the RSA
//! public key, jku elsewhere, unknown kids, garbage) get 401
//! `invalid_token`; a token beats a cookie and a bad token never falls back
//! to it; `bearer = false` rules ignore the header.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch};
use crate::support::http::{raw_get, raw_request, RawResponse};
use crate::support::idp::{Idp, CLIENT_ID, CLIENT_SECRET};
use crate::support::jwt::{self, claims, now, JwksServer, TestKey};
use crate::support::proc::LogsOnFailure;

/// A CI system's issuer, keys served by the test.
const CI_ISS: &str = "https://ci.example.test";
/// An issuer whose keys the tests rotate.
const ROT_ISS: &str = "https://rotating.example.test";
/// An issuer the unknown-kid flood goes to.
const FLOOD_ISS: &str = "https://flood.example.test";
/// Audience the test issuers' tokens carry.
const CI_AUD: &str = "portcullis-ci";

const RULES: &str = r#"[[rule]]
host = "app.example.com"
path = "/admin"
groups = ["admins"]

[[rule]]
host = "app.example.com"
path = "/cookie-only"
bearer = false

[[rule]]
host = "app.example.com"
path = "/"
policy = "authenticated"
"#;

struct Stack {
    idp: Idp,
    gw: Gateway,
    /// Keys of CI_ISS: one per algorithm.
    keys: Vec<TestKey>,
    ci: JwksServer,
    rot: JwksServer,
    rot_old: TestKey,
    flood: JwksServer,
    /// Serves a key nobody trusts (the `jku` target).
    elsewhere: JwksServer,
}

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let port = free_port();
        let idp = Idp::start_with(
            &[format!("http://app.example.com:{port}/oauth2/callback")],
            json!({
                "clients": [{
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [format!("http://app.example.com:{port}/oauth2/callback")],
                    "token_endpoint_auth_method": "client_secret_basic",
                    "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                    "response_types": ["code"],
                }],
                "jwt_access_tokens": {"resource": "urn:portcullis:api", "audience": "portcullis-api"},
            }),
        );
        let keys = vec![
            TestKey::rsa("ci-rs256", Algorithm::RS256),
            TestKey::rsa("ci-ps256", Algorithm::PS256),
            TestKey::p256("ci-es256"),
            TestKey::p384("ci-es384"),
            TestKey::ed25519("ci-eddsa"),
        ];
        let ci = JwksServer::start(jwt::jwks(&keys.iter().collect::<Vec<_>>()));
        let rot_old = TestKey::p256("rot-old");
        let rot = JwksServer::start(jwt::jwks(&[&rot_old]));
        let flood = JwksServer::start(jwt::jwks(&[&TestKey::p256("flood-1")]));
        let elsewhere = JwksServer::start(jwt::jwks(&[&TestKey::p256("evil")]));
        let issuers: String = [(CI_ISS, &ci), (ROT_ISS, &rot), (FLOOD_ISS, &flood)]
            .iter()
            .map(|(iss, server)| {
                format!(
                    "[[oidc.bearer_issuers]]\nissuer = \"{iss}\"\njwks_url = \"{}\"\naudiences = [\"{CI_AUD}\"]\nuser_claim = \"sub\"\ngroups_claim = \"roles\"\n\n",
                    server.url()
                )
            })
            .collect();
        let config = direct_config(
            &idp.issuer,
            r#"allowed_redirect_domains = ["app.example.com"]"#,
            &format!("{RULES}\n{issuers}"),
        )
        .replace(
            "client_id = \"portcullis\"\n",
            "client_id = \"portcullis\"\nextra_audiences = [\"portcullis-api\"]\n",
        );
        let gw = Gateway::launch(Launch {
            name: "portcullis-bearer",
            config: &config,
            port: Some(port),
            ..Launch::default()
        });
        Stack {
            idp,
            gw,
            keys,
            ci,
            rot,
            rot_old,
            flood,
            elsewhere,
        }
    })
}

impl Stack {
    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.gw.proc])
    }

    /// The forward-auth check Traefik sends for `GET app.example.com{uri}`,
    /// from 127.0.0.1 (trusted), as an API client, with `extra` headers.
    fn check(&self, uri: &str, extra: &[(&str, &str)]) -> RawResponse {
        let mut headers = vec![
            ("Accept", "application/json"),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", uri),
        ];
        headers.extend_from_slice(extra);
        raw_get(
            self.gw.port,
            &format!("127.0.0.1:{}", self.gw.port),
            "/oauth2/auth",
            &headers,
        )
    }

    fn with_token(&self, uri: &str, token: &str) -> RawResponse {
        self.check(uri, &[("Authorization", &format!("Bearer {token}"))])
    }

    /// A token signed by the real IdP's key (its `/__test/jwt` hook).
    async fn idp_token(&self, claims: Value) -> String {
        let r: Value = reqwest::Client::new()
            .post(format!("{}/__test/jwt", self.idp.issuer))
            .json(&json!({ "claims": claims }))
            .send()
            .await
            .expect("idp /__test/jwt")
            .json()
            .await
            .expect("idp /__test/jwt JSON");
        r["token"].as_str().expect("token").to_owned()
    }
}

/// Asserts a 200 naming `user` with `groups`.
fn assert_allowed(r: &RawResponse, user: &str, groups: &str, what: &str) {
    assert_eq!(
        r.status,
        200,
        "{what}: {} {:?} {}",
        r.status,
        r.headers,
        r.text()
    );
    assert_eq!(
        r.header("x-auth-user"),
        Some(user),
        "{what}: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("x-auth-groups"),
        Some(groups),
        "{what}: {:?}",
        r.headers
    );
}

/// Asserts the invalid-token answer: 401, the `invalid_token` challenge, empty identity.
fn assert_invalid(r: &RawResponse, what: &str) {
    assert_eq!(
        r.status,
        401,
        "{what}: {} {:?} {}",
        r.status,
        r.headers,
        r.text()
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{what}: {:?}",
        r.headers
    );
    assert_eq!(r.header("x-auth-user"), Some(""), "{what}: {:?}", r.headers);
}

fn ci_claims(extra: Value) -> Value {
    claims(CI_ISS, CI_AUD, "ci-runner", extra)
}

#[tokio::test]
async fn tokens_signed_by_the_real_idp() {
    let s = stack();
    let _logs = s.logs();
    let iss = s.idp.issuer.as_str();
    let t = s
        .idp_token(json!({"sub": "u-1", "preferred_username": "deploy-bot", "email": "bot@example.com", "email_verified": true, "groups": ["admins"]}))
        .await;
    assert_allowed(&s.with_token("/x", &t), "deploy-bot", "admins", "idp token");
    assert_allowed(
        &s.with_token("/admin/y", &t),
        "deploy-bot",
        "admins",
        "idp token on /admin",
    );
    assert_eq!(
        s.with_token("/x", &t).header("x-auth-email"),
        Some("bot@example.com")
    );
    // Without email_verified: true the token's address is no address.
    let t = s
        .idp_token(json!({"sub": "u-1", "preferred_username": "deploy-bot", "email": "ceo@example.com", "groups": ["admins"]}))
        .await;
    let r = s.with_token("/x", &t);
    assert_allowed(&r, "deploy-bot", "admins", "idp token, unverified email");
    assert_eq!(r.header("x-auth-email"), Some(""), "unverified email sent");

    // An extra audience, a foreign one, expired, not yet valid, another issuer.
    let t = s
        .idp_token(json!({"sub": "u-2", "aud": "portcullis-api"}))
        .await;
    assert_allowed(&s.with_token("/x", &t), "u-2", "", "extra audience");
    let bad = [
        ("foreign audience", json!({"sub": "u", "aud": "grafana"})),
        (
            "expired",
            json!({"sub": "u", "iat": now() - 7200, "exp": now() - 3600}),
        ),
        ("not yet valid", json!({"sub": "u", "nbf": now() + 3600})),
        (
            "wrong issuer",
            json!({"sub": "u", "iss": format!("{iss}/")}),
        ),
        (
            "claims another issuer",
            json!({"sub": "u", "iss": CI_ISS, "aud": CI_AUD}),
        ),
    ];
    for (what, c) in bad {
        assert_invalid(&s.with_token("/x", &s.idp_token(c).await), what);
    }
    // A user without the group is authenticated but forbidden on /admin.
    let t = s
        .idp_token(json!({"sub": "u-3", "groups": ["staff"]}))
        .await;
    let r = s.with_token("/admin", &t);
    assert_eq!(r.status, 403, "{:?} {}", r.headers, r.text());
}

#[tokio::test]
async fn jwt_access_token_from_client_credentials() {
    let s = stack();
    let _logs = s.logs();
    let res: Value = reqwest::Client::new()
        .post(format!("{}/token", s.idp.issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "api")])
        .send()
        .await
        .expect("token endpoint")
        .json()
        .await
        .expect("token JSON");
    let token = res["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {res}"));
    let header: Value = serde_json::from_slice(&jwt_part(token, 0)).expect("JWT access token");
    assert_eq!(header["typ"], "at+jwt");
    assert_allowed(
        &s.with_token("/ci", token),
        CLIENT_ID,
        "",
        "client_credentials token",
    );
    let r = s.with_token("/admin", token);
    assert_eq!(r.status, 403, "no groups, no /admin: {:?}", r.headers);
}

fn jwt_part(token: &str, i: usize) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(i).unwrap_or(""))
        .unwrap_or_default()
}

#[tokio::test]
async fn every_algorithm_from_a_trusted_issuer() {
    let s = stack();
    let _logs = s.logs();
    for key in &s.keys {
        let t = key.sign(&ci_claims(json!({"roles": ["admins", "ci"]})));
        assert_allowed(
            &s.with_token("/admin/deploy", &t),
            "ci-runner",
            "admins,ci",
            &key.kid,
        );
    }
    // The cached path answers the same, without asking for keys.
    let t = s.keys[0].sign(&ci_claims(json!({})));
    assert_allowed(&s.with_token("/x", &t), "ci-runner", "", "first");
    let fetches = s.ci.fetches();
    for _ in 0..3 {
        assert_allowed(&s.with_token("/x", &t), "ci-runner", "", "cached");
    }
    assert_eq!(s.ci.fetches(), fetches);
}

#[tokio::test]
async fn hostile_tokens_are_refused() {
    let s = stack();
    let _logs = s.logs();
    let rsa = &s.keys[0];
    let ec = &s.keys[2];
    let c = ci_claims(json!({}));
    let pem = rsa.public_pem.clone().expect("rsa pem");
    let mut jku = TestKey::p256("evil").header();
    jku.jku = Some(s.elsewhere.url());
    let evil = TestKey::p256("evil");
    let mut mismatched = ec.header();
    mismatched.kid = Some(rsa.kid.clone());
    let cases = [
        (
            "expired",
            ec.sign(&ci_claims(
                json!({"iat": now() - 7200, "exp": now() - 3600}),
            )),
        ),
        (
            "not yet valid",
            ec.sign(&ci_claims(json!({"nbf": now() + 3600}))),
        ),
        (
            "wrong issuer",
            ec.sign(&claims("https://evil.test", CI_AUD, "x", json!({}))),
        ),
        (
            "wrong audience",
            ec.sign(&claims(CI_ISS, "grafana", "x", json!({}))),
        ),
        ("alg none", jwt::unsigned(&rsa.kid, &c)),
        (
            "HS256 with the RSA public key",
            jwt::hs256(&rsa.kid, pem.as_bytes(), &c),
        ),
        ("unknown kid", {
            let mut h = ec.header();
            h.kid = Some("nobody".into());
            ec.sign_with(&h, &c)
        }),
        ("jku elsewhere", evil.sign_with(&jku, &c)),
        ("alg of another key type", ec.sign_with(&mismatched, &c)),
        ("not base64", "@@@.###.$$$".to_owned()),
        ("three dots", "...".to_owned()),
        ("two parts", "eyJhbGciOiJFUzI1NiJ9.e30".to_owned()),
    ];
    for (what, token) in &cases {
        assert_invalid(&s.with_token("/x", token), what);
    }
    assert_eq!(
        s.elsewhere.fetches(),
        0,
        "the jku URL must never be fetched"
    );

    // Unicode and oversized values: refused, never a 200 or a 5xx.
    let unicode = raw_request(
        s.gw.port,
        "GET",
        &format!("127.0.0.1:{}", s.gw.port),
        "/oauth2/auth",
        &[
            ("Accept", "application/json"),
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "/x"),
            ("Authorization", "Bearer ëÿJ.✓.☃"),
        ],
    )
    .expect("unicode token request");
    assert_invalid(&unicode, "unicode");
    let long = "A".repeat(64 * 1024);
    match raw_request(
        s.gw.port,
        "GET",
        &format!("127.0.0.1:{}", s.gw.port),
        "/oauth2/auth",
        &[
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "/x"),
            ("Authorization", &format!("Bearer {long}")),
        ],
    ) {
        Ok(r) => assert!(
            r.status == 431 || r.status == 401,
            "64 KiB token: {} {:?}",
            r.status,
            r.headers
        ),
        // The server may close the connection on an oversized head.
        Err(e) => assert!(e.kind() != std::io::ErrorKind::ConnectionRefused, "{e}"),
    }
    // The gateway is still there.
    assert_allowed(
        &s.with_token("/x", &ec.sign(&c)),
        "ci-runner",
        "",
        "after garbage",
    );
}

#[tokio::test]
async fn bearer_beats_cookie_and_never_falls_back() {
    let s = stack();
    let _logs = s.logs();
    let b = Browser::new();
    let base = format!("http://app.example.com:{}", s.gw.port);
    let page = b
        .open_as(&format!("{base}/oauth2/start?rd=%2F"), "alice")
        .await;
    let cookie = b
        .cookie(&base, "_portcullis")
        .unwrap_or_else(|| panic!("no session cookie after login:\n{page}"));
    let cookie = format!("_portcullis={cookie}");
    assert_allowed(
        &s.check("/x", &[("Cookie", &cookie)]),
        "alice",
        "admins,staff",
        "cookie",
    );

    let good = s.keys[2].sign(&ci_claims(json!({"roles": ["ci"]})));
    let bad = s.keys[2].sign(&ci_claims(json!({"exp": now() - 3600})));
    let both = |token: &str, uri: &str| {
        s.check(
            uri,
            &[
                ("Cookie", &cookie),
                ("Authorization", &format!("Bearer {token}")),
            ],
        )
    };
    assert_allowed(&both(&good, "/x"), "ci-runner", "ci", "cookie and bearer");
    assert_eq!(
        both(&good, "/admin").status,
        403,
        "the token's groups decide"
    );
    assert_invalid(&both(&bad, "/x"), "cookie and a bad bearer");
    assert_invalid(&both("garbage", "/x"), "cookie and a garbage bearer");

    // bearer = false: the header is ignored, the cookie decides.
    assert_allowed(
        &both(&bad, "/cookie-only"),
        "alice",
        "admins,staff",
        "bearer=false, cookie",
    );
    let r = s.with_token("/cookie-only", &good);
    assert_eq!(r.status, 401, "bearer=false, token only: {:?}", r.headers);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(r.header("x-auth-user"), Some(""));
}

#[tokio::test]
async fn key_rotation_without_restart() {
    let s = stack();
    let _logs = s.logs();
    let c = claims(ROT_ISS, CI_AUD, "rotating", json!({}));
    let old = s.rot_old.sign(&c);
    assert_allowed(&s.with_token("/x", &old), "rotating", "", "old key");
    let new_key = TestKey::ed25519("rot-new");
    s.rot.set(jwt::jwks(&[&new_key]));
    let new = new_key.sign(&c);
    // The refetch for the new kid may wait out the 10 s rate limit.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.with_token("/x", &new);
        if r.status == 200 {
            assert_allowed(&r, "rotating", "", "new key");
            break;
        }
        assert_invalid(&r, "new key before the refetch");
        assert!(Instant::now() < deadline, "new key never accepted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_invalid(&s.with_token("/x", &old), "old key after rotation");
}

#[tokio::test]
async fn unknown_kid_flood_makes_few_jwks_fetches() {
    let s = stack();
    let _logs = s.logs();
    let key = TestKey::p256("flood-attacker");
    let before = s.flood.fetches();
    let started = Instant::now();
    let tokens: Vec<String> = (0..1000)
        .map(|i| {
            let mut h = key.header();
            h.kid = Some(format!("forged-{i}"));
            key.sign_with(&h, &claims(FLOOD_ISS, CI_AUD, "x", json!({})))
        })
        .collect();
    let port = s.gw.port;
    let handles: Vec<_> = tokens
        .chunks(125)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            std::thread::spawn(move || {
                chunk
                    .iter()
                    .map(|t| {
                        raw_get(
                            port,
                            &format!("127.0.0.1:{port}"),
                            "/oauth2/auth",
                            &[
                                ("Accept", "application/json"),
                                ("X-Forwarded-Host", "app.example.com"),
                                ("X-Forwarded-Uri", "/x"),
                                ("Authorization", &format!("Bearer {t}")),
                            ],
                        )
                        .status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().iter().all(|&st| st == 401));
    }
    let elapsed = started.elapsed();
    let fetched = s.flood.fetches() - before;
    assert!(
        fetched <= 2,
        "{fetched} JWKS fetches for 1000 unknown kids in {elapsed:?}"
    );
}

#[tokio::test]
async fn readiness_reports_bearer_keys() {
    let s = stack();
    let _logs = s.logs();
    let r = raw_get(
        s.gw.port,
        &format!("127.0.0.1:{}", s.gw.port),
        "/readyz",
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        v["jwks"][CI_ISS]
            .as_str()
            .unwrap_or("")
            .starts_with("ok (5 keys)"),
        "{v}"
    );
    assert!(
        v["jwks"][s.idp.issuer.as_str()]
            .as_str()
            .unwrap_or("")
            .starts_with("ok"),
        "{v}"
    );

    // An extra issuer whose keys cannot be fetched: start-up is not fatal,
    // /readyz says so, and its tokens are refused.
    let dead = format!("http://127.0.0.1:{}/jwks", free_port());
    let config = direct_config(
        &s.idp.issuer,
        "",
        &format!("{RULES}\n[[oidc.bearer_issuers]]\nissuer = \"{CI_ISS}\"\njwks_url = \"{dead}\"\naudiences = [\"{CI_AUD}\"]\n"),
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-bearer-dead-jwks",
        config: &config,
        ..Launch::default()
    });
    let r = raw_get(gw.port, &format!("127.0.0.1:{}", gw.port), "/readyz", &[]);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        v["jwks"][CI_ISS]
            .as_str()
            .unwrap_or("")
            .contains("not loaded"),
        "{v}"
    );
    let token = s.keys[2].sign(&ci_claims(json!({})));
    let r = raw_get(
        gw.port,
        &format!("127.0.0.1:{}", gw.port),
        "/oauth2/auth",
        &[
            ("Accept", "application/json"),
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "/x"),
            ("Authorization", &format!("Bearer {token}")),
        ],
    );
    assert_invalid(&r, "keys unavailable");
    assert!(
        gw.log().contains("cannot load bearer signing keys"),
        "{}",
        gw.log()
    );
}
