//! Client-sent `X-Original-URL` / `X-Original-Method` behind Traefik and
//! Caddy at their defaults: the examples in config/ without their filtering
//! of client headers (no `authRequestHeaders` allow-list, Traefik's default
//! `aliasHeadersStrategy`, none of the Caddyfile's `request_header`
//! deletions), so that every client header reaches portcullis beside the
//! proxy's own `X-Forwarded-*`.
//!
//! Two hosts on one proxy: app.example.com, whose `/staff` needs the group
//! "staff" and whose `/feed` is public for `GET` only (writes need "staff"),
//! and other.example.com, whose `/staff` is public. A client copy of the
//! nginx family naming the other host, another scheme or another method must
//! not change the verdict, for an anonymous browser and for carol (signed
//! in, no groups); without the copies the same requests get the usual
//! answers, and bob (staff) gets through with his identity.
//!
//! The reverse case behind ingress-nginx (real nginx with the directives the
//! controller generates for `auth-url` / `auth-signin` /
//! `auth-response-headers`): the controller sets the nginx family and passes
//! a client's `X-Forwarded-Host` / `-Uri` / `-Method` on, which must not
//! change the verdict either.
//!
//! Each proxy gets one stack per test binary (IdP, portcullis, proxy, echo
//! app), shared by the tests of its module. Every request carries a unique
//! path segment, so the echo app's request log shows whether it got through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::support::browser::Browser;
use crate::support::echo::{Echo, Seen};
use crate::support::gateway::{Gateway, Launch, SESSION_SECRET};
use crate::support::http::{raw_request, RawResponse};
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure, Proc};
use crate::support::proxy::{self, Edits, Kind, Ports};
use crate::support::{example, free_port, subst};

/// The host whose `/staff` needs a group.
const HOST_A: &str = "app.example.com";
/// The host whose `/staff` is public.
const HOST_B: &str = "other.example.com";

/// Where the example's rules begin; replaced by [`RULES`].
const RULES_MARKER: &str = "# Rules: first match wins, in file order.";

/// What the ingress-nginx controller generates (its template
/// rootfs/etc/nginx/template/nginx.tmpl) for an Ingress on both hosts with
///
/// ```yaml
/// nginx.ingress.kubernetes.io/auth-url: "http://127.0.0.1:4180/oauth2/auth"
/// nginx.ingress.kubernetes.io/auth-signin: "http://$http_host/oauth2/start"
/// nginx.ingress.kubernetes.io/auth-response-headers: "X-Auth-User,X-Auth-Email,X-Auth-Groups"
/// ```
///
/// and a second Ingress without annotations for `/oauth2/` to portcullis,
/// cut down to the directives that shape the auth request and what happens
/// with the answer. The auth location sets the nginx family and blanks
/// `X-Forwarded-Proto`, but passes every other client header on, a client's
/// `X-Forwarded-Host` / `-Uri` / `-Method` included. One difference: the
/// controller's nginx escapes the sign-in `rd` with `set_escape_uri` (a
/// module Debian's nginx lacks); the paths sent here have no query, for
/// which the unescaped `$request_uri` names the same URL.
const INGRESS_NGINX: &str = r#"server {
    listen 80;
    server_name app.example.com other.example.com;

    location = /_external-auth {
        internal;
        proxy_pass_request_body     off;
        proxy_set_header            Content-Length          "";
        proxy_set_header            X-Forwarded-Proto       "";
        proxy_set_header            X-Request-ID            $request_id;
        proxy_set_header            Host                    127.0.0.1:4180;
        proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;
        proxy_set_header            X-Original-Method       $request_method;
        proxy_set_header            X-Sent-From             "nginx-ingress-controller";
        proxy_set_header            X-Real-IP               $remote_addr;
        proxy_set_header            X-Forwarded-For         $remote_addr;
        proxy_set_header            X-Auth-Request-Redirect $request_uri;
        proxy_pass_request_headers  on;
        proxy_pass                  http://127.0.0.1:4180/oauth2/auth;
    }

    location @signin {
        internal;
        add_header Set-Cookie $auth_cookie;
        return 302 http://$http_host/oauth2/start?rd=$scheme://$http_host$request_uri;
    }

    location /oauth2/ {
        proxy_set_header Host              $http_host;
        proxy_set_header X-Forwarded-Host  $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For   $remote_addr;
        proxy_pass http://127.0.0.1:4180;
    }

    location / {
        auth_request        /_external-auth;
        auth_request_set    $auth_cookie $upstream_http_set_cookie;
        add_header          Set-Cookie $auth_cookie;
        auth_request_set $authHeader0 $upstream_http_x_auth_user;
        proxy_set_header 'X-Auth-User' $authHeader0;
        auth_request_set $authHeader1 $upstream_http_x_auth_email;
        proxy_set_header 'X-Auth-Email' $authHeader1;
        auth_request_set $authHeader2 $upstream_http_x_auth_groups;
        proxy_set_header 'X-Auth-Groups' $authHeader2;
        error_page 401 = @signin;
        proxy_set_header Host $http_host;
        proxy_pass http://127.0.0.1:8080;
    }
}
"#;

