//! Logout driven by the IdP, and logout continued at the IdP.
//!
//! [`backchannel`] is `POST <prefix>/backchannel_logout` (OpenID Connect
//! Back-Channel Logout 1.0): the IdP posts a signed `logout_token`; it is
//! verified against the issuer's JWKS (the keys ID tokens are checked with,
//! allow-listed asymmetric algorithms only), then `iss`, `aud`, `iat`, `exp`,
//! the `events` claim, `sid` and/or `sub`, and the absence of `nonce` are
//! checked. Every matching session ends on every instance (by `sid` when the
//! token has one, otherwise by `sub`). A token's `jti` is accepted once: it is
//! remembered in the session store (so by every instance) for as long as the
//! token could pass the `iat` check, and forgotten again if ending the
//! sessions failed, so the IdP's retry goes through. Answers: 200, or 400 with a JSON
//! `{"error", "error_description"}` body, always `Cache-Control: no-store`.
//!
//! [`end_session_url`] builds the RP-initiated logout redirect
//! (`oidc.rp_logout = true`): the IdP's `end_session_endpoint` with
//! `id_token_hint`, `post_logout_redirect_uri` and `client_id`.

use crate::base::transport::body::ClientBody;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use serde_json::Value;

use crate::auth::bearer::token::{Expect, Parsed};
use crate::auth::bearer::BearerError;
use crate::auth::pipeline::Gateway;
use crate::auth::session::Revoke;
use crate::base::clock::unix_now;
use crate::base::http_util::{self, fixed, Body};

/// The `events` member a logout token must carry.
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Largest request body read (a logout token is a few KiB).
const MAX_BODY: usize = 64 * 1024;
/// How far in the past `iat` may be: tokens are used at once, never stored.
const MAX_AGE_SECS: u64 = 600;

