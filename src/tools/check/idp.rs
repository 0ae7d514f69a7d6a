//! What the IdP says about itself, checked against the config: the
//! discovery document (fetched from here, with timing), its `issuer`
//! compared byte for byte with `oidc.issuer` (naming the trailing-slash
//! case), the clock behind its `Date` header, the JWKS (no keys, only
//! symmetric keys, algorithms portcullis cannot verify), the ID-token
//! signing algorithms, `scopes_supported`, and the authorization
//! endpoint's verdict on the client id and redirect URI.
//!
//! The authorization-endpoint probe and the probe client also run while
//! serving (see `diagnostics`), so they live in `oidc::probe`; this module
//! uses them from there.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use url::Url;

use super::local::{self, RedirectUris};
use super::net::{self, ms};
use super::{Finding, Report, HTTP_TIMEOUT};
use crate::auth::oidc::probe::read_capped;
pub use crate::auth::oidc::probe::{authorize, http_client, AuthorizeVerdict, FetchError};
use crate::config::Config;

/// Algorithms portcullis verifies ID tokens with (asymmetric only).
pub const VERIFIABLE_ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Redirect URIs tried against the authorization endpoint, at most.
const MAX_AUTHORIZE_PROBES: usize = 5;

/// The discovery document, once fetched.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The document.
    pub doc: Value,
}

/// The line for a check that could not run because [`http_client`] failed.
fn no_client(check: &str, e: &reqwest::Error) -> Finding {
    Finding::fail(
        check,
        format!(
            "cannot set up the HTTP client: {}",
            crate::base::error::error_chain(e)
        ),
        "portcullis cannot make HTTPS requests on this host; the cause above names what failed",
    )
}

/// Runs every IdP check, pushing one line each. Returns the document when
/// discovery worked.
pub async fn probe(config: &Config, report: &mut Report) -> Option<Discovered> {
    let o = &config.oidc;
    let issuer = match Url::parse(&o.issuer) {
        Ok(u) => u,
        Err(e) => {
            report.push(Finding::fail(
                "issuer",
                format!("oidc.issuer {:?} is not a URL: {e}", o.issuer),
                "set oidc.issuer to the issuer URL your IdP shows for this client",
            ));
            return None;
        }
    };
    if !net::probe(&issuer, report).await {
        return None;
    }
    let http = match http_client() {
        Ok(c) => c,
        Err(e) => {
            report.push(no_client("discovery", &e));
            return None;
        }
    };
    let (doc, date) = discovery(&http, &o.issuer, report).await?;
    report.push(issuer_matches(&o.issuer, &doc));
    if let Some((date, sent, received)) = date {
        report.push(clock(&date, sent, received, o.clock_leeway));
    }
    report.extend(jwks(&http, &doc).await);
    report.push(signing_algs(&doc));
    report.push(scopes_supported(config, &doc));
    Some(Discovered { doc })
}

/// `<issuer>/.well-known/openid-configuration`, as the gateway builds it.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

type DateSample = (String, SystemTime, SystemTime);

async fn discovery(
    http: &reqwest::Client,
    issuer: &str,
    report: &mut Report,
) -> Option<(Value, Option<DateSample>)> {
    let url = discovery_url(issuer);
    let started = Instant::now();
    let sent = SystemTime::now();
    let res = match http.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() {
                format!("no answer from {url} within {} s", HTTP_TIMEOUT.as_secs())
            } else {
                format!("{url}: {}", crate::base::error::error_chain(&e))
            };
            report.push(Finding::fail(
                "discovery",
                what,
                "the IdP accepts connections but does not answer http requests in time: check it is healthy and that any proxy in front of it forwards this path",
            ));
            return None;
        }
    };
    let received = SystemTime::now();
    let status = res.status();
    let date = res
        .headers()
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .map(|d| (d.to_owned(), sent, received));
    if status.is_redirection() {
        let to = res
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        report.push(Finding::fail(
            "discovery",
            format!("{url} answered {status} redirecting to {to}; portcullis does not follow redirects for discovery"),
            "set oidc.issuer to the IdP's canonical issuer URL (often https:// rather than http://, or with the exact path)",
        ));
        return None;
    }
    if !status.is_success() {
        report.push(Finding::fail(
            "discovery",
            format!("{url} answered {status}"),
            "check the path in oidc.issuer: it is the URL before /.well-known/openid-configuration (Authentik: https://HOST/application/o/SLUG/, Keycloak: https://HOST/realms/REALM)",
        ));
        return None;
    }
    let body = match read_capped(res).await {
        Ok(b) => b,
        Err(e) => {
            report.push(Finding::fail(
                "discovery",
                format!("{url}: reading the answer failed: {e}"),
                "check the IdP's health",
            ));
            return None;
        }
    };
    let doc: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            report.push(Finding::fail(
                "discovery",
                format!("{url} did not answer with a JSON object"),
                "check oidc.issuer: it must point at the IdP's OpenID Connect issuer, not a web page",
            ));
            return None;
        }
    };
    report.push(Finding::ok(
        "discovery",
        format!(
            "fetched {url} ({status}, {} bytes) in {}",
            body.len(),
            ms(started)
        ),
    ));
    Some((doc, date))
}