const RULES: &str = r#"# Rules: first match wins, in file order.

# The proxy launcher's readiness probe.
[[rule]]
host = "app.example.com"
path = "/health"
policy = "public"

[[rule]]
name = "a-staff"
host = "app.example.com"
path = "/staff"
policy = "authenticated"
groups = ["staff"]

[[rule]]
name = "b-staff"
host = "other.example.com"
path = "/staff"
policy = "public"

[[rule]]
name = "a-feed-read"
host = "app.example.com"
path = "/feed"
methods = ["GET"]
policy = "public"

[[rule]]
name = "a-feed-write"
host = "app.example.com"
path = "/feed"
methods = ["POST", "DELETE"]
policy = "authenticated"
groups = ["staff"]

# Where the login helper signs users in.
[[rule]]
name = "a-some"
host = "app.example.com"
path = "/some"
policy = "authenticated"
"#;

/// IdP, portcullis, the proxy without header filtering, and the app.
struct Stack {
    idp: Idp,
    gateway: Gateway,
    proxy: Proc,
    echo: Echo,
    /// The proxy's port.
    port: u16,
}

impl Stack {
    fn start(kind: Kind) -> Stack {
        proxy::require(kind);
        let echo = Echo::start();
        let port = free_port();
        let gateway_port = free_port();
        let idp = Idp::start(&[format!("http://{HOST_A}:{port}/oauth2/callback")]);
        let dir = scratch_dir(&format!("{}-default-secrets", kind.dir()));
        let client_secret = dir.join("oidc_client_secret");
        let session_secret = dir.join("portcullis_session");
        std::fs::write(&client_secret, format!("{CLIENT_SECRET}\n")).unwrap();
        std::fs::write(&session_secret, format!("{SESSION_SECRET}\n")).unwrap();
        let name = format!("{}/portcullis.toml", kind.dir());
        let config = subst(
            &example(&name),
            &name,
            &[
                (
                    "https://idp.example.com/application/o/portcullis/",
                    idp.issuer.as_str(),
                ),
                (
                    "/run/secrets/oidc_client_secret",
                    client_secret.to_str().unwrap(),
                ),
                (
                    "/run/secrets/portcullis_session",
                    session_secret.to_str().unwrap(),
                ),
            ],
        );
        let (head, _) = config
            .split_once(RULES_MARKER)
            .unwrap_or_else(|| panic!("{RULES_MARKER:?} not found in {name}"));
        let config = format!("{head}{RULES}");
        let gateway = Gateway::launch(Launch {
            name: "portcullis",
            config: &config,
            port: Some(gateway_port),
            // The secrets come from the files the config names.
            client_secret: "",
            session_secret: "",
            ..Launch::default()
        });
        let ports = Ports {
            proxy: port,
            gateway: gateway_port,
            app: echo.port,
        };
        let edits = match kind {
            Kind::Nginx => Edits {
                nginx_server: Some(INGRESS_NGINX),
                ..Edits::default()
            },
            Kind::Traefik | Kind::Caddy => Edits {
                also_hosts: vec![HOST_B],
                ..Edits::unfiltered()
            },
        };
        let proxy = proxy::start(kind, &ports, &edits);
        Stack {
            idp,
            gateway,
            proxy,
            echo,
            port,
        }
    }

