//! What the in-process benches (`forward_auth.rs`, `basic_auth.rs`) share:
//! the 20-host config they measure, a gateway built from it exactly as
//! `serve` builds it, alice's session, and the forward-auth request for a
//! rule that needs group `admins`. Included by each with `#[path]`; the
//! load harness (`load.rs`) measures the built binary instead.

#![allow(dead_code)] // each bench uses a different part

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use http::{Method, Request};
use portcullis::auth::pipeline::Gateway;
use portcullis::auth::session::{Session, SessionId};
use portcullis::base::clock::unix_now;
use portcullis::base::identity::Identity;
use portcullis::config::Config;

/// 20 hosts with an `/admin` rule for group `admins` (plus `admin_rule`
/// lines) and a catch-all each; `access` lines added to `[access]`.
pub fn config_text(access: &str, admin_rule: &str) -> String {
    let mut t = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[oidc]
issuer = "http://127.0.0.1:9"
client_id = "portcullis"

[session]
cookie_secure = true

[access]
default = "deny"
allowed_redirect_domains = [".bench.test"]
{access}"#
    );
    for i in 0..20 {
        t.push_str(&format!(
            "\n[[rule]]\nname = \"app{i} admin\"\nhost = \"app{i}.bench.test\"\npath = \"/admin\"\ngroups = [\"admins\"]\n{admin_rule}\n[[rule]]\nname = \"app{i}\"\nhost = \"app{i}.bench.test\"\n"
        ));
    }
    t
}

/// A gateway built from `text` as `serve` builds it (memory sessions).
pub fn gateway(rt: &tokio::runtime::Runtime, text: &str) -> Arc<Gateway> {
    let env: HashMap<String, String> = HashMap::from([
        (
            "PORTCULLIS_OIDC_CLIENT_SECRET".into(),
            "bench-client-secret".into(),
        ),
        (
            "PORTCULLIS_SESSION_SECRET".into(),
            "a-benchmark-session-secret-that-is-long-enough".into(),
        ),
    ]);
    let config = match Config::from_toml(text, Path::new("."), &env) {
        Ok(c) => c,
        Err(e) => panic!("bench config: {e}"),
    };
    // `build` spawns the background IdP discovery: it needs a runtime context.
    let _guard = rt.enter();
    match portcullis::server::build(config, None) {
        Ok(gw) => gw,
        Err(e) => panic!("build: {e}"),
    }
}

/// alice (groups `admins` and `staff`, e-mail `email`) signed in for 12 h.
pub fn alice(id: SessionId, email: &str) -> Session {
    let identity = Identity {
        user: "alice".into(),
        email: email.into(),
        groups: vec!["admins".into(), "staff".into()],
        ..Identity::default()
    };
    Session {
        id,
        headers: identity.headers(),
        identity,
        subject: "alice-subject".into(),
        idp_session: None,
        id_token: None,
        access_token: None,
        refresh_token: None,
        created_at: unix_now(),
        expires_at: unix_now() + 12 * 3600,
        refresh_at: 0,
    }
}

/// The check of `GET https://app7.bench.test/admin/users?page=2` as a front
/// proxy sends it, with `headers` added and, when given, the session cookie
/// among two others.
pub fn request(headers: &[(&str, &str)], cookie: Option<&str>) -> Request<()> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri("/oauth2/auth")
        .header("host", "auth.bench.test")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app7.bench.test")
        .header("x-forwarded-uri", "/admin/users?page=2");
    for (name, value) in headers {
        b = b.header(*name, *value);
    }
    b = b.header("user-agent", "bench");
    if let Some(c) = cookie {
        b = b.header(
            "cookie",
            format!("_ga=GA1.2.1234567890.1234567890; _portcullis={c}; theme=dark"),
        );
    }
    b.body(()).expect("valid request")
}