/// `issuer`: byte-for-byte equality, with the trailing-slash case named.
pub fn issuer_matches(configured: &str, doc: &Value) -> Finding {
    let Some(theirs) = doc.get("issuer").and_then(Value::as_str) else {
        return Finding::fail(
            "issuer",
            "the discovery document has no issuer",
            "fix the IdP's discovery document; it must name its issuer",
        );
    };
    if theirs == configured {
        return Finding::ok(
            "issuer",
            format!("oidc.issuer matches the discovery document's issuer {theirs:?} byte for byte"),
        );
    }
    let fix = format!("set oidc.issuer = \"{theirs}\" exactly");
    if theirs.trim_end_matches('/') == configured.trim_end_matches('/') {
        let what = if theirs.len() > configured.len() {
            "lacks the trailing slash of"
        } else {
            "has a trailing slash more than"
        };
        return Finding::fail(
            "issuer",
            format!("oidc.issuer {configured:?} {what} the discovery document's issuer {theirs:?}; ID tokens carry the issuer byte for byte, so every login would fail"),
            fix,
        );
    }
    Finding::fail(
        "issuer",
        format!("oidc.issuer {configured:?} differs from the discovery document's issuer {theirs:?}; every login would fail"),
        format!("{fix} (if the IdP is reached under another address here, configure the IdP's public URL so the two agree)"),
    )
}

/// `clock`: the IdP's `Date` against the local clock, from one request.
pub fn clock(date: &str, sent: SystemTime, received: SystemTime, leeway: Duration) -> Finding {
    let Ok(theirs) = chrono::DateTime::parse_from_rfc2822(date) else {
        return Finding::ok(
            "clock",
            format!("the IdP's Date header {date:?} is not a date; not compared"),
        );
    };
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    // Date is truncated to the second: its midpoint against the midpoint of the request.
    let local = (secs(sent) + secs(received)) / 2.0;
    let skew = theirs.timestamp() as f64 + 0.5 - local;
    let shown = if skew.abs() < 60.0 {
        skew.round() as i64
    } else {
        ((skew / 10.0).round() * 10.0) as i64
    };
    let direction = if shown >= 0 { "ahead of" } else { "behind" };
    let abs = shown.unsigned_abs();
    let fix = "synchronise both clocks with NTP (chrony, systemd-timesyncd); ID tokens from a clock that runs ahead are rejected as issued in the future, from one that runs behind as expired";
    if abs <= 5 {
        Finding::ok(
            "clock",
            format!("the IdP's clock is within {} s of this host's", abs.max(1)),
        )
    } else if abs <= leeway.as_secs() {
        Finding::warn(
            "clock",
            format!(
                "the IdP's clock is about {abs} s {direction} this host's (within oidc.clock_leeway = {} s)",
                leeway.as_secs()
            ),
            fix,
        )
    } else {
        Finding::fail(
            "clock",
            format!(
                "the IdP's clock is about {abs} s {direction} this host's, more than oidc.clock_leeway = {} s",
                leeway.as_secs()
            ),
            fix,
        )
    }
}

async fn jwks(http: &reqwest::Client, doc: &Value) -> Vec<Finding> {
    let Some(uri) = doc.get("jwks_uri").and_then(Value::as_str) else {
        return vec![Finding::fail(
            "jwks",
            "the discovery document has no jwks_uri",
            "configure a signing key for this client at the IdP so it publishes its keys",
        )];
    };
    let started = Instant::now();
    match fetch_json(http, uri).await {
        Ok(v) => vec![jwks_keys(uri, &v, &ms(started))],
        Err(e) => vec![Finding::fail(
            "jwks",
            format!("{uri}: {e}"),
            "the IdP's key set must be reachable from here at the jwks_uri its discovery document names",
        )],
    }
}