    /// Prints every component's log if the calling test fails.
    fn logs_on_failure(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.gateway.proc, &self.proxy])
    }

    /// `host:PORT`.
    fn host(&self, host: &str) -> String {
        format!("{host}:{}", self.port)
    }

    /// Logs `user` in through the proxy; the session cookie as a `Cookie` value.
    async fn login(&self, user: &str) -> String {
        let base = format!("http://{}", self.host(HOST_A));
        let url = format!("{base}/some/login-{user}");
        let b = Browser::new();
        let page = b.open_as(&url, user).await;
        assert_eq!(
            page.status, 200,
            "login as {user} did not end at the app:\n{page}"
        );
        assert_eq!(
            page.url.as_str(),
            url,
            "login as {user} ended elsewhere:\n{page}"
        );
        page.expect_app();
        let value = b
            .cookie(&base, "_portcullis")
            .unwrap_or_else(|| panic!("no session cookie after login:\n{page}"));
        format!("_portcullis={value}")
    }

    /// `method target` on `host` through the proxy, the headers exactly as
    /// given (plus `Accept: text/html` and, with `cookie`, the session).
    fn send(
        &self,
        method: &str,
        host: &str,
        target: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> RawResponse {
        let mut all = vec![HTML];
        if let Some(c) = cookie {
            all.push(("Cookie", c));
        }
        if method != "GET" {
            all.push(("Content-Length", "0"));
        }
        all.extend_from_slice(headers);
        let host = self.host(host);
        raw_request(self.port, method, &host, target, &all)
            .unwrap_or_else(|e| panic!("{method} http://{host}{target}: {e}"))
    }

    /// Panics unless `r` is `status`, has `body_has` in its body, and the
    /// app never received a request naming `id`.
    fn assert_stopped(&self, r: &RawResponse, status: u16, body_has: &str, id: &str, what: &str) {
        assert!(
            Seen::parse(&r.text()).is_none(),
            "{what}: the app answered: {}",
            r.text()
        );
        assert_eq!(r.status, status, "{what}: {:?}\n{}", r.headers, r.text());
        assert!(
            r.text().contains(body_has),
            "{what}: body lacks {body_has:?}: {}",
            r.text()
        );
        let seen = self.echo.requests_with(id);
        assert!(seen.is_empty(), "{what}: the app received {seen:?}");
    }

    /// Panics unless the app answered `r` having seen `method` for `id`
    /// with `user`'s identity (`""`: empty identity).
    fn assert_reached(&self, r: &RawResponse, method: &str, id: &str, user: &str, what: &str) {
        assert_eq!(r.status, 200, "{what}: {:?}\n{}", r.headers, r.text());
        let seen = Seen::parse(&r.text())
            .unwrap_or_else(|| panic!("{what}: not the app's answer: {}", r.text()));
        assert_eq!(seen.method, method, "{what}");
        assert!(seen.target.contains(id), "{what}: app saw {}", seen.target);
        let want = match user {
            "" => (String::new(), String::new(), String::new()),
            "bob" => ("bob".into(), "bob@example.com".into(), "staff".into()),
            other => panic!("no identity known for {other}"),
        };
        assert_eq!(seen.identity(), want, "{what}: {:#?}", seen.headers);
        assert_eq!(
            self.echo.requests_with(id),
            vec![format!("{method} {}", seen.target)],
            "{what}"
        );
    }
}

const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml");

/// What a check whose two families disagree is answered with: portcullis
/// refuses it with 400, but with 403 when `X-Original-URL` (nginx's header)
/// is present, since nginx's `auth_request` turns a 400 into a 500; a client
/// copy of that header makes it present.
const DISAGREE_STATUS: u16 = 403;

/// The stack behind `kind`; for nginx, the configuration ingress-nginx
/// generates ([`INGRESS_NGINX`]).
fn stack(kind: Kind) -> &'static Stack {
    static TRAEFIK: OnceLock<Stack> = OnceLock::new();
    static CADDY: OnceLock<Stack> = OnceLock::new();
    static INGRESS: OnceLock<Stack> = OnceLock::new();
    let cell = match kind {
        Kind::Traefik => &TRAEFIK,
        Kind::Caddy => &CADDY,
        Kind::Nginx => &INGRESS,
    };
    cell.get_or_init(|| Stack::start(kind))
}

/// A path segment no other request uses (fixed width: no id is a prefix of another).
fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{tag}-{:06}", N.fetch_add(1, Ordering::Relaxed))
}

