use super::*;

use std::collections::HashMap;

use http::header::{ACCEPT, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};

/// A runtime with one rule named `name`, whose decision counters are this
/// test's own.
fn runtime(name: &str) -> Runtime {
    let text = format!(
        "[server]\nexternal_url = \"https://auth.example.com\"\n\
         [oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\n[session]\n\
         [[rule]]\nname = \"{name}\"\nhost = \"app.example.com\"\npolicy = \"authenticated\"\n"
    );
    let env: HashMap<String, String> = [(
        "PORTCULLIS_SESSION_SECRET".to_owned(),
        "0123456789abcdef0123456789abcdef-x".to_owned(),
    )]
    .into();
    let config = crate::config::Config::from_toml(&text, std::path::Path::new("/"), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    Runtime::compile(config).unwrap_or_else(|e| panic!("{e}"))
}

fn headers(accept: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_static(accept));
    h
}

const ASKED: Asked<'static> = Asked {
    proto: "https",
    host_raw: "app.example.com",
    target: "/dash?x=1",
};

fn respond(rt: &Runtime, mode: Mode, headers: &HeaderMap, d: Decision<'_>) -> Response<Body> {
    let at = At::new(mode, headers);
    match decision(rt, &at, &ASKED, d) {
        Answer::Respond(res) => res,
        Answer::Pass(_) => panic!("a refusal passed"),
    }
}

fn counted(rule: &str, outcome: &str) -> String {
    let out = crate::base::metrics::render();
    let key = format!("portcullis_decisions_total{{outcome=\"{outcome}\",rule=\"{rule}\"}} ");
    out.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .unwrap_or_else(|| panic!("no {key} in\n{out}"))
        .to_owned()
}

#[test]
fn every_mode_counts_its_decisions_on_the_rule() {
    let rt = runtime("respond-count");
    let rule = &rt.rules.rules()[0];
    let h = headers("application/json");
    for mode in [Mode::ForwardAuth, Mode::Nginx, Mode::Proxy] {
        respond(&rt, mode, &h, Decision::Deny(Some(rule)));
        let at = At::new(mode, &h);
        assert!(matches!(
            decision(&rt, &at, &ASKED, Decision::Public(Some(rule))),
            Answer::Pass(None)
        ));
    }
    assert_eq!(counted("respond-count", "deny"), "3");
    assert_eq!(counted("respond-count", "allow"), "3");
    // A malformed request is counted before any rule is looked at.
    let before: u64 = counted("none", "bad_request").parse().unwrap();
    failure(Some(&rt), &At::new(Mode::Proxy, &h), Failure::BadHost);
    let after: u64 = counted("none", "bad_request").parse().unwrap();
    assert!(after > before, "{before} -> {after}");
}

#[test]
fn unauthenticated_browsers_are_redirected_except_under_nginx() {
    let rt = runtime("respond-login");
    let rule = &rt.rules.rules()[0];
    let browser = headers("text/html");
    let login =
        "https://auth.example.com/oauth2/start?rd=https%3A%2F%2Fapp.example.com%2Fdash%3Fx%3D1";

    let res = respond(
        &rt,
        Mode::ForwardAuth,
        &browser,
        Decision::Unauthenticated(Some(rule)),
    );
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()[LOCATION], login);

    let res = respond(
        &rt,
        Mode::Nginx,
        &browser,
        Decision::Unauthenticated(Some(rule)),
    );
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[&X_AUTH_LOGIN_URL], login);
    assert_eq!(res.headers()[WWW_AUTHENTICATE], "Bearer");

    // An API client gets the 401 in every mode, without the login URL.
    let api = headers("application/json");
    for mode in [Mode::ForwardAuth, Mode::Nginx, Mode::Proxy] {
        let res = respond(&rt, mode, &api, Decision::Unauthenticated(None));
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{mode:?}");
        assert_eq!(res.headers()[WWW_AUTHENTICATE], "Bearer", "{mode:?}");
        assert!(!res.headers().contains_key(&X_AUTH_LOGIN_URL), "{mode:?}");
    }
}

#[test]
fn forward_auth_answers_carry_the_identity_headers_and_proxy_refusals_do_not() {
    let rt = runtime("respond-identity");
    let user = rt.config.headers.user.clone();
    let h = headers("application/json");
    for (mode, carried) in [
        (Mode::ForwardAuth, true),
        (Mode::Nginx, true),
        (Mode::Proxy, false),
    ] {
        let res = respond(&rt, mode, &h, Decision::Deny(None));
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.headers().contains_key(&user), carried, "{mode:?}");
        let res = failure(Some(&rt), &At::new(mode, &h), Failure::BadHost);
        assert_eq!(res.headers().contains_key(&user), carried, "{mode:?}");
    }
    let res = allowed(&rt, &ASKED, None);
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[&user], "");
}

