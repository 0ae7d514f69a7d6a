//! The probes of the identity provider that run while serving as well as in
//! `portcullis check`: the probe HTTP client (no redirects followed, short
//! timeouts), [`fetch_userinfo`] (the debug endpoint) and [`authorize`], one login request stopped before the browser
//! would follow it, which explains a login that went to the IdP and never
//! came back (see `diagnostics`). `check` runs the same probe for every
//! redirect URI and turns the verdicts into its report lines.

use std::time::Duration;

use url::Url;

use crate::base::http_util::encode_component;
use crate::config::OidcConfig;

/// How long one connection attempt (DNS, TCP, TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one HTTP request to the IdP may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read from the IdP (discovery, JWKS, error pages).
const MAX_BODY: usize = 1 << 20;

/// What the authorization endpoint made of a login request.
#[derive(Debug)]
pub enum AuthorizeVerdict {
    /// It went on to its login page (or straight back with a code).
    Accepted,
    /// It sent the browser back to the redirect URI with `error=`.
    ErrorRedirect {
        /// `error`.
        error: String,
        /// `error_description`.
        description: String,
    },
    /// It showed its own error page instead of coming back: an unknown
    /// client or an unregistered redirect URI.
    ErrorPage {
        /// The HTTP status.
        status: u16,
        /// The error text found on the page.
        text: String,
    },
    /// It could not be asked.
    Unreachable(reqwest::Error),
}

/// Why a document could not be fetched from the IdP.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No connection, no answer in time, or the connection broke.
    #[error("{}", crate::base::error::error_chain(.0))]
    Http(#[source] reqwest::Error),
    /// The IdP answered with a status other than a success.
    #[error("answered {0}")]
    Status(http::StatusCode),
    /// The answer was larger than [`MAX_BODY`].
    #[error("answer larger than {} KiB", MAX_BODY / 1024)]
    TooLarge,
    /// The answer was not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
}

/// A client for probes: no redirects followed, short timeouts. An error
/// when the HTTP client cannot be set up (its TLS backend failed to
/// initialise): probing without the timeouts could hang.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// `GET userinfo` with a bearer token: the debug endpoint's claims and the
/// login test of `portcullis check`.
pub async fn fetch_userinfo(
    http: &reqwest::Client,
    url: &Url,
    access_token: &str,
) -> Result<serde_json::Value, String> {
    let res = http
        .get(url.clone())
        .bearer_auth(access_token)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| crate::base::error::error_chain(&e))?;
    if !res.status().is_success() {
        return Err(format!("userinfo answered {}", res.status()));
    }
    res.json::<serde_json::Value>()
        .await
        .map_err(|e| e.to_string())
}

/// The body, refusing more than [`MAX_BODY`] bytes.
pub async fn read_capped(mut res: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(FetchError::Http)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// One login request as the gateway would send it, stopped before the
/// browser would follow the answer.
pub async fn authorize(
    http: &reqwest::Client,
    endpoint: &str,
    o: &OidcConfig,
    redirect_uri: &str,
) -> AuthorizeVerdict {
    // Any S256 challenge will do: the flow is never completed.
    let url = format!(
        "{endpoint}{}response_type=code&client_id={}&redirect_uri={}&scope={}&state=portcullis-check&nonce=portcullis-check&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        if endpoint.contains('?') { "&" } else { "?" },
        encode_component(&o.client_id),
        encode_component(redirect_uri),
        encode_component(&o.scopes.join(" ")),
    );
    let res = match http.get(&url).header("accept", "text/html").send().await {
        Ok(r) => r,
        Err(e) => return AuthorizeVerdict::Unreachable(e),
    };
    let status = res.status();
    if status.is_redirection() {
        let loc = res
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if loc.starts_with(redirect_uri) {
            let q = Url::parse(loc).ok();
            let param = |n: &str| {
                q.as_ref().and_then(|u| {
                    u.query_pairs()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.into_owned())
                })
            };
            if let Some(error) = param("error") {
                return AuthorizeVerdict::ErrorRedirect {
                    error,
                    description: param("error_description").unwrap_or_default(),
                };
            }
        }
        return AuthorizeVerdict::Accepted;
    }
    let body = read_capped(res)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let text = page_error_text(&body);
    let lower = text.to_ascii_lowercase();
    let complains = lower.contains("redirect")
        && [
            "invalid",
            "mismatch",
            "did not match",
            "not registered",
            "not allowed",
        ]
        .iter()
        .any(|w| lower.contains(w));
    if status.is_client_error() || status.is_server_error() || complains {
        return AuthorizeVerdict::ErrorPage {
            status: status.as_u16(),
            text,
        };
    }
    AuthorizeVerdict::Accepted
}

/// The error an IdP's error page states: oidc-provider's `#error` and
/// `#error_description`, otherwise the page's text, shortened.
pub(crate) fn page_error_text(body: &str) -> String {
    let by_id = |id: &str| {
        let start = body.find(&format!("id=\"{id}\""))?;
        let open = body[start..].find('>')? + start + 1;
        let close = body[open..].find('<')? + open;
        Some(body[open..close].trim().to_owned())
    };
    if let Some(e) = by_id("error") {
        let d = by_id("error_description").unwrap_or_default();
        return if d.is_empty() {
            e
        } else {
            format!("{e}: {}", unescape(&d))
        };
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined = unescape(&words.join(" "));
    joined.chars().take(200).collect()
}

fn unescape(s: &str) -> String {
    s.replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
