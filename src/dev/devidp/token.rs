//! The back-channel endpoints of the development issuer: `/token`
//! (authorization-code and refresh-token grants, with client authentication
//! and PKCE) and `/userinfo`, plus ID token assembly.
//!
//! Errors are RFC 6749 §5.2 JSON bodies: 400, or 401 with
//! `WWW-Authenticate` for `invalid_client`. Refresh tokens rotate: each use
//! returns a new one and retires the old.

use std::sync::atomic::Ordering;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, StatusCode};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::keys::{at_hash, b64};
use super::store::{CodeGrant, Grant};
use super::{json, random_token, read_form, DevClient, DevUser, Params, Res, Shared};
use crate::base::clock::unix_now;

/// Why a token request failed; each variant is one RFC 6749 §5.2 error code.
#[derive(Debug, thiserror::Error)]
enum TokenError {
    /// A required parameter is missing or malformed, or the body is unusable.
    #[error("{0}")]
    InvalidRequest(String),
    /// The client is unknown, did not authenticate, or gave a wrong secret.
    #[error("{0}")]
    InvalidClient(String),
    /// The code or refresh token is invalid, expired, already used, issued to
    /// another client, or its `redirect_uri` or PKCE verifier does not match.
    #[error("{0}")]
    InvalidGrant(String),
    /// The requested scope exceeds the original grant.
    #[error("{0}")]
    InvalidScope(String),
    /// A grant type other than `authorization_code` or `refresh_token`.
    #[error("grant_type {0:?} is not supported")]
    UnsupportedGrantType(String),
}

/// What a successful token request produces.
#[derive(Debug)]
struct Issued {
    access_token: String,
    id_token: String,
    refresh_token: Option<String>,
    scopes: Vec<String>,
}

// === impl TokenError ===

impl TokenError {
    fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::UnsupportedGrantType(_) => "unsupported_grant_type",
        }
    }

    fn into_response(self) -> Res {
        let body =
            serde_json::json!({ "error": self.code(), "error_description": self.to_string() });
        if let TokenError::InvalidClient(_) = self {
            let mut res = json(StatusCode::UNAUTHORIZED, &body);
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"portcullis-devidp\""),
            );
            res
        } else {
            json(StatusCode::BAD_REQUEST, &body)
        }
    }
}

fn invalid_request(msg: &str) -> TokenError {
    TokenError::InvalidRequest(msg.to_owned())
}

fn invalid_grant(msg: &str) -> TokenError {
    TokenError::InvalidGrant(msg.to_owned())
}

fn invalid_client(msg: &str) -> TokenError {
    TokenError::InvalidClient(msg.to_owned())
}

// === impl Shared ===

impl Shared {
    /// `POST /token`.
    pub(super) async fn token(&self, req: Request<Incoming>) -> Res {
        self.counters.token.fetch_add(1, Ordering::Relaxed);
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if !is_form {
            return invalid_request("content-type must be application/x-www-form-urlencoded")
                .into_response();
        }
        let headers = req.headers().clone();
        let form = match read_form(req).await {
            Ok(form) => form,
            Err(_) => {
                return invalid_request("body is unreadable, too large, or repeats a parameter")
                    .into_response()
            }
        };
        let result = self.token_grant(&headers, &form);
        match result {
            Ok(issued) => json(StatusCode::OK, &self.token_response(issued)),
            Err(error) => {
                tracing::debug!(error = error.code(), detail = %error, "development issuer refused a token request");
                error.into_response()
            }
        }
    }

    fn token_grant(&self, headers: &HeaderMap, form: &Params) -> Result<Issued, TokenError> {
        let grant_type = form.get("grant_type");
        if grant_type == Some("refresh_token") {
            self.counters.refresh.fetch_add(1, Ordering::Relaxed);
        }
        let client = self.authenticate_client(headers, form)?;
        match grant_type {
            Some("authorization_code") => self.redeem_code(client, form),
            Some("refresh_token") => self.refresh(client, form),
            Some(other) => Err(TokenError::UnsupportedGrantType(other.to_owned())),
            None => Err(invalid_request("grant_type is required")),
        }
    }

