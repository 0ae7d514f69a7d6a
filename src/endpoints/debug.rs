//! `GET <prefix>/debug`: what portcullis knows about the caller, for the
//! caller only.
//!
//! Served only when `server.debug_endpoint = true` (otherwise 404) and only
//! to a signed-in browser (otherwise 401): the caller's own identity, the
//! claims of their ID token and, fetched now with their access token, of
//! userinfo, and the rule that matches this request (its host, and the path
//! given as `?path=`, else `/`) with its verdict on them, and the client
//! address rule `networks` were matched against. No token, cookie
//! or secret is ever part of the answer.
//!
//! Called by `server`'s router.

use std::net::SocketAddr;
use std::sync::OnceLock;

use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::auth::pipeline::Gateway;
use crate::auth::rules::host::normalize_host;
use crate::auth::rules::path::{normalize, split_target};
use crate::auth::rules::{Match, RequestFacts};
use crate::auth::session::Session;
use crate::base::http_util::{self, Body};
use crate::base::jwt::jwt_payload;
use crate::config::{DefaultPolicy, Policy};
use crate::endpoints::respond::{self, At, Failure, Mode};

/// Answers `GET <prefix>/debug`.
pub async fn handle<B>(gw: &Gateway, req: &Request<B>, peer: SocketAddr) -> Response<Body> {
    let rt = gw.runtime.load();
    if !rt.config.server.debug_endpoint {
        return respond::not_found();
    }
    let at = At::new(Mode::Api, req.headers());
    let session = match gw.session(req.headers()).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let no_session = Failure::NoSession {
                message: "sign in first; the debug page shows your own session only",
                challenge: false,
            };
            return respond::failure(None, &at, no_session);
        }
        Err(e) => return respond::failure(None, &at, Failure::Store(&e)),
    };
    let headers = req.headers();
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let host_raw = match get("x-forwarded-host") {
        Some(h) if rt.is_trusted(peer.ip()) => h.split(',').next().unwrap_or("").trim(),
        _ => http_util::request_host(req).unwrap_or(""),
    };
    let query = req.uri().query();
    let wanted = http_util::query_param(query, "path").unwrap_or("/".into());
    let host = normalize_host(host_raw).map(|h| h.into_owned()).ok();
    let path = normalize(split_target(&wanted))
        .map(|p| p.into_owned())
        .ok();
    let client = crate::auth::client_addr::client_addr(
        peer.ip(),
        headers,
        &rt.config.server.trusted_proxies,
    );
    let rule = match (&host, &path) {
        (Some(host), Some(path)) => {
            let facts = RequestFacts {
                host,
                path,
                method: Some(&Method::GET),
                client: client.ok(),
            };
            rule_json(rt.rules.evaluate(&facts), &session, client.ok())
        }
        _ => json!({"error": "host or path not valid"}),
    };
    let body = json!({
        "identity": {
            "user": session.identity.user,
            "email": session.identity.email,
            "groups": session.identity.groups,
        },
        "session": {
            "created_at": session.created_at,
            "expires_at": session.expires_at,
        },
        "claims": {
            "id_token": id_token_claims(&session),
            "userinfo": userinfo_claims(gw, &session).await,
        },
        "request": {
            "host": host,
            "path": path,
            "method": "GET",
            "client": match client {
                Ok(ip) => json!(ip.to_string()),
                Err(e) => json!({"error": e.to_string()}),
            },
        },
        "rule": rule,
    });
    http_util::fixed(
        StatusCode::OK,
        "application/json",
        serde_json::to_string_pretty(&body).unwrap_or_default(),
    )
}

fn rule_json(m: Match<'_>, session: &Session, client: Option<std::net::IpAddr>) -> Value {
    let id = &session.identity;
    match m {
        Match::Rule(r) => json!({
            "name": r.name,
            "index": r.index,
            "policy": policy_name(r.policy),
            "path": r.path(),
            "groups": r.required_groups(),
            "groups_all": r.required_all_groups(),
            "missing_groups": r.missing_groups(id).collect::<Vec<_>>(),
            "networks": r.networks().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "network_matched": client.and_then(|ip| r.network_of(ip)).map(ToString::to_string),
            "permits_you": r.permits(id),
        }),
        Match::Default(d) => json!({
            "name": "default",
            "policy": match d { DefaultPolicy::Deny => "deny", DefaultPolicy::Authenticated => "authenticated" },
            "permits_you": d == DefaultPolicy::Authenticated,
        }),
    }
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Public => "public",
        Policy::Authenticated => "authenticated",
        Policy::Deny => "deny",
    }
}

fn id_token_claims(session: &Session) -> Value {
    session
        .id_token
        .as_ref()
        .and_then(|t| jwt_payload(t.expose()))
        .unwrap_or(Value::Null)
}

/// Userinfo now, with the session's access token; `{"error": ...}` when that fails.
async fn userinfo_claims(gw: &Gateway, session: &Session) -> Value {
    let Some(token) = &session.access_token else {
        return json!({"error": "this session has no access token"});
    };
    let url = match gw.oidc.metadata().await {
        Ok(meta) => match meta.userinfo_endpoint() {
            Some(u) => u.url().clone(),
            None => return json!({"error": "the IdP has no userinfo endpoint"}),
        },
        Err(e) => return json!({"error": e.to_string()}),
    };
    userinfo_at(&url, token.expose()).await
}

/// `GET url` with the access token, through the one client kept for it.
async fn userinfo_at(url: &url::Url, access_token: &str) -> Value {
    let http = match userinfo_client() {
        Ok(c) => c,
        Err(e) => {
            let e = crate::base::error::error_chain(e);
            return json!({ "error": format!("cannot set up the HTTP client: {e}") });
        }
    };
    match crate::auth::oidc::probe::fetch_userinfo(http, url, access_token).await {
        Ok(v) => v,
        Err(e) => json!({"error": e}),
    }
}

/// The client userinfo is fetched with: built on first use and kept, so
/// pages reuse its connections to the IdP.
fn userinfo_client() -> Result<&'static reqwest::Client, &'static reqwest::Error> {
    static CLIENT: OnceLock<Result<reqwest::Client, reqwest::Error>> = OnceLock::new();
    CLIENT
        .get_or_init(crate::auth::oidc::probe::http_client)
        .as_ref()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A userinfo endpoint that keeps connections open and counts them.
    async fn counting_userinfo() -> (url::Url, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/userinfo", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let body = r#"{"sub":"alice"}"#;
                            let res = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if conn.write_all(res.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url.parse().unwrap(), accepted)
    }

    #[tokio::test]
    async fn pages_share_one_client_and_its_connections() {
        let (url, accepted) = counting_userinfo().await;
        for _ in 0..3 {
            assert_eq!(userinfo_at(&url, "token").await, json!({"sub": "alice"}));
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "each page built a client of its own"
        );
    }
}