#[test]
fn too_many_attempts_is_a_403_under_nginx() {
    let rt = runtime("respond-attempts");
    let h = headers("application/json");
    let res = respond(&rt, Mode::Proxy, &h, Decision::TooManyAttempts(None, 7));
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[RETRY_AFTER], "7");
    let res = respond(&rt, Mode::Nginx, &h, Decision::TooManyAttempts(None, 7));
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[test]
fn each_failure_has_its_fault_and_status() {
    let path =
        crate::auth::rules::path::normalize(crate::auth::rules::path::split_target("/a%2fb"))
            .expect_err("an encoded slash");
    let io = std::io::Error::other("refused");
    let upstream = |timed_out| Failure::Upstream {
        rule: "app",
        url: "http://127.0.0.1:1/",
        error: &io,
        timed_out,
    };
    let store = StoreError::Config("down".into());
    let idp = LoginError::Discovery {
        detail: "issuer differs".into(),
        source: None,
    };
    let state = LoginError::StateMissing;
    let login_store = LoginError::Store(StoreError::Config("down".into()));
    let cases = [
        (
            Failure::BadCheck(&io),
            Mode::ForwardAuth,
            Fault::Client,
            400,
        ),
        (Failure::BadCheck(&io), Mode::Nginx, Fault::Client, 403),
        (Failure::BadHost, Mode::Proxy, Fault::Client, 400),
        (Failure::BadPath(&path), Mode::Proxy, Fault::Client, 400),
        (Failure::NotFound, Mode::Api, Fault::Client, 404),
        (Failure::BadQuery("?user="), Mode::Admin, Fault::Client, 400),
        (Failure::Method("GET"), Mode::Admin, Fault::Client, 405),
        (upstream(false), Mode::Proxy, Fault::Upstream, 502),
        (upstream(true), Mode::Proxy, Fault::Upstream, 504),
        (Failure::Store(&store), Mode::Endpoint, Fault::Store, 503),
        (Failure::Login(&idp, "/"), Mode::Endpoint, Fault::Idp, 502),
        (
            Failure::Login(&state, "/"),
            Mode::Endpoint,
            Fault::Client,
            400,
        ),
        (
            Failure::Login(&login_store, "/"),
            Mode::Endpoint,
            Fault::Store,
            503,
        ),
    ];
    let h = headers("application/json");
    for (f, mode, fault, status) in cases {
        assert_eq!(f.fault(), fault, "{f:?}");
        let text = format!("{f:?}");
        let res = failure(None, &At::new(mode, &h), f);
        assert_eq!(res.status().as_u16(), status, "{text}");
    }
}

#[test]
fn store_failures_show_their_cause_on_the_admin_listener_only() {
    let store = StoreError::Config("redis at 10.0.0.9 refused".into());
    let h = headers("application/json");
    let body = |mode| text(failure(None, &At::new(mode, &h), Failure::Store(&store)));
    assert!(body(Mode::Admin).contains("10.0.0.9"));
    for mode in [Mode::Api, Mode::Endpoint, Mode::ForwardAuth, Mode::Proxy] {
        let text = body(mode);
        assert!(!text.contains("10.0.0.9"), "{mode:?}: {text}");
        assert!(text.contains("store_unavailable"), "{mode:?}: {text}");
    }
}

/// The body of a fixed answer, as text.
fn text(res: Response<Body>) -> String {
    let http_body_util::Either::Left(full) = res.into_body() else {
        panic!("a fixed body")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = rt
        .block_on(http_body_util::BodyExt::collect(full))
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn a_missing_session_is_a_401_with_its_text() {
    let h = headers("text/html");
    let at = At::new(Mode::Api, &h);
    let f = Failure::NoSession {
        message: "no valid session",
        challenge: true,
    };
    assert_eq!(f.fault(), Fault::Client);
    let res = failure(None, &at, f);
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[WWW_AUTHENTICATE], "Bearer");
    assert_eq!(
        res.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    assert!(text(res).contains("no valid session"));
    let f = Failure::NoSession {
        message: "sign in first",
        challenge: false,
    };
    let res = failure(None, &at, f);
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
    assert!(text(res).contains("\"unauthenticated\""));
}

#[test]
fn admin_refusals_are_answered_here() {
    let h = HeaderMap::new();
    let at = At::new(Mode::Admin, &h);
    let refused = |refusal| Failure::Admin {
        refusal,
        peer: "127.0.0.1:40000".parse().unwrap(),
        host: "rebound.example",
        path: "/admin/sessions",
    };
    let cases = [
        (AdminRefusal::Misdirected, 421, None),
        (AdminRefusal::MissingToken, 401, Some(ADMIN_CHALLENGE)),
        (AdminRefusal::WrongToken, 401, Some(ADMIN_CHALLENGE_INVALID)),
    ];
    for (refusal, status, challenge) in cases {
        let f = refused(refusal);
        assert_eq!(f.fault(), Fault::Client, "{refusal:?}");
        let res = failure(None, &at, f);
        assert_eq!(res.status().as_u16(), status, "{refusal:?}");
        assert_eq!(
            res.headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap()),
            challenge,
            "{refusal:?}"
        );
        let body = text(res);
        let code = match refusal {
            AdminRefusal::Misdirected => "misdirected_request",
            _ => "unauthorized",
        };
        assert!(body.contains(code), "{refusal:?}: {body}");
    }
}