    /// `client_secret_basic`, `client_secret_post`, or `none` for public
    /// clients; exactly one method per request (RFC 6749 §2.3).
    fn authenticate_client(
        &self,
        headers: &HeaderMap,
        form: &Params,
    ) -> Result<&DevClient, TokenError> {
        let basic = basic_credentials(headers)?;
        let (client_id, secret) = match (basic, form.get("client_secret")) {
            (Some(_), Some(_)) => {
                return Err(invalid_request(
                    "use one client authentication method, not both basic and post",
                ))
            }
            (Some((id, secret)), None) => {
                if form.get("client_id").is_some_and(|c| c != id) {
                    return Err(invalid_request(
                        "client_id in the body differs from the basic credentials",
                    ));
                }
                (id, Some(secret))
            }
            (None, secret) => {
                let Some(id) = form.get("client_id") else {
                    return Err(invalid_client("client authentication is required"));
                };
                (id.to_owned(), secret.map(str::to_owned))
            }
        };
        let client = self
            .clients
            .get(&client_id)
            .ok_or_else(|| invalid_client("unknown client_id"))?;
        let presented = secret.unwrap_or_default();
        match &client.client_secret {
            Some(_) if presented.is_empty() => Err(invalid_client(
                "this client must authenticate with its client_secret",
            )),
            Some(expected) if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) => {
                Ok(client)
            }
            Some(_) => Err(invalid_client("client_secret is wrong")),
            None if presented.is_empty() => Ok(client),
            None => Err(invalid_client(
                "this client is public and has no client_secret",
            )),
        }
    }

    fn redeem_code(&self, client: &DevClient, form: &Params) -> Result<Issued, TokenError> {
        let code = form
            .get("code")
            .ok_or_else(|| invalid_request("code is required"))?;
        let redirect_uri = form
            .get("redirect_uri")
            .ok_or_else(|| invalid_request("redirect_uri is required"))?;
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| invalid_request("code_verifier is required (PKCE)"))?;
        let grant = self
            .store()
            .redeem_code(code, Instant::now())
            .ok_or_else(|| {
                invalid_grant("authorization code is invalid, expired or already used")
            })?;
        if grant.client_id != client.client_id {
            return Err(invalid_grant(
                "authorization code was issued to another client",
            ));
        }
        if grant.redirect_uri != redirect_uri {
            return Err(invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        if !pkce_matches(verifier, &grant.code_challenge) {
            return Err(invalid_grant(
                "PKCE code_verifier does not match the code_challenge",
            ));
        }
        self.issue(&grant_of(&grant), grant.nonce.as_deref())
    }

    fn refresh(&self, client: &DevClient, form: &Params) -> Result<Issued, TokenError> {
        let token = form
            .get("refresh_token")
            .ok_or_else(|| invalid_request("refresh_token is required"))?;
        let mut grant = {
            let mut store = self.store();
            match store.refresh_tokens.get(token) {
                Some(g) if g.client_id == client.client_id => {}
                Some(_) => return Err(invalid_grant("refresh token was issued to another client")),
                None => {
                    return Err(invalid_grant(
                        "refresh token is invalid, revoked or already used",
                    ))
                }
            }
            store
                .refresh_tokens
                .remove(token)
                .ok_or_else(|| invalid_grant("refresh token is invalid, revoked or already used"))?
        };
        if let Some(scope) = form.get("scope") {
            let requested: Vec<String> = scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(extra) = requested.iter().find(|s| !grant.scopes.contains(s)) {
                return Err(TokenError::InvalidScope(format!(
                    "scope {extra:?} was not granted originally"
                )));
            }
            grant.scopes = requested;
        }
        // OpenID Connect Core §12.2: a refreshed ID token carries no nonce.
        self.issue(&grant, None)
    }

    /// Mints an access token, an ID token, and (with `offline_access`) a
    /// refresh token, using the user's current groups.
    fn issue(&self, grant: &Grant, nonce: Option<&str>) -> Result<Issued, TokenError> {
        let user = self
            .store()
            .users
            .get(&grant.username)
            .cloned()
            .ok_or_else(|| invalid_grant("the user no longer exists"))?;
        let access_token = random_token();
        let id_token = self.id_token(&user, grant, nonce, &access_token);
        let refresh_token = grant
            .scopes
            .iter()
            .any(|s| s == "offline_access")
            .then(random_token);
        let mut store = self.store();
        let mut access = grant.clone();
        access.expires = Some(Instant::now() + self.id_token_ttl);
        store.access_tokens.insert(access_token.clone(), access);
        if let Some(refresh) = &refresh_token {
            let mut g = grant.clone();
            g.expires = None;
            store.refresh_tokens.insert(refresh.clone(), g);
        }
        Ok(Issued {
            access_token,
            id_token,
            refresh_token,
            scopes: grant.scopes.clone(),
        })
    }

    fn id_token(
        &self,
        user: &DevUser,
        grant: &Grant,
        nonce: Option<&str>,
        access_token: &str,
    ) -> String {
        let now = unix_now();
        let mut claims = serde_json::json!({
            "iss": self.issuer,
            "sub": user.username,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "exp": now + self.id_token_ttl.as_secs(),
            "iat": now,
            "auth_time": grant.auth_time,
            "sid": grant.sid,
            "at_hash": at_hash(access_token),
            "preferred_username": user.username,
        });
        let has = |scope: &str| grant.scopes.iter().any(|s| s == scope);
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        if self.email_in_id_token && has("email") {
            claims["email"] = user.email.clone().into();
            claims["email_verified"] = true.into();
        }
        if self.groups_in_id_token && has("groups") {
            claims["groups"] = user.groups.clone().into();
        }
        self.keys.sign(&claims)
    }

    fn token_response(&self, issued: Issued) -> serde_json::Value {
        let mut body = serde_json::json!({
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": self.id_token_ttl.as_secs(),
            "id_token": issued.id_token,
            "scope": issued.scopes.join(" "),
        });
        if let Some(refresh) = issued.refresh_token {
            body["refresh_token"] = refresh.into();
        }
        body
    }

    /// `GET /userinfo` (or POST) with `Authorization: Bearer <access token>`.
    pub(super) fn userinfo(&self, headers: &HeaderMap) -> Res {
        self.counters.userinfo.fetch_add(1, Ordering::Relaxed);
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token else {
            return unauthorized("Bearer realm=\"portcullis-devidp\"");
        };
        let (grant, user) = {
            let mut store = self.store();
            let Some(grant) = store.access_grant(token, Instant::now()) else {
                drop(store);
                return unauthorized("Bearer error=\"invalid_token\"");
            };
            let user = store.users.get(&grant.username).cloned();
            (grant, user)
        };
        let Some(user) = user else {
            return unauthorized("Bearer error=\"invalid_token\"");
        };
        let has = |scope: &str| grant.scopes.iter().any(|s| s == scope);
        let mut body = serde_json::json!({ "sub": user.username });
        if has("profile") {
            body["preferred_username"] = user.username.clone().into();
            body["name"] = user.username.clone().into();
        }
        if has("email") {
            body["email"] = user.email.clone().into();
            body["email_verified"] = true.into();
        }
        if has("groups") {
            body["groups"] = user.groups.clone().into();
        }
        json(StatusCode::OK, &body)
    }
}

