//! `/oauth2/auth` answers, as a front proxy sees them.

use crate::support::{Harness, Opts};

fn identity(res: &reqwest::Response) -> (String, String, String) {
    let h = |n: &str| {
        res.headers()
            .get(n)
            .unwrap_or_else(|| panic!("{n} missing from a forward-auth answer"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    (h("x-auth-user"), h("x-auth-email"), h("x-auth-groups"))
}

#[tokio::test]
async fn answers_follow_the_table() {
    let h = Harness::start().await;
    let alice = h.session_cookie("alice").await;
    let bob = h.session_cookie("bob").await;
    let cookie = |v: &str| format!("_portcullis={v}");

    // Allowed: 200 with all three identity headers.
    let res = h
        .check("GET", "app.test", "/admin/x?y=1")
        .header("Cookie", cookie(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        identity(&res),
        (
            "alice".into(),
            "alice@example.com".into(),
            "admins,staff".into()
        )
    );

    // Authenticated but not in the group: 403, JSON for APIs, HTML for browsers; headers still present and empty.
    let res = h
        .check("GET", "app.test", "/admin")
        .header("Cookie", cookie(&bob))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        identity(&res),
        (String::new(), String::new(), String::new())
    );
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["required_groups"], serde_json::json!(["admins"]));
    let res = h
        .check("GET", "app.test", "/admin")
        .header("Cookie", cookie(&bob))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("admins"));

    // Public: 200 with empty identity headers, even with a session.
    let res = h
        .check("GET", "app.test", "/health")
        .header("Cookie", cookie(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        identity(&res),
        (String::new(), String::new(), String::new())
    );

    // Rule says deny: 403 even for alice.
    let res = h
        .check("GET", "app.test", "/nobody/x")
        .header("Cookie", cookie(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // No rule matches and default = deny.
    let res = h
        .check("GET", "unknown.test", "/")
        .header("Cookie", cookie(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // No credentials: browser → 302 to the login on the original host; API → 401 Bearer.
    let res = h
        .check("POST", "app.test:8443", "/x/y?q=1&r=2")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let loc = res.headers()["location"].to_str().unwrap();
    assert_eq!(loc, "https://app.test:8443/oauth2/start?rd=https%3A%2F%2Fapp.test%3A8443%2Fx%2Fy%3Fq%3D1%26r%3D2");
    identity(&res);
    let res = h.check("GET", "app.test", "/x").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    identity(&res);
}

#[tokio::test]
async fn nginx_mode_answers_401_with_a_login_url() {
    let h = Harness::start().await;
    let res = h
        .client()
        .get(format!("{}/oauth2/auth", h.base))
        .header("X-Original-URL", "https://app.test/a?b=c")
        .header("X-Original-Method", "GET")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["x-auth-login-url"],
        "https://app.test/oauth2/start?rd=https%3A%2F%2Fapp.test%2Fa%3Fb%3Dc"
    );
    // ?mode=nginx with Traefik-style headers also answers 401.
    let res = h
        .check("GET", "app.test", "/a")
        .query(&[("mode", "nginx")])
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // nginx-mode with a session works too.
    let alice = h.session_cookie("alice").await;
    let res = h
        .client()
        .get(format!("{}/oauth2/auth", h.base))
        .header("X-Original-URL", "http://app.test/admin")
        .header("Cookie", format!("_portcullis={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-auth-user"], "alice");
}

#[tokio::test]
async fn path_tricks_are_400_or_judged_after_normalisation() {
    let h = Harness::start().await;
    let bob = h.session_cookie("bob").await;
    let c = format!("_portcullis={bob}");
    for bad in [
        "/admin%2fx",
        "/admin%2Fx",
        "/admin%5cx",
        "/admin\\x",
        "/%00",
        "/../admin",
        "/a/../../admin",
        "/%2e%2e/admin",
        "/%zz",
    ] {
        let res = h
            .check("GET", "app.test", bad)
            .header("Cookie", &c)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        identity(&res);
    }
    // Equivalent spellings of /admin are judged as /admin: bob is refused.
    for alias in [
        "//admin",
        "/./admin",
        "/x/../admin",
        "/%61dmin",
        "/admin/",
        "/admin?rd=/health",
        "/admin#/health",
        "/admin;x",
    ] {
        let res = h
            .check("GET", "app.test", alias)
            .header("Cookie", &c)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{alias}");
    }
    // Host tricks: case, trailing dot and port don't escape the rule.
    for host in ["APP.test", "app.test.", "app.test:443"] {
        let res = h
            .check("GET", host, "/admin")
            .header("Cookie", &c)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{host}");
    }
    for host in ["app.test/evil", "a b", "", "app.test@evil"] {
        let res = h
            .check("GET", host, "/")
            .header("Cookie", &c)
            .send()
            .await
            .unwrap();
        assert!(
            res.status() == 400 || res.status() == 403,
            "{host:?} → {}",
            res.status()
        );
    }
}

/// Forwarding headers a client could send, each family alone, both
/// together, and spoofed hosts and paths, all naming pages that would be
/// answered otherwise if they were believed: the public `/health`, the
/// admins-only `/admin`, the denied `/nobody`.
fn spoofs() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let xf = |uri| {
        vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "app.test"),
            ("X-Forwarded-Uri", uri),
        ]
    };
    let xo = |url| vec![("X-Original-URL", url), ("X-Original-Method", "GET")];
    let both = |uri, url| [xf(uri), xo(url)].concat();
    vec![
        ("X-Forwarded-* to /health", xf("/health")),
        ("X-Original-* to /health", xo("https://app.test/health")),
        (
            "both to /health",
            both("/health", "https://app.test/health"),
        ),
        ("X-Forwarded-* to /admin", xf("/admin")),
        ("X-Original-* to /admin", xo("https://app.test/admin")),
        ("X-Forwarded-* to /nobody", xf("/nobody")),
        (
            "both to /nobody",
            both("/nobody", "https://app.test/nobody"),
        ),
        (
            "X-Forwarded-Uri alone",
            vec![("X-Forwarded-Uri", "/health")],
        ),
        (
            "X-Forwarded-Host alone",
            vec![("X-Forwarded-Host", "other.test")],
        ),
        (
            "X-Forwarded-Method alone",
            vec![("X-Forwarded-Method", "DELETE")],
        ),
        (
            "X-Forwarded-Proto alone",
            vec![("X-Forwarded-Proto", "https")],
        ),
        (
            "X-Original-URL alone",
            vec![("X-Original-URL", "https://app.test/health")],
        ),
        (
            "X-Original-Method alone",
            vec![("X-Original-Method", "DELETE")],
        ),
        (
            "disagreeing families",
            both("/health", "https://other.test/x"),
        ),
    ]
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peers_are_ignored() {
    // The test client (127.0.0.1) is not a trusted proxy, so every check is
    // judged as the request it is: GET http://<Host>/oauth2/auth. On
    // app.test that is the "app" rule (any signed-in user).
    let h = Harness::start_with(Opts {
        server: "trusted_proxies = [\"10.9.9.9/32\"]".into(),
        ..Opts::default()
    })
    .await;
    let bob = format!("_portcullis={}", h.session_cookie("bob").await);
    let port = h.gw.addr.port();
    let own = |host: &str, headers: &[(&str, &str)]| {
        let mut req = h
            .client()
            .get(format!("{}/oauth2/auth", h.base))
            .header("Host", host.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    };
    for (what, headers) in spoofs() {
        // API client without credentials: 401 Bearer, never a 200 for a
        // believed /health, never a 400 or 403 for a believed path.
        let res = own("app.test", &headers).send().await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer", "{what}");
        assert_eq!(
            identity(&res),
            (String::new(), String::new(), String::new()),
            "{what}"
        );
        // Browser: 302 to the login on the Host it talked to, coming back
        // to the check's own URL, not to a spoofed host, scheme or path.
        let res = own("app.test", &headers)
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "{what}");
        assert_eq!(
            res.headers()["location"],
            "http://app.test/oauth2/start?rd=http%3A%2F%2Fapp.test%2Foauth2%2Fauth",
            "{what}"
        );
        // Bob (staff, not admins): allowed on the check's own path; a
        // believed /admin or /nobody would be 403.
        let res = own("app.test", &headers)
            .header("Cookie", bob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{what}");
        assert_eq!(res.headers()["x-auth-user"], "bob", "{what}");
        // A Host no rule matches (default deny) stays that host even when
        // the headers point at app.test's public /health.
        let res = own("unknown.test", &headers).send().await.unwrap();
        assert_eq!(res.status(), 403, "{what}");
        assert_eq!(res.headers()["x-auth-user"], "", "{what}");
        // ...also with the gateway's own address as Host.
        let res = own(&format!("127.0.0.1:{port}"), &headers)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{what}");
    }
    // Control: the same headers from a trusted peer are believed.
    let trusted = Harness::start().await;
    let res = trusted
        .check("GET", "app.test", "/health")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn client_sent_x_original_url_cannot_override_the_proxy() {
    let h = Harness::start().await;
    // Traefik and Caddy pass client headers through: a client-sent
    // X-Original-URL pointing at a public path must not win.
    let res = h
        .check("GET", "app.test", "/secret")
        .header("X-Original-URL", "http://app.test/health")
        .send()
        .await
        .unwrap();
    // Refused, never judged as /health: 403 because X-Original-URL selects
    // nginx semantics, where auth_request would turn a 400 into a 500.
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn method_rules_use_the_original_method() {
    let app = "{app}";
    let extra = format!(
        r#"
[access]
default = "deny"
[[rule]]
name = "read"
host = "app.test"
methods = ["GET", "HEAD"]
policy = "public"
[[rule]]
name = "write"
host = "app.test"
policy = "authenticated"
upstream = "http://{app}"
"#
    );
    let h = Harness::start_with(Opts {
        extra,
        ..Opts::default()
    })
    .await;
    assert_eq!(
        h.check("GET", "app.test", "/x")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        h.check("DELETE", "app.test", "/x")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        h.check("get", "app.test", "/x")
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "methods are case-sensitive tokens"
    );
    // issue 14: nginx without X-Original-Method: the method is unknown and
    // the GET-only public rule does not apply; a client-sent
    // X-Original-Method beside the proxy's X-Forwarded-Method must agree.
    let nginx = h
        .client()
        .get(format!("{}/oauth2/auth", h.base))
        .header("X-Original-URL", "http://app.test/x")
        .send()
        .await
        .unwrap();
    assert_eq!(nginx.status(), 401);
    let spoofed = h
        .check("DELETE", "app.test", "/x")
        .header("X-Original-URL", "http://app.test/x")
        .header("X-Original-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 403, "disagreement, nginx-mode 400");
}

/// `headers.preset = "oauth2-proxy"`: every answer carries oauth2-proxy's
/// names, the preferred-username, access-token and `[headers.claims]`
/// headers; empty on public paths and refusals, so the front proxy
/// overwrites client copies. `name` is not in the ID token: it comes from
/// userinfo.
#[tokio::test]
async fn oauth2_proxy_preset_and_claim_headers() {
    let h = Harness::start_with(Opts {
        extra: r#"
[headers]
preset = "oauth2-proxy"
pass_access_token = true

[headers.claims]
"X-Auth-Name" = "name"
"X-Auth-Tenant" = "org.id"

[access]
default = "deny"

[[rule]]
host = "app.test"
path = "/health"
policy = "public"

[[rule]]
host = "app.test"
path = "/admin"
groups = ["admins"]
upstream = "http://{app}"

[[rule]]
host = "app.test"
upstream = "http://{app}"
"#
        .into(),
        ..Opts::default()
    })
    .await;
    let cookie = format!("_portcullis={}", h.session_cookie("bob").await);
    let names = [
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-groups",
        "x-auth-request-preferred-username",
        "x-auth-request-access-token",
        "x-auth-name",
        "x-auth-tenant",
    ];
    let values = |res: &reqwest::Response| -> Vec<String> {
        for old in ["x-auth-user", "x-auth-email", "x-auth-groups"] {
            assert!(res.headers().get(old).is_none(), "{old} sent");
        }
        names
            .iter()
            .map(|n| {
                res.headers()
                    .get(*n)
                    .unwrap_or_else(|| panic!("{n} missing from a forward-auth answer"))
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let res = h
        .check("GET", "app.test", "/x")
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = values(&res);
    assert_eq!(
        got[..4],
        ["bob", "bob@example.com", "staff", "bob"].map(String::from)
    );
    assert!(got[4].len() > 10, "access token: {got:?}");
    assert_eq!(got[5..], ["bob".to_owned(), String::new()]);
    for (path, status) in [("/health", 200), ("/admin", 403)] {
        let res = h
            .check("GET", "app.test", path)
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{path}");
        assert!(values(&res).iter().all(String::is_empty), "{path}");
    }
}