/// Who sends a request: an anonymous browser, and carol (signed in, no
/// groups) with her session cookie.
fn outsiders(carol: &str) -> [(&'static str, Option<&str>); 2] {
    [("anonymous", None), ("carol", Some(carol))]
}

/// The body of portcullis's 403 for a signed-in user outside "staff".
const NOT_STAFF: &str = "Members of staff may open this page";

async fn original_url_naming_the_public_host_does_not_open_the_protected_one(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let carol = s.login("carol").await;
    let port = s.port;
    for (who, cookie) in outsiders(&carol) {
        // Control: host B's /staff is public, host A's is not.
        let id = unique("b-control");
        let target = format!("/staff/{id}");
        let r = s.send("GET", HOST_B, &target, cookie, &[]);
        s.assert_reached(&r, "GET", &id, "", &format!("{who}: GET {HOST_B}{target}"));

        let id = unique("a-control");
        let target = format!("/staff/{id}");
        let r = s.send("GET", HOST_A, &target, cookie, &[]);
        let what = format!("{who}: GET {HOST_A}{target}");
        match cookie {
            None => {
                s.assert_stopped(&r, 302, "", &id, &what);
                let loc = r.header("location").unwrap_or_default();
                assert!(
                    loc.starts_with(&format!("http://{HOST_A}:{port}/oauth2/start?rd=")),
                    "{what}: login Location {loc:?}"
                );
            }
            Some(_) => s.assert_stopped(&r, 403, NOT_STAFF, &id, &what),
        }

        // The spoof: host A's request, described as host B's (any scheme,
        // with or without the port, with or without a method).
        for scheme in ["http", "https"] {
            for authority in [format!("{HOST_B}:{port}"), HOST_B.to_owned()] {
                for method in [None, Some("GET")] {
                    let id = unique("spoof-host");
                    let target = format!("/staff/{id}");
                    let url = format!("{scheme}://{authority}{target}");
                    let mut headers = vec![("X-Original-URL", url.as_str())];
                    if let Some(m) = method {
                        headers.push(("X-Original-Method", m));
                    }
                    let r = s.send("GET", HOST_A, &target, cookie, &headers);
                    s.assert_stopped(
                        &r,
                        DISAGREE_STATUS,
                        "disagree on the host",
                        &id,
                        &format!("{who}: GET {HOST_A}{target} with {headers:?}"),
                    );
                }
            }
        }

        // Both families spoofed alike: the proxy replaces the client's
        // X-Forwarded-*, so the copies still disagree.
        let id = unique("spoof-both");
        let target = format!("/staff/{id}");
        let url = format!("http://{HOST_B}:{port}{target}");
        let fwd_host = format!("{HOST_B}:{port}");
        let headers = [
            ("X-Original-URL", url.as_str()),
            ("X-Original-Method", "GET"),
            ("X-Forwarded-Host", fwd_host.as_str()),
            ("X-Forwarded-Uri", target.as_str()),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "http"),
        ];
        let r = s.send("GET", HOST_A, &target, cookie, &headers);
        s.assert_stopped(
            &r,
            DISAGREE_STATUS,
            "disagree on the host",
            &id,
            &format!("{who}: GET {HOST_A}{target} with {headers:?}"),
        );
    }
}