fn unauthorized(challenge: &'static str) -> Res {
    let mut res = json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({ "error": "invalid_token", "error_description": "a valid Bearer access token is required" }),
    );
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    res
}

/// The refresh/access grant a redeemed code turns into.
fn grant_of(code: &CodeGrant) -> Grant {
    Grant {
        client_id: code.client_id.clone(),
        username: code.username.clone(),
        scopes: code.scopes.clone(),
        sid: code.sid.clone(),
        auth_time: code.auth_time,
        expires: None,
    }
}

/// `Authorization: Basic` credentials, form-urlencoding decoded
/// (RFC 6749 §2.3.1). `Ok(None)` when there is no Basic header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, TokenError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || invalid_client("malformed basic credentials");
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_request(
            "unsupported Authorization scheme at the token endpoint",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Some((form_decode(id), form_decode(secret))))
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, with a
/// well-formed verifier (43 to 128 unreserved characters).
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed
        && bool::from(
            b64(&Sha256::digest(verifier.as_bytes()))
                .as_bytes()
                .ct_eq(challenge.as_bytes()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches("short", challenge));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret+x"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&v).expect("header"),
        );
        let (id, secret) = basic_credentials(&h).expect("parses").expect("present");
        assert_eq!(id, "my client");
        assert_eq!(secret, "s:cret x");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(matches!(
            basic_credentials(&h),
            Err(TokenError::InvalidClient(_))
        ));
    }
}
