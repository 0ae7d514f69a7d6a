//! The signed identity assertion through a real login at the real IdP: the
//! app (the echo upstream, with an app-side check) verifies
//! `X-Auth-Assertion` against `/.well-known/portcullis/jwks.json`, its
//! issuer and its own host as audience; an assertion made for one host is
//! refused by an app on another; a client's own `X-Auth-Assertion` never
//! reaches the app; the forward-auth answer carries one for the original
//! host; a key file made with `openssl genpkey`, as the docs say.

use std::process::Command;

use crate::support::browser::Browser;
use crate::support::echo::{verify_assertion, Echo};
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch};
use crate::support::idp::Idp;
use crate::support::proc::{scratch_dir, LogsOnFailure};

#[tokio::test]
async fn apps_verify_the_assertion_and_refuse_one_made_for_another_host() {
    let port = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let echo = Echo::start();
    let dir = scratch_dir("assertion");
    let key = dir.join("assertion.pem");
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let issuer = format!("http://app.example.com:{port}");
    let rules = format!(
        r#"[[rule]]
name = "app"
host = "app.example.com"
path = "/"
policy = "authenticated"
upstream = "http://127.0.0.1:{echo}"

[[rule]]
name = "other"
host = "other.example.com"
path = "/"
policy = "authenticated"
"#,
        echo = echo.port
    );
    let config = direct_config(
        &idp.issuer,
        r#"allowed_redirect_domains = ["app.example.com"]"#,
        &rules,
    )
    .replace(
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        &format!("trusted_proxies = [\"127.0.0.1/32\"]\nexternal_url = \"{issuer}\"\n"),
    )
    .replace(
        "[session]\n",
        &format!("[headers]\nassertion = true\nassertion_key_file = {key:?}\n\n[session]\n"),
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-assertion",
        config: &config,
        port: Some(port),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&gw.proc, &idp.proc]);

    let b = Browser::new();
    let page = b.open_as(&format!("{issuer}/hello"), "alice").await;
    let seen = page.expect_app();
    let tokens = seen.all("x-auth-assertion");
    assert_eq!(tokens.len(), 1, "one assertion reaches the app: {tokens:?}");
    let app_token = tokens[0].clone();

    let jwks = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!(
            "http://127.0.0.1:{port}/.well-known/portcullis/jwks.json"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    let jwks = jwks.text().await.unwrap();

    let claims = verify_assertion(&jwks, &app_token, &issuer, "app.example.com")
        .unwrap_or_else(|e| panic!("the app refused a genuine assertion: {e}\n{jwks}"));
    assert_eq!(claims["user"], "alice", "{claims}");
    assert_eq!(claims["email"], "alice@example.com", "{claims}");
    assert!(
        claims["groups"].as_array().is_some_and(|g| !g.is_empty()),
        "{claims}"
    );
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert!(exp > iat && exp - iat <= 60, "a short lifetime: {claims}");

    // Replayed to an app on another host: refused there.
    let replay = verify_assertion(&jwks, &app_token, &issuer, "other.example.com");
    assert!(
        replay.is_err(),
        "an assertion for app.example.com passed at other.example.com"
    );
    // A tampered one, and one claiming another issuer, are refused too.
    let mut forged = app_token.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert!(verify_assertion(&jwks, &forged, &issuer, "app.example.com").is_err());
    assert!(verify_assertion(&jwks, &app_token, "http://evil.test", "app.example.com").is_err());

    // A client's own assertion never reaches the app.
    let spoofed = b
        .get_with(
            &format!("{issuer}/again"),
            &[(
                "X-Auth-Assertion",
                "eyJhbGciOiJub25lIn0.eyJ1c2VyIjoiYm9zcyJ9.",
            )],
        )
        .await;
    let seen = spoofed.expect_app();
    let tokens = seen.all("x-auth-assertion");
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert!(
        !tokens[0].starts_with("eyJhbGciOiJub25lIn0"),
        "the client's copy got through"
    );
    verify_assertion(&jwks, &tokens[0], &issuer, "app.example.com").unwrap();

    // Forward auth: the answer carries an assertion for the original host.
    let cookie = b.cookie(&issuer, "_portcullis").expect("a session cookie");
    let check = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/oauth2/auth"))
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", "other.example.com")
        .header("X-Forwarded-Uri", "/")
        .header("X-Forwarded-Method", "GET")
        .header("Cookie", format!("_portcullis={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 200);
    let other_token = check.headers()["x-auth-assertion"]
        .to_str()
        .unwrap()
        .to_owned();
    let claims = verify_assertion(&jwks, &other_token, &issuer, "other.example.com").unwrap();
    assert_eq!(claims["user"], "alice");
    assert!(verify_assertion(&jwks, &other_token, &issuer, "app.example.com").is_err());
}