/// A JSON document over `GET`, or why not.
async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, FetchError> {
    let res = http.get(url).send().await.map_err(FetchError::Http)?;
    if !res.status().is_success() {
        return Err(FetchError::Status(res.status()));
    }
    let body = read_capped(res).await?;
    serde_json::from_slice(&body).map_err(FetchError::NotJson)
}

/// `bearer_issuers[N]`: each extra issuer's key set is reachable and usable.
pub async fn bearer_issuers(config: &Config) -> Vec<Finding> {
    if config.oidc.bearer_issuers.is_empty() {
        return Vec::new();
    }
    let http = match http_client() {
        Ok(c) => c,
        Err(e) => return vec![no_client("bearer_issuers", &e)],
    };
    let mut out = Vec::new();
    for (i, b) in config.oidc.bearer_issuers.iter().enumerate() {
        let name = format!("bearer_issuers[{i}]");
        let uri = match &b.jwks_url {
            Some(u) => u.to_string(),
            None => {
                let doc = fetch_json(&http, &discovery_url(&b.issuer)).await;
                match doc.map(|d| d.get("jwks_uri").and_then(Value::as_str).map(str::to_owned)) {
                    Ok(Some(u)) => u,
                    Ok(None) => {
                        out.push(Finding::fail(
                            &name,
                            format!("{}: the discovery document has no jwks_uri", b.issuer),
                            "set jwks_url for this issuer",
                        ));
                        continue;
                    }
                    Err(e) => {
                        out.push(Finding::fail(&name, format!("{}: discovery failed: {e}", b.issuer), "set jwks_url for this issuer, or make its discovery document reachable from here"));
                        continue;
                    }
                }
            }
        };
        let started = Instant::now();
        let mut f = match fetch_json(&http, &uri).await {
            Ok(v) => jwks_keys(&uri, &v, &ms(started)),
            Err(e) => Finding::fail(&name, format!("{uri}: {e}"), "the issuer's key set must be reachable from here; bearer tokens from it are refused until it is"),
        };
        f.check = name;
        out.push(f);
    }
    out
}

/// `jwks`: keys portcullis can verify ID tokens with.
pub fn jwks_keys(uri: &str, set: &Value, took: &str) -> Finding {
    let keys = set
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let no_key_fix = "attach a signing key to this client at the IdP (Authentik: the provider's Signing Key; Keycloak: an active RS256 realm key) so ID tokens are signed with RS256 or ES256";
    if keys.is_empty() {
        return Finding::fail("jwks", format!("{uri} has no keys"), no_key_fix);
    }
    let mut usable = Vec::new();
    let mut other = Vec::new();
    for k in &keys {
        let kty = k.get("kty").and_then(Value::as_str).unwrap_or("?");
        let alg = k.get("alg").and_then(Value::as_str);
        let kid = k.get("kid").and_then(Value::as_str).unwrap_or("-");
        let sig = k
            .get("use")
            .and_then(Value::as_str)
            .is_none_or(|u| u == "sig");
        let asym = matches!(kty, "RSA" | "EC" | "OKP");
        let alg_ok = alg.is_none_or(|a| VERIFIABLE_ALGS.contains(&a));
        let label = format!("{} kid={kid}", alg.unwrap_or(kty));
        if asym && sig && alg_ok {
            usable.push(label);
        } else {
            other.push(label);
        }
    }
    if usable.is_empty() {
        let symmetric = keys
            .iter()
            .all(|k| k.get("kty").and_then(Value::as_str) == Some("oct"));
        let detail = if symmetric {
            format!("{uri} holds only symmetric (oct) keys: the IdP signs with a shared secret (HS256), which portcullis refuses")
        } else {
            format!(
                "{uri} holds no key portcullis can verify ID tokens with ({}); it verifies {}",
                other.join(", "),
                VERIFIABLE_ALGS.join(", ")
            )
        };
        return Finding::fail("jwks", detail, no_key_fix);
    }
    if !other.is_empty() {
        return Finding::warn(
            "jwks",
            format!(
                "{uri}: {} usable signing key(s) ({}); portcullis cannot verify with {}",
                usable.len(),
                usable.join(", "),
                other.join(", ")
            ),
            "nothing to do unless the IdP signs ID tokens with those keys; if it does, switch the client to RS256 or ES256",
        );
    }
    Finding::ok(
        "jwks",
        format!(
            "{} signing key(s) at {uri} ({}) in {took}",
            usable.len(),
            usable.join(", ")
        ),
    )
}