async fn foreign_scheme_in_original_url_does_not_change_the_verdict(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let carol = s.login("carol").await;
    let bob = s.login("bob").await;
    let port = s.port;
    // The proxy speaks plain HTTP; the client's copy says https (and, as a
    // control, http). Same host and path: the check agrees, the verdict is
    // the rule's. nginx semantics apply (X-Original-URL is present): no
    // redirect, 401 for the anonymous browser.
    for scheme in ["https", "http"] {
        for (who, cookie) in outsiders(&carol) {
            let id = unique("scheme");
            let target = format!("/staff/{id}");
            let url = format!("{scheme}://{HOST_A}:{port}{target}");
            let headers = [("X-Original-URL", url.as_str())];
            let r = s.send("GET", HOST_A, &target, cookie, &headers);
            let what = format!("{who}: GET {HOST_A}{target} with {headers:?}");
            match cookie {
                None => {
                    s.assert_stopped(&r, 401, "unauthenticated", &id, &what);
                    let login = r.header("x-auth-login-url").unwrap_or_default();
                    assert!(
                        login.starts_with(&format!("{scheme}://{HOST_A}:{port}/oauth2/start?rd=")),
                        "{what}: X-Auth-Login-URL {login:?}"
                    );
                }
                Some(_) => s.assert_stopped(&r, 403, NOT_STAFF, &id, &what),
            }
        }
        // bob (staff) still gets through, and host B stays public.
        let id = unique("scheme-bob");
        let target = format!("/staff/{id}");
        let url = format!("{scheme}://{HOST_A}:{port}{target}");
        let headers = [
            ("X-Original-URL", url.as_str()),
            ("X-Original-Method", "GET"),
        ];
        let r = s.send("GET", HOST_A, &target, Some(&bob), &headers);
        s.assert_reached(&r, "GET", &id, "bob", &format!("bob with {headers:?}"));

        let id = unique("scheme-b");
        let target = format!("/staff/{id}");
        let url = format!("{scheme}://{HOST_B}:{port}{target}");
        let headers = [("X-Original-URL", url.as_str())];
        let r = s.send("GET", HOST_B, &target, None, &headers);
        s.assert_reached(
            &r,
            "GET",
            &id,
            "",
            &format!("anonymous on {HOST_B} with {headers:?}"),
        );
    }
}

async fn original_method_get_does_not_open_a_get_only_rule(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let carol = s.login("carol").await;
    let bob = s.login("bob").await;
    let port = s.port;
    // Control: GET /feed is public.
    let id = unique("feed-get");
    let r = s.send("GET", HOST_A, &format!("/feed/{id}"), None, &[]);
    s.assert_reached(&r, "GET", &id, "", "anonymous GET /feed");

    for method in ["POST", "DELETE"] {
        for (who, cookie) in outsiders(&carol) {
            // Control: the write is not public.
            let id = unique("feed-control");
            let target = format!("/feed/{id}");
            let r = s.send(method, HOST_A, &target, cookie, &[]);
            let what = format!("{who}: {method} {target}");
            match cookie {
                None => {
                    s.assert_stopped(&r, 302, "", &id, &what);
                    let loc = r.header("location").unwrap_or_default();
                    assert!(
                        loc.starts_with(&format!("http://{HOST_A}:{port}/oauth2/start?rd=")),
                        "{what}: login Location {loc:?}"
                    );
                }
                Some(_) => s.assert_stopped(&r, 403, NOT_STAFF, &id, &what),
            }

            // X-Original-Method alone: the proxy's X-Forwarded-Method
            // decides, so the answer is the control's.
            let id = unique("feed-method");
            let target = format!("/feed/{id}");
            let headers = [("X-Original-Method", "GET")];
            let r = s.send(method, HOST_A, &target, cookie, &headers);
            let what = format!("{who}: {method} {target} with {headers:?}");
            match cookie {
                None => s.assert_stopped(&r, 302, "", &id, &what),
                Some(_) => s.assert_stopped(&r, 403, NOT_STAFF, &id, &what),
            }

            // With a matching X-Original-URL (either scheme) beside it: the
            // methods disagree.
            for scheme in ["http", "https"] {
                let id = unique("feed-url-method");
                let target = format!("/feed/{id}");
                let url = format!("{scheme}://{HOST_A}:{port}{target}");
                let headers = [
                    ("X-Original-URL", url.as_str()),
                    ("X-Original-Method", "GET"),
                ];
                let r = s.send(method, HOST_A, &target, cookie, &headers);
                s.assert_stopped(
                    &r,
                    DISAGREE_STATUS,
                    "disagree on the method",
                    &id,
                    &format!("{who}: {method} {target} with {headers:?}"),
                );
            }

            // X-Original-URL without a method: the proxy's method is used.
            let id = unique("feed-url");
            let target = format!("/feed/{id}");
            let url = format!("http://{HOST_A}:{port}{target}");
            let headers = [("X-Original-URL", url.as_str())];
            let r = s.send(method, HOST_A, &target, cookie, &headers);
            let what = format!("{who}: {method} {target} with {headers:?}");
            match cookie {
                None => s.assert_stopped(&r, 401, "unauthenticated", &id, &what),
                Some(_) => s.assert_stopped(&r, 403, NOT_STAFF, &id, &what),
            }
        }

        // bob (staff) may write, with his identity.
        let id = unique("feed-bob");
        let target = format!("/feed/{id}");
        let r = s.send(method, HOST_A, &target, Some(&bob), &[]);
        s.assert_reached(&r, method, &id, "bob", &format!("bob: {method} {target}"));
    }
}