/// Why a logout token was refused (the 400 body names it).
#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    /// No `logout_token` form field.
    #[error("the request has no logout_token form field")]
    Missing,
    /// The JWT failed a signature or claim check.
    #[error("logout_token rejected: {0}")]
    Token(#[from] BearerError),
    /// `iss` is not the configured issuer.
    #[error("logout_token rejected: iss is not the configured issuer")]
    Issuer,
    /// A logout-token-specific check failed.
    #[error("logout_token rejected: {0}")]
    Claims(&'static str),
    /// The sessions could not be ended.
    #[error("sessions could not be ended: {0}")]
    Store(#[from] crate::auth::session::StoreError),
}

/// What a valid logout token names.
#[derive(Debug, PartialEq, Eq)]
pub struct LogoutTarget {
    /// `sid`, when present.
    pub sid: Option<String>,
    /// `sub`, when present.
    pub sub: Option<String>,
    /// `jti`, when present (required by the specification, but not every
    /// IdP sends it; without it a replay cannot be told apart).
    pub jti: Option<String>,
}

/// `POST <prefix>/backchannel_logout`.
pub async fn backchannel(gw: &Gateway, req: Request<ClientBody>) -> Response<Body> {
    let result = logout(gw, req).await;
    crate::base::metrics::global().backchannel_logout(result.is_ok());
    match result {
        Ok((target, n)) => {
            tracing::info!(sid = ?target.sid, sub = ?target.sub, sessions = n, "back-channel logout from the identity provider");
            no_store(fixed(StatusCode::OK, "application/json", "{}"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout refused");
            let code = if matches!(e, LogoutError::Missing) {
                "invalid_request"
            } else {
                "invalid_token"
            };
            let body = serde_json::json!({ "error": code, "error_description": e.to_string() });
            no_store(fixed(
                StatusCode::BAD_REQUEST,
                "application/json",
                body.to_string(),
            ))
        }
    }
}

async fn logout(
    gw: &Gateway,
    req: Request<ClientBody>,
) -> Result<(LogoutTarget, usize), LogoutError> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| LogoutError::Missing)?
        .to_bytes();
    let body = std::str::from_utf8(&body).map_err(|_| LogoutError::Missing)?;
    let token = http_util::query_param(Some(body), "logout_token")
        .filter(|t| !t.is_empty())
        .ok_or(LogoutError::Missing)?;
    let target = verify(gw, &token).await?;
    // A token is used once: a copy replayed later (to this instance or
    // another) must not end the sessions the user has opened since.
    let once = target
        .jti
        .as_deref()
        .map(|jti| jti_digest(&gw.oidc.config().issuer, jti));
    if let Some(digest) = &once {
        if !gw.sessions.first_use(digest, replay_window(gw)).await? {
            return Err(LogoutError::Claims(
                "jti already used: a replayed logout token",
            ));
        }
    }
    let ended = match (&target.sid, &target.sub) {
        (Some(sid), _) => gw.sessions.revoke(Revoke::IdpSession(sid)).await,
        (None, Some(sub)) => gw.sessions.revoke(Revoke::Subject(sub)).await,
        (None, None) => return Err(LogoutError::Claims("neither sid nor sub")),
    };
    match ended {
        Ok(n) => Ok((target, n)),
        Err(e) => {
            // Not done: the IdP's retry of this token must be accepted.
            if let Some(digest) = &once {
                if let Err(f) = gw.sessions.forget_use(digest).await {
                    tracing::warn!(error = %f, "cannot forget a failed logout token's jti; the IdP's retry of it will be refused");
                }
            }
            Err(e.into())
        }
    }
}

/// The store key for a logout token's `jti`: a digest of issuer and `jti`.
fn jti_digest(issuer: &str, jti: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(issuer.as_bytes());
    h.update([0]);
    h.update(jti.as_bytes());
    h.finalize().into()
}

/// How long a used `jti` is remembered: as long as a token with it could
/// still pass the `iat` check (`iat` may be up to the leeway ahead).
fn replay_window(gw: &Gateway) -> std::time::Duration {
    let leeway = gw.oidc.config().clock_leeway.as_secs();
    std::time::Duration::from_secs(MAX_AGE_SECS + 2 * leeway)
}

/// Verifies a logout token against the main issuer's keys and claims.
pub async fn verify(gw: &Gateway, token: &str) -> Result<LogoutTarget, LogoutError> {
    let cfg = gw.oidc.config();
    let parsed = Parsed::parse(token)?;
    if parsed.issuer() != Some(cfg.issuer.as_str()) {
        return Err(LogoutError::Issuer);
    }
    let issuer = gw
        .bearer
        .issuers()
        .iter()
        .find(|i| i.iss == cfg.issuer)
        .ok_or(LogoutError::Issuer)?;
    let find = |parsed: &Parsed<'_>| {
        let keys = issuer.jwks.keys();
        match keys.find(parsed.kid.as_deref(), parsed.alg) {
            Some(key) => parsed.verify_signature(key),
            None if keys.keys.is_empty() => Err(BearerError::NoKeys),
            None => Err(BearerError::UnknownKey),
        }
    };
    match (find(&parsed), parsed.kid.as_deref()) {
        (Err(BearerError::UnknownKey | BearerError::NoKeys), Some(kid))
            if issuer.jwks.refetch_for(kid).await =>
        {
            find(&parsed)?
        }
        (result, _) => result?,
    }
    let now = unix_now();
    let leeway = cfg.clock_leeway.as_secs();
    parsed.check_claims(&Expect {
        now,
        leeway,
        audiences: std::slice::from_ref(&cfg.client_id),
        typ: None,
    })?;
    check_logout_claims(&parsed.claims, parsed.typ.as_deref(), now, leeway)
}

/// The checks specific to logout tokens (signature, `iss`, `aud`, `exp`
/// already passed).
fn check_logout_claims(
    claims: &Value,
    typ: Option<&str>,
    now: u64,
    leeway: u64,
) -> Result<LogoutTarget, LogoutError> {
    if let Some(t) = typ {
        let t = t.strip_prefix("application/").unwrap_or(t);
        if !t.eq_ignore_ascii_case("logout+jwt") && !t.eq_ignore_ascii_case("jwt") {
            return Err(LogoutError::Claims("typ is not logout+jwt"));
        }
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(LogoutError::Claims("no iat claim"))?;
    if iat.saturating_add(MAX_AGE_SECS + leeway) < now {
        return Err(LogoutError::Claims("iat is too old"));
    }
    if claims.get("nonce").is_some() {
        return Err(LogoutError::Claims("a nonce claim is present"));
    }
    let event = claims
        .get("events")
        .and_then(|e| e.get(LOGOUT_EVENT))
        .ok_or(LogoutError::Claims(
            "events lacks the back-channel logout event",
        ))?;
    if !event.is_object() {
        return Err(LogoutError::Claims(
            "the back-channel logout event is not a JSON object",
        ));
    }
    let text = |name: &str, bad: &'static str| -> Result<Option<String>, LogoutError> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(Some(s.clone())),
            Some(_) => Err(LogoutError::Claims(bad)),
        }
    };
    const ID_TEXT: &str = "sid or sub is not a non-empty string";
    let target = LogoutTarget {
        sid: text("sid", ID_TEXT)?,
        sub: text("sub", ID_TEXT)?,
        jti: text("jti", "jti is not a non-empty string")?,
    };
    if target.sid.is_none() && target.sub.is_none() {
        return Err(LogoutError::Claims("neither sid nor sub"));
    }
    Ok(target)
}