/// `signing`: the ID-token algorithms the IdP offers.
pub fn signing_algs(doc: &Value) -> Finding {
    let Some(algs) = doc
        .get("id_token_signing_alg_values_supported")
        .and_then(Value::as_array)
    else {
        return Finding::ok("signing", "the IdP does not list its ID-token algorithms");
    };
    let algs: Vec<&str> = algs.iter().filter_map(Value::as_str).collect();
    if algs.iter().any(|a| VERIFIABLE_ALGS.contains(a)) {
        Finding::ok(
            "signing",
            format!("ID tokens signed with {}", algs.join(", ")),
        )
    } else {
        Finding::fail(
            "signing",
            format!("the IdP signs ID tokens only with {}; portcullis accepts asymmetric algorithms only ({})", algs.join(", "), VERIFIABLE_ALGS.join(", ")),
            "switch the client's ID-token signing to RS256 (Authentik: pick a Signing Key on the provider; Keycloak: client → Advanced → ID token signature algorithm)",
        )
    }
}

/// `scopes`: every requested scope is one the IdP lists.
pub fn scopes_supported(config: &Config, doc: &Value) -> Finding {
    let Some(list) = doc.get("scopes_supported").and_then(Value::as_array) else {
        return Finding::ok(
            "scopes",
            "the IdP does not list scopes_supported; not compared",
        );
    };
    let supported: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    let missing: Vec<&str> = config
        .oidc
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !supported.contains(s))
        .collect();
    if missing.is_empty() {
        return Finding::ok(
            "scopes",
            format!(
                "{} all in the IdP's scopes_supported",
                config.oidc.scopes.join(", ")
            ),
        );
    }
    let fix = if missing.contains(&"groups") {
        "create a `groups` scope at the IdP that releases the groups claim (Authentik: a scope mapping named groups returning [g.name for g in request.user.ak_groups.all()]), or drop it from oidc.scopes and point oidc.groups_claim at the claim your IdP uses (e.g. realm_access.roles)".to_owned()
    } else {
        format!(
            "enable {} at the IdP, or remove it from oidc.scopes",
            missing.join(", ")
        )
    };
    Finding::warn(
        "scopes",
        format!(
            "{} not among the IdP's scopes_supported ({}); the IdP may reject the login or ignore it",
            describe(&missing),
            supported.join(", ")
        ),
        fix,
    )
}

fn describe(items: &[&str]) -> String {
    if items.len() == 1 {
        format!("{} is", items[0])
    } else {
        format!("{} are", items.join(", "))
    }
}

/// `authorize`: asks the authorization endpoint about each redirect URI
/// portcullis sends (without logging in) and explains an error page.
pub async fn authorize_checks(config: &Config, doc: &Value) -> Vec<Finding> {
    let Some(endpoint) = doc.get("authorization_endpoint").and_then(Value::as_str) else {
        return vec![Finding::fail(
            "authorize",
            "the discovery document has no authorization_endpoint",
            "check that oidc.issuer points at an OpenID Connect provider",
        )];
    };
    let uris = match local::redirect_uris(config) {
        RedirectUris::One(u) => vec![u],
        RedirectUris::PerHost { uris, .. } => uris,
    };
    let http = match http_client() {
        Ok(c) => c,
        Err(e) => return vec![no_client("authorize", &e)],
    };
    let mut out = Vec::new();
    for uri in uris.iter().take(MAX_AUTHORIZE_PROBES) {
        let verdict = authorize(&http, endpoint, &config.oidc, uri).await;
        out.push(verdict_finding(config, uri, &verdict));
    }
    out
}