async fn allowed_requests_reach_the_app_with_identity(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let carol = s.login("carol").await;
    let bob = s.login("bob").await;
    let id = unique("bob-staff");
    let target = format!("/staff/{id}?q=1");
    let r = s.send("GET", HOST_A, &target, Some(&bob), &[]);
    s.assert_reached(&r, "GET", &id, "bob", "bob on host A's /staff");

    // A copy of the nginx family that describes the request truthfully changes nothing.
    let id = unique("bob-staff-truthful");
    let target = format!("/staff/{id}?q=1");
    let url = format!("http://{HOST_A}:{}{target}", s.port);
    let headers = [
        ("X-Original-URL", url.as_str()),
        ("X-Original-Method", "GET"),
    ];
    let r = s.send("GET", HOST_A, &target, Some(&bob), &headers);
    s.assert_reached(&r, "GET", &id, "bob", "bob with a truthful X-Original-URL");

    for (who, cookie) in outsiders(&carol) {
        let id = unique("b-public");
        let target = format!("/staff/{id}");
        let r = s.send("GET", HOST_B, &target, cookie, &[]);
        s.assert_reached(&r, "GET", &id, "", &format!("{who} on host B's /staff"));
    }
}

/// nginx's own page for a 403 from `auth_request`.
const NGINX_403: &str = "403 Forbidden";

/// Behind ingress-nginx a client's `X-Forwarded-*` reach portcullis beside
/// the controller's `X-Original-URL` / `-Method`: naming another host, path
/// or method they are refused (403), and client copies of the nginx family
/// are replaced by the controller, so they change nothing.
async fn ingress_nginx_client_forwarded_headers_do_not_steer_the_check() {
    let s = stack(Kind::Nginx);
    let _logs = s.logs_on_failure();
    let carol = s.login("carol").await;
    let port = s.port;
    let other = format!("{HOST_B}:{port}");
    for (who, cookie) in outsiders(&carol) {
        // The verdict on host A's /staff without help: the sign-in
        // redirect, or 403 for carol.
        let control = |r: &RawResponse, id: &str, what: &str| match cookie {
            None => {
                s.assert_stopped(r, 302, "", id, what);
                let loc = r.header("location").unwrap_or_default();
                let want =
                    format!("http://{HOST_A}:{port}/oauth2/start?rd=http://{HOST_A}:{port}/");
                assert!(loc.starts_with(&want), "{what}: sign-in Location {loc:?}");
            }
            Some(_) => s.assert_stopped(r, 403, NGINX_403, id, what),
        };
        let id = unique("ingress-control");
        let target = format!("/staff/{id}");
        let r = s.send("GET", HOST_A, &target, cookie, &[]);
        control(&r, &id, &format!("{who}: GET {HOST_A}{target}"));

        // Client X-Forwarded-* naming host B or a public path: refused.
        let id = unique("ingress-fwd");
        let target = format!("/staff/{id}");
        let spoofs: [Vec<(&str, &str)>; 4] = [
            vec![("X-Forwarded-Host", other.as_str())],
            vec![
                ("X-Forwarded-Host", other.as_str()),
                ("X-Forwarded-Uri", target.as_str()),
            ],
            vec![("X-Forwarded-Uri", "/health")],
            vec![
                ("X-Forwarded-Host", other.as_str()),
                ("X-Forwarded-Uri", target.as_str()),
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Proto", "https"),
            ],
        ];
        for headers in &spoofs {
            let r = s.send("GET", HOST_A, &target, cookie, headers);
            s.assert_stopped(
                &r,
                403,
                NGINX_403,
                &id,
                &format!("{who}: GET {HOST_A}{target} with {headers:?}"),
            );
        }

        // Client copies of the nginx family: replaced, the verdict is the control's.
        let id = unique("ingress-orig");
        let target = format!("/staff/{id}");
        let url = format!("http://{other}{target}");
        let headers = [
            ("X-Original-URL", url.as_str()),
            ("X-Original-Method", "GET"),
        ];
        let r = s.send("GET", HOST_A, &target, cookie, &headers);
        control(
            &r,
            &id,
            &format!("{who}: GET {HOST_A}{target} with {headers:?}"),
        );

        // The GET-only public rule: a POST stays a POST.
        for method in ["POST", "DELETE"] {
            let id = unique("ingress-method");
            let target = format!("/feed/{id}");
            for headers in [
                vec![("X-Forwarded-Method", "GET")],
                vec![
                    ("X-Forwarded-Method", "GET"),
                    ("X-Forwarded-Uri", target.as_str()),
                ],
            ] {
                let r = s.send(method, HOST_A, &target, cookie, &headers);
                s.assert_stopped(
                    &r,
                    403,
                    NGINX_403,
                    &id,
                    &format!("{who}: {method} {target} with {headers:?}"),
                );
            }
            let headers = [("X-Original-Method", "GET")];
            let r = s.send(method, HOST_A, &target, cookie, &headers);
            let what = format!("{who}: {method} {target} with {headers:?}");
            match cookie {
                None => s.assert_stopped(&r, 302, "", &id, &what),
                Some(_) => s.assert_stopped(&r, 403, NGINX_403, &id, &what),
            }
        }
    }
}

