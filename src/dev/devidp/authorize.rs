//! The browser-facing endpoints of the development issuer: `/authorize` (the
//! login form and its submission) and `/end_session` (RP-initiated logout).
//!
//! An authorization request with an unknown client or an unregistered
//! `redirect_uri` gets an HTML error page and is never redirected; every
//! other problem is redirected back to the client with `error`, `state` and
//! `iss` (RFC 6749 §4.1.2.1, RFC 9207).

use std::sync::atomic::Ordering;

use http::StatusCode;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::store::{CodeGrant, CODE_TTL};
use super::{html, pages, random_token, redirect, Params, Res, Shared};
use crate::base::clock::unix_now;

/// A validated authorization request.
#[derive(Debug, Clone)]
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
}

/// Where an error or a code goes back to.
#[derive(Debug, Clone)]
struct ReplyTo {
    redirect_uri: String,
    state: Option<String>,
}

/// Why an authorization request was refused.
#[derive(Debug, thiserror::Error)]
enum AuthorizeError {
    /// A parameter was repeated: refused with a page, since it may be the
    /// `redirect_uri` itself that is ambiguous.
    #[error("{0}")]
    Malformed(#[source] super::RepeatedParam),
    /// `client_id` is missing or not registered; shown as a page.
    #[error("unknown client_id {0:?}")]
    UnknownClient(String),
    /// `redirect_uri` is missing or not registered for the client; shown as
    /// a page, never followed.
    #[error("redirect_uri {0:?} is not registered for this client")]
    BadRedirectUri(String),
    /// Anything else: sent back to the client's `redirect_uri`.
    #[error("{error}: {description}")]
    Redirect {
        /// Where to send the browser.
        to: ReplyTo,
        /// The RFC 6749 error code.
        error: &'static str,
        /// Human-readable detail for `error_description`.
        description: String,
    },
}

// === impl AuthRequest ===

impl AuthRequest {
    /// Hidden form fields that carry the request through the login form.
    fn hidden_fields(&self) -> Vec<(&'static str, &str)> {
        let mut fields = vec![
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("response_type", "code"),
            ("scope", self.scope.as_str()),
            ("code_challenge", self.code_challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        if let Some(state) = &self.state {
            fields.push(("state", state));
        }
        if let Some(nonce) = &self.nonce {
            fields.push(("nonce", nonce));
        }
        fields
    }

    fn scopes(&self) -> Vec<String> {
        self.scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

// === impl AuthorizeError ===

impl AuthorizeError {
    fn redirect(to: &ReplyTo, error: &'static str, description: impl Into<String>) -> Self {
        AuthorizeError::Redirect {
            to: to.clone(),
            error,
            description: description.into(),
        }
    }
}

// === impl Shared ===

impl Shared {
    /// `GET /authorize`: validate, then show the login form.
    pub(super) fn authorize_get(&self, query: Option<&str>) -> Res {
        let request = Params::parse(query.unwrap_or("").as_bytes())
            .map_err(AuthorizeError::Malformed)
            .and_then(|params| self.validate_authorize(&params));
        match request {
            Ok(request) => html(
                StatusCode::OK,
                pages::login(&request.hidden_fields(), "", None),
            ),
            Err(error) => self.authorize_error(error),
        }
    }

    /// `POST /authorize`: validate the carried request again, check the
    /// password, and redirect with a code.
    pub(super) fn authorize_post(&self, form: &Params) -> Res {
        let request = match self.validate_authorize(form) {
            Ok(request) => request,
            Err(error) => return self.authorize_error(error),
        };
        let username = form.get("username").unwrap_or("");
        if !self.check_password(username, form.get("password").unwrap_or("")) {
            tracing::debug!(client_id = %request.client_id, "development issuer: wrong password");
            return html(
                StatusCode::OK,
                pages::login(
                    &request.hidden_fields(),
                    username,
                    Some("Invalid username or password"),
                ),
            );
        }
        self.counters.logins.fetch_add(1, Ordering::Relaxed);
        let code = random_token();
        let reply = ReplyTo {
            redirect_uri: request.redirect_uri.clone(),
            state: request.state.clone(),
        };
        let grant = CodeGrant {
            scopes: request.scopes(),
            client_id: request.client_id,
            redirect_uri: request.redirect_uri,
            username: username.to_owned(),
            nonce: request.nonce,
            code_challenge: request.code_challenge,
            sid: random_token(),
            auth_time: unix_now(),
            expires: Instant::now() + CODE_TTL,
        };
        self.store().codes.insert(code.clone(), grant);
        self.reply(&reply, &[("code", &code)])
    }

    fn check_password(&self, username: &str, password: &str) -> bool {
        let store = self.store();
        store
            .users
            .get(username)
            .is_some_and(|u| bool::from(u.password.as_bytes().ct_eq(password.as_bytes())))
    }

    fn validate_authorize(&self, p: &Params) -> Result<AuthRequest, AuthorizeError> {
        let client_id = p.get("client_id").unwrap_or("");
        let client = self
            .clients
            .get(client_id)
            .ok_or_else(|| AuthorizeError::UnknownClient(client_id.to_owned()))?;
        let redirect_uri = p.get("redirect_uri").unwrap_or("");
        if !client.allows_redirect(redirect_uri) || url::Url::parse(redirect_uri).is_err() {
            return Err(AuthorizeError::BadRedirectUri(redirect_uri.to_owned()));
        }
        let to = ReplyTo {
            redirect_uri: redirect_uri.to_owned(),
            state: p.get("state").map(str::to_owned),
        };
        let fail = |error, description: &str| AuthorizeError::redirect(&to, error, description);
        match p.get("response_type") {
            Some("code") => {}
            None => return Err(fail("invalid_request", "response_type is required")),
            Some(_) => {
                return Err(fail(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ))
            }
        }
        if p.get("response_mode").is_some_and(|m| m != "query") {
            return Err(fail(
                "invalid_request",
                "only response_mode=query is supported",
            ));
        }
        for unsupported in ["request", "request_uri"] {
            if p.get(unsupported).is_some() {
                return Err(fail(
                    if unsupported == "request" {
                        "request_not_supported"
                    } else {
                        "request_uri_not_supported"
                    },
                    "request objects are not supported",
                ));
            }
        }
        let scope = p.get("scope").unwrap_or("");
        if !scope.split(' ').any(|s| s == "openid") {
            return Err(fail("invalid_scope", "scope must contain openid"));
        }
        let Some(code_challenge) = p.get("code_challenge") else {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge is missing",
            ));
        };
        if p.get("code_challenge_method") != Some("S256") {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        if !is_s256_challenge(code_challenge) {
            return Err(fail(
                "invalid_request",
                "code_challenge must be 43 base64url characters (S256)",
            ));
        }
        if p.get("prompt")
            .is_some_and(|v| v.split(' ').any(|v| v == "none"))
        {
            return Err(fail(
                "login_required",
                "the development issuer keeps no session; prompt=none cannot succeed",
            ));
        }
        Ok(AuthRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scope: scope.to_owned(),
            state: to.state.clone(),
            nonce: p.get("nonce").map(str::to_owned),
            code_challenge: code_challenge.to_owned(),
        })
    }

    fn authorize_error(&self, error: AuthorizeError) -> Res {
        tracing::debug!(%error, "development issuer refused an authorization request");
        match error {
            AuthorizeError::Malformed(_) => html(
                StatusCode::BAD_REQUEST,
                pages::error("Invalid authorization request", &error.to_string()),
            ),
            AuthorizeError::UnknownClient(_) => html(
                StatusCode::BAD_REQUEST,
                pages::error("Unknown client", &error.to_string()),
            ),
            AuthorizeError::BadRedirectUri(_) => html(
                StatusCode::BAD_REQUEST,
                pages::error("Invalid redirect_uri", &error.to_string()),
            ),
            AuthorizeError::Redirect {
                to,
                error,
                description,
            } => self.reply(
                &to,
                &[("error", error), ("error_description", &description)],
            ),
        }
    }

    /// A 302 back to the client with `extra`, `state` and `iss` appended to
    /// its `redirect_uri` query.
    fn reply(&self, to: &ReplyTo, extra: &[(&str, &str)]) -> Res {
        let Ok(mut url) = url::Url::parse(&to.redirect_uri) else {
            return html(
                StatusCode::BAD_REQUEST,
                pages::error(
                    "Invalid redirect_uri",
                    "The redirect_uri is not an absolute URI.",
                ),
            );
        };
        {
            let mut q = url.query_pairs_mut();
            for (name, value) in extra {
                q.append_pair(name, value);
            }
            if let Some(state) = &to.state {
                q.append_pair("state", state);
            }
            q.append_pair("iss", &self.issuer);
        }
        redirect(url.as_str())
    }

    /// `GET /end_session`: RP-initiated logout.
    pub(super) fn end_session(&self, query: Option<&str>) -> Res {
        match Params::parse(query.unwrap_or("").as_bytes()) {
            Ok(params) => self.end_session_params(&params),
            Err(error) => html(
                StatusCode::BAD_REQUEST,
                pages::error("Invalid logout request", &error.to_string()),
            ),
        }
    }

    /// Ends the login named by `id_token_hint` (its tokens are revoked) and
    /// goes to `post_logout_redirect_uri` when it is allowed for the client.
    pub(super) fn end_session_params(&self, p: &Params) -> Res {
        let bad = |detail: &str| {
            html(
                StatusCode::BAD_REQUEST,
                pages::error("Invalid logout request", detail),
            )
        };
        let mut client_id = p.get("client_id").map(str::to_owned);
        if let Some(hint) = p.get("id_token_hint") {
            let Some(claims) = self.keys.verify(hint) else {
                return bad("id_token_hint is not an ID token issued by this issuer");
            };
            let aud = claims["aud"].as_str().unwrap_or("").to_owned();
            if client_id.as_ref().is_some_and(|c| *c != aud) {
                return bad("client_id does not match the audience of id_token_hint");
            }
            if let Some(sid) = claims["sid"].as_str() {
                self.store().revoke_sid(sid);
            }
            client_id = Some(aud);
        }
        let Some(target) = p.get("post_logout_redirect_uri") else {
            return html(StatusCode::OK, pages::signed_out());
        };
        let Some(client) = client_id.as_deref().and_then(|c| self.clients.get(c)) else {
            return bad("post_logout_redirect_uri needs a known client_id or an id_token_hint");
        };
        if !client.allows_post_logout(target) {
            return bad("post_logout_redirect_uri is not on an origin registered for this client");
        }
        match (url::Url::parse(target), p.get("state")) {
            (Ok(mut url), Some(state)) => {
                url.query_pairs_mut().append_pair("state", state);
                redirect(url.as_str())
            }
            _ => redirect(target),
        }
    }
}

/// An S256 `code_challenge`: base64url of 32 bytes, 43 characters, no padding.
fn is_s256_challenge(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