/// The check line for one verdict.
pub fn verdict_finding(config: &Config, uri: &str, v: &AuthorizeVerdict) -> Finding {
    let client = &config.oidc.client_id;
    match v {
        AuthorizeVerdict::Accepted => Finding::ok(
            "authorize",
            format!("the IdP accepts client {client:?} with redirect URI {uri}"),
        ),
        AuthorizeVerdict::ErrorRedirect { error, description } => Finding::fail(
            "authorize",
            format!(
                "the IdP refused the login request for {uri}: {error}{}",
                if description.is_empty() {
                    String::new()
                } else {
                    format!(": {description}")
                }
            ),
            if error == "invalid_scope" {
                "remove the scope the IdP does not know from oidc.scopes, or enable it at the IdP"
                    .to_owned()
            } else {
                "compare the client's settings at the IdP (grant types, allowed scopes) with the [oidc] section".to_owned()
            },
        ),
        AuthorizeVerdict::ErrorPage { status, text } => {
            let lower = text.to_ascii_lowercase();
            let fix = if lower.contains("redirect") {
                format!("register exactly {uri} as a redirect URI of client {client:?} at the IdP (scheme, host, port, path and trailing slash must all match)")
            } else if lower.contains("client") {
                format!("check oidc.client_id: the IdP does not know client {client:?}")
            } else {
                "open the login URL in a browser to see the IdP's full message".to_owned()
            };
            let what = if lower.contains("redirect") {
                "instead of its login page, the IdP shows an error page (the browser never comes back to portcullis)"
            } else {
                "the IdP answers the login request with an error page"
            };
            Finding::fail(
                "authorize",
                format!("{what} for redirect URI {uri}: {status} {text}"),
                fix,
            )
        }
        AuthorizeVerdict::Unreachable(e) => Finding::fail(
            "authorize",
            format!(
                "the authorization endpoint could not be asked: {}",
                crate::base::error::error_chain(e)
            ),
            "the IdP's authorization_endpoint must be reachable from here",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oidc::probe::page_error_text;
    use serde_json::json;

    #[test]
    fn trailing_slash_is_named() {
        let doc = json!({"issuer": "https://a.example.com/o/app/"});
        let f = issuer_matches("https://a.example.com/o/app", &doc);
        assert!(f.detail.contains("lacks the trailing slash"), "{f}");
        assert_eq!(
            f.fix.as_deref(),
            Some("set oidc.issuer = \"https://a.example.com/o/app/\" exactly")
        );
        let f = issuer_matches("https://a.example.com/o/app//", &doc);
        assert!(f.detail.contains("has a trailing slash"), "{f}");
        assert_eq!(
            issuer_matches("https://a.example.com/o/app/", &doc).status,
            super::super::Status::Ok
        );
    }

    #[test]
    fn jwks_verdicts() {
        use super::super::Status;
        assert_eq!(
            jwks_keys("u", &json!({"keys": []}), "1 ms").status,
            Status::Fail
        );
        let hs = jwks_keys("u", &json!({"keys": [{"kty": "oct", "k": "x"}]}), "1 ms");
        assert!(hs.detail.contains("only symmetric"), "{hs}");
        let mixed = jwks_keys(
            "u",
            &json!({"keys": [{"kty": "RSA", "alg": "RS256", "kid": "a"}, {"kty": "RSA", "alg": "RSA-OAEP", "use": "enc", "kid": "b"}]}),
            "1 ms",
        );
        assert_eq!(mixed.status, Status::Warn, "{mixed}");
        let good = jwks_keys("u", &json!({"keys": [{"kty": "RSA", "kid": "a"}]}), "1 ms");
        assert_eq!(good.status, Status::Ok, "{good}");
    }

    #[test]
    fn hs256_only_fails() {
        let f = signing_algs(&json!({"id_token_signing_alg_values_supported": ["HS256"]}));
        assert_eq!(f.status, super::super::Status::Fail);
    }

    #[test]
    fn clock_rounds_large_skews() {
        let now = SystemTime::now();
        let t = now.duration_since(UNIX_EPOCH).unwrap().as_secs() + 300;
        let date = chrono::DateTime::from_timestamp(t as i64, 0)
            .unwrap()
            .to_rfc2822();
        let f = clock(&date, now, now, Duration::from_secs(60));
        assert_eq!(
            f.detail,
            "the IdP's clock is about 300 s ahead of this host's, more than oidc.clock_leeway = 60 s"
        );
    }

    #[tokio::test]
    async fn an_oversized_discovery_document_is_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let body = format!("{{\"x\": \"{}\"}}", "a".repeat(2 << 20));
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
        let mut r = Report::default();
        let issuer = format!("http://127.0.0.1:{port}");
        let http = http_client().expect("an HTTP client");
        assert!(discovery(&http, &issuer, &mut r).await.is_none());
        assert_eq!(
            r.findings[0].detail,
            format!("{issuer}/.well-known/openid-configuration: reading the answer failed: answer larger than 1024 KiB")
        );
    }

    #[test]
    fn error_page_text() {
        let body = "<html><h1>oops</h1><pre id=\"error\">invalid_redirect_uri</pre><pre id=\"error_description\">redirect_uri did not match any of the client&#39;s registered redirect_uris</pre>";
        assert_eq!(
            page_error_text(body),
            "invalid_redirect_uri: redirect_uri did not match any of the client's registered redirect_uris"
        );
        assert_eq!(
            page_error_text("<p>Invalid parameter:  redirect_uri</p>"),
            "Invalid parameter: redirect_uri"
        );
    }
}