/// The Ingress annotations work with portcullis: the sign-in redirect leads
/// through the IdP back to the original URL, identity headers reach the
/// app (client copies replaced), the public rules hold.
async fn ingress_nginx_login_and_allowed_requests() {
    let s = stack(Kind::Nginx);
    let _logs = s.logs_on_failure();
    let id = unique("ingress-login");
    let url = format!("http://{HOST_A}:{}/staff/{id}", s.port);
    let page = Browser::new().open_as(&url, "bob").await;
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(page.url.as_str(), url, "{page}");
    let seen = page.expect_app();
    assert_eq!(
        seen.identity(),
        ("bob".into(), "bob@example.com".into(), "staff".into())
    );

    // auth-response-headers replace client copies of the identity headers.
    let spoof = [
        ("X-Auth-User", "mallory"),
        ("x-auth-groups", "evil-admins"),
        ("X-Auth-Email", "mallory@evil.example"),
    ];
    let bob = s.login("bob").await;
    for method in ["POST", "DELETE"] {
        let id = unique("ingress-bob");
        let target = format!("/feed/{id}");
        let r = s.send(method, HOST_A, &target, Some(&bob), &spoof);
        s.assert_reached(&r, method, &id, "bob", &format!("bob: {method} {target}"));
    }
    let id = unique("ingress-feed");
    let target = format!("/feed/{id}");
    let r = s.send("GET", HOST_A, &target, None, &spoof);
    s.assert_reached(&r, "GET", &id, "", "anonymous GET /feed");
    let id = unique("ingress-b");
    let target = format!("/staff/{id}");
    let r = s.send("GET", HOST_B, &target, None, &spoof);
    s.assert_reached(&r, "GET", &id, "", "anonymous on host B's /staff");
}

mod ingress_nginx {
    #[tokio::test]
    async fn client_forwarded_headers_do_not_steer_the_check() {
        super::ingress_nginx_client_forwarded_headers_do_not_steer_the_check().await;
    }
    #[tokio::test]
    async fn login_and_allowed_requests() {
        super::ingress_nginx_login_and_allowed_requests().await;
    }
}

macro_rules! default_front_suite {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn original_url_naming_the_public_host_does_not_open_the_protected_one() {
                super::original_url_naming_the_public_host_does_not_open_the_protected_one($kind)
                    .await;
            }
            #[tokio::test]
            async fn foreign_scheme_in_original_url_does_not_change_the_verdict() {
                super::foreign_scheme_in_original_url_does_not_change_the_verdict($kind).await;
            }
            #[tokio::test]
            async fn original_method_get_does_not_open_a_get_only_rule() {
                super::original_method_get_does_not_open_a_get_only_rule($kind).await;
            }
            #[tokio::test]
            async fn allowed_requests_reach_the_app_with_identity() {
                super::allowed_requests_reach_the_app_with_identity($kind).await;
            }
        }
    };
}

default_front_suite!(traefik, Kind::Traefik);
default_front_suite!(caddy, Kind::Caddy);