fn no_store(mut res: Response<Body>) -> Response<Body> {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The RP-initiated logout URL: `end_session_endpoint` with `id_token_hint`,
/// `post_logout_redirect_uri` and `client_id`.
pub fn end_session_url(
    endpoint: &str,
    id_token: &str,
    post_logout_redirect_uri: &str,
    client_id: &str,
) -> Option<String> {
    let mut url = url::Url::parse(endpoint).ok()?;
    url.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
        .append_pair("client_id", client_id);
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "iss": "https://idp", "aud": "portcullis", "iat": unix_now(), "exp": unix_now() + 60,
            "jti": "x", "sid": "s1", "sub": "u1",
            "events": { LOGOUT_EVENT: {} },
        })
    }

    fn check(v: &Value) -> Result<LogoutTarget, LogoutError> {
        check_logout_claims(v, Some("logout+jwt"), unix_now(), 30)
    }

    #[test]
    fn accepts_sid_and_or_sub() {
        let t = check(&good()).unwrap();
        assert_eq!(t.sid.as_deref(), Some("s1"));
        assert_eq!(t.jti.as_deref(), Some("x"));
        let mut v = good();
        v.as_object_mut().unwrap().remove("sid");
        assert_eq!(check(&v).unwrap().sub.as_deref(), Some("u1"));
        let mut v = good();
        v.as_object_mut().unwrap().remove("sub");
        assert_eq!(check(&v).unwrap().sid.as_deref(), Some("s1"));
    }

    #[test]
    fn refuses_hostile_tokens() {
        type Edit = Box<dyn Fn(&mut serde_json::Map<String, Value>)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "nonce",
                Box::new(|m| {
                    m.insert("nonce".into(), json!("n"));
                }),
            ),
            (
                "no events",
                Box::new(|m| {
                    m.remove("events");
                }),
            ),
            (
                "wrong event",
                Box::new(|m| {
                    m.insert("events".into(), json!({"other": {}}));
                }),
            ),
            (
                "event not object",
                Box::new(|m| {
                    m.insert("events".into(), json!({ LOGOUT_EVENT: "x" }));
                }),
            ),
            (
                "no sid no sub",
                Box::new(|m| {
                    m.remove("sid");
                    m.remove("sub");
                }),
            ),
            (
                "empty sid",
                Box::new(|m| {
                    m.insert("sid".into(), json!(""));
                }),
            ),
            (
                "numeric sub",
                Box::new(|m| {
                    m.insert("sub".into(), json!(5));
                }),
            ),
            (
                "numeric jti",
                Box::new(|m| {
                    m.insert("jti".into(), json!(7));
                }),
            ),
            (
                "empty jti",
                Box::new(|m| {
                    m.insert("jti".into(), json!(""));
                }),
            ),
            (
                "no iat",
                Box::new(|m| {
                    m.remove("iat");
                }),
            ),
            (
                "old iat",
                Box::new(|m| {
                    m.insert("iat".into(), json!(unix_now() - 3600));
                }),
            ),
        ];
        for (name, edit) in cases {
            let mut v = good();
            edit(v.as_object_mut().unwrap());
            assert!(check(&v).is_err(), "{name} was accepted");
        }
        assert!(check_logout_claims(&good(), Some("at+jwt"), unix_now(), 30).is_err());
        assert!(check_logout_claims(&good(), None, unix_now(), 30).is_ok());
    }

    #[test]
    fn end_session_url_carries_the_hint() {
        let u =
            end_session_url("https://idp/session/end?x=1", "a.b.c", "https://app/", "pc").unwrap();
        assert!(u.starts_with("https://idp/session/end?x=1&id_token_hint=a.b.c&post_logout_redirect_uri=https%3A%2F%2Fapp%2F&client_id=pc"), "{u}");
    }

    /// Property tests: arbitrary text, forged tokens and signed near-miss
    /// claims against `verify` with a gateway whose issuer serves
    /// [`Keys::good`]. Case count from `PROPTEST_CASES` (default 256); the
    /// properties that sign run a quarter.
    mod properties {
        use std::collections::HashMap;
        use std::sync::Arc;

        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::*;
        use crate::auth::bearer::testkeys::{now, JwksServer};
        use crate::auth::bearer::tests::properties::{forgery, signing_config, Forge, Keys};

        const AUD: &str = "portcullis";

        /// A gateway whose issuer is a loopback server publishing `keys.good`
        /// (one document serves as both discovery document and JWKS).
        fn gateway(keys: &Keys) -> (tokio::runtime::Runtime, JwksServer, Arc<Gateway>, String) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let server = JwksServer::start(keys.jwks());
            let iss = format!("http://127.0.0.1:{}", server.port);
            let mut doc = keys.jwks();
            doc["issuer"] = json!(iss);
            doc["jwks_uri"] = json!(server.url());
            server.set(doc);
            let toml =
                format!("[server]\n[oidc]\nissuer = \"{iss}\"\nclient_id = \"{AUD}\"\n[session]\n");
            let env: HashMap<String, String> = [(
                "PORTCULLIS_SESSION_SECRET".to_owned(),
                "session-secret-0123456789abcdef-XYZ".to_owned(),
            )]
            .into();
            let cfg =
                crate::config::Config::from_toml(&toml, std::path::Path::new("/nonexistent"), &env)
                    .expect("config");
            let gw = rt.block_on(async {
                let gw = crate::server::build(cfg, None).expect("gateway");
                gw.bearer.issuers()[0].jwks.fetch().await.expect("keys");
                gw
            });
            (rt, server, gw, iss)
        }

        fn logout_claims(iss: &str) -> Value {
            json!({
                "iss": iss, "aud": AUD, "iat": now(), "exp": now() + 120,
                "jti": "j1", "sid": "s1", "sub": "u1",
                "events": { LOGOUT_EVENT: {} },
            })
        }

        /// Any text: no panic, never accepted.
        #[test]
        fn prop_arbitrary_logout_tokens_are_refused() {
            let keys = Keys::new();
            let (rt, _server, gw, _) = gateway(&keys);
            let text = prop_oneof!["\\PC{0,80}", "[A-Za-z0-9_.-]{0,200}"];
            proptest!(|(text in text)| {
                prop_assert!(rt.block_on(verify(&gw, &text)).is_err(), "{text:?} accepted");
            });
        }

        /// Forged tokens over valid logout claims: never accepted unless a
        /// configured key really signed the exact text; the outright
        /// forgeries (unsigned, HMAC, attacker-signed, transplanted) never.
        #[test]
        fn prop_forged_logout_tokens_are_refused() {
            let keys = Keys::new();
            let (rt, _server, gw, iss) = gateway(&keys);
            proptest!(signing_config(), |(f in forgery())| {
                let t = keys.forge(&f, &logout_claims(&iss));
                let got = rt.block_on(verify(&gw, &t));
                if got.is_ok() {
                    prop_assert!(keys.genuinely_signed(&t), "{f:?}: {t} accepted");
                }
                if matches!(f, Forge::Unsigned { .. } | Forge::Hmac { .. } | Forge::Attacker { .. } | Forge::Transplant { .. }) {
                    prop_assert!(got.is_err(), "{f:?}: {t} accepted");
                }
            });
        }

        /// For one claim: an acceptable value and an unacceptable one
        /// (`None`: absent); numbers for `iat` and `exp` are seconds from now.
        type Field = (Option<Value>, Option<Value>);

        fn field(
            good: Vec<Option<Value>>,
            bad: Vec<Option<Value>>,
        ) -> impl Strategy<Value = Field> {
            (prop::sample::select(good), prop::sample::select(bad))
        }

        /// Genuinely signed tokens with near-miss claims, at most one of them
        /// wrong: accepted exactly when `iss`, `aud`, `exp`, `iat` are
        /// right, `events` holds the back-channel logout event as an object,
        /// there is no `nonce`, `sid` / `sub` / `jti` are non-empty strings
        /// when present, one of `sid` and `sub` is, and `typ` (when sent) is
        /// `logout+jwt` or `JWT`; then the target names the token's `sid`,
        /// `sub` and `jti`.
        #[test]
        fn prop_signed_logout_tokens_follow_the_spec() {
            let keys = Keys::new();
            let (rt, _server, gw, iss) = gateway(&keys);
            let iss_field = field(
                vec![Some(json!(iss))],
                vec![
                    Some(json!(format!("{iss}/"))),
                    Some(json!("https://other.test")),
                    None,
                ],
            );
            let aud = field(
                vec![Some(json!(AUD)), Some(json!(["x", AUD]))],
                vec![Some(json!("other")), Some(json!([])), None],
            );
            let iat = field(
                vec![Some(json!(0)), Some(json!(-60))],
                vec![
                    Some(json!(-3600)),
                    Some(json!(3600)),
                    Some(json!("now")),
                    None,
                ],
            );
            let exp = field(
                vec![Some(json!(120))],
                vec![Some(json!(-3600)), Some(json!("later")), None],
            );
            let events = field(
                vec![
                    Some(json!({ LOGOUT_EVENT: {} })),
                    Some(json!({ LOGOUT_EVENT: {"x": 1}, "other": 1 })),
                ],
                vec![
                    Some(json!({ LOGOUT_EVENT: "x" })),
                    Some(json!({ LOGOUT_EVENT: null })),
                    Some(json!({ "http://schemas.openid.net/event/backchannel-logout/": {} })),
                    Some(json!([LOGOUT_EVENT])),
                    Some(json!(LOGOUT_EVENT)),
                    None,
                ],
            );
            let nonce = field(vec![None], vec![Some(json!("n")), Some(json!(null))]);
            let id = || {
                field(
                    vec![None, Some(json!("id-1"))],
                    vec![
                        Some(json!("")),
                        Some(json!(5)),
                        Some(json!("x".repeat(1025))),
                    ],
                )
            };
            let typ = (
                prop::sample::select(vec![
                    None,
                    Some("logout+jwt"),
                    Some("application/logout+jwt"),
                    Some("Logout+JWT"),
                    Some("JWT"),
                ]),
                prop::sample::select(vec![Some("at+jwt"), Some("id_token+jwt")]),
            );
            let claims = (iss_field, aud, iat, exp, events, nonce, id(), id(), id());
            proptest!(|(
                (iss_c, aud, iat, exp, events, nonce, sid, sub, jti) in claims,
                typ in typ,
                broken in prop::option::weighted(0.7, 0..10usize),
                which in any::<Index>(),
            )| {
                let fields = [
                    ("iss", iss_c), ("aud", aud), ("iat", iat), ("exp", exp), ("events", events),
                    ("nonce", nonce), ("sid", sid), ("sub", sub), ("jti", jti),
                ];
                let mut c = serde_json::Map::new();
                let mut sent = HashMap::new();
                let n = now();
                for (i, (name, (good, bad))) in fields.into_iter().enumerate() {
                    let mut v = if broken == Some(i) { bad } else { good };
                    // Times are written as seconds from now.
                    if let (Some(offset), "iat" | "exp") = (v.as_ref().and_then(Value::as_i64), name) {
                        v = Some(json!(n.saturating_add_signed(offset)));
                    }
                    if let Some(v) = v {
                        sent.insert(name, v.clone());
                        c.insert(name.to_owned(), v);
                    }
                }
                let k = which.get(&keys.good);
                let mut h = k.header();
                h.typ = (if broken == Some(9) { typ.1 } else { typ.0 }).map(str::to_owned);
                let t = k.sign_with(&h, &Value::Object(c));
                let want = broken.is_none() && (sent.contains_key("sid") || sent.contains_key("sub"));
                let got = rt.block_on(verify(&gw, &t));
                prop_assert_eq!(got.is_ok(), want, "{:?} with {:?} broken: {:?}", got, broken, sent);
                if let Ok(target) = got {
                    let text = |name| sent.get(name).and_then(Value::as_str).map(str::to_owned);
                    prop_assert_eq!(target, LogoutTarget { sid: text("sid"), sub: text("sub"), jti: text("jti") });
                }
            });
        }
    }
}
