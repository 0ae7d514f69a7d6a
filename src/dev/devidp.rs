//! The built-in **development** OpenID Connect issuer.
//!
//! Development only: it is reachable solely through `portcullis demo` and the
//! test suites, and can never be enabled by `serve`. Its RSA signing key is
//! generated each time it starts and never stored, so tokens do not survive a
//! restart. Users and clients come from a [`DevIdpConfig`]; there is no
//! single-sign-on session at the issuer, so every authorization request shows
//! the login form.
//!
//! It implements the authorization-code flow strictly enough to catch client
//! bugs: exact `redirect_uri` matching, mandatory PKCE (`S256`), single-use
//! codes that expire after 60 s, client authentication (`client_secret_basic`,
//! `client_secret_post`, or `none` for clients without a secret), RS256 ID
//! tokens with `nonce`, `sid`, `azp` and `at_hash`, rotating refresh tokens,
//! userinfo by Bearer token, and RP-initiated logout.
//!
//! Endpoints, relative to [`DevIdp::issuer`]: `/.well-known/openid-configuration`,
//! `/jwks`, `/authorize` (GET shows the form, POST checks the password),
//! `/token`, `/userinfo`, `/end_session`.
//!
//! Called by the `demo` command and by in-process tests through [`start`].
//! The gateway's own OIDC client lives in `oidc/`; nothing here is used by it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod authorize;
mod keys;
mod pages;
mod store;
mod token;

#[cfg(test)]
mod tests;

use keys::Keys;
use store::Store;

/// Largest request body the issuer reads (forms and token requests).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Users, clients and token settings of a development issuer.
#[derive(Debug, Clone)]
pub struct DevIdpConfig {
    /// Accounts that can sign in at the login form.
    pub users: Vec<DevUser>,
    /// Registered relying parties.
    pub clients: Vec<DevClient>,
    /// Put the `groups` claim in the ID token (when the `groups` scope was
    /// granted). When false, groups are only available from userinfo.
    pub groups_in_id_token: bool,
    /// Put `email` and `email_verified` in the ID token (when the `email`
    /// scope was granted). When false, they are only available from userinfo.
    pub email_in_id_token: bool,
    /// Lifetime of ID tokens and access tokens (`exp` and `expires_in`).
    pub id_token_ttl: Duration,
}

/// An account at the development issuer. The username is also the `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevUser {
    /// Login name; used as `sub` and `preferred_username`.
    pub username: String,
    /// Password typed into the login form, compared exactly.
    pub password: String,
    /// The `email` claim (always reported as verified).
    pub email: String,
    /// The `groups` claim. Change it at run time with [`DevIdp::set_groups`].
    pub groups: Vec<String>,
}

/// A relying party registered at the development issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevClient {
    /// The `client_id`; also the ID token's `aud` and `azp`.
    pub client_id: String,
    /// `Some`: the client must authenticate at the token endpoint with
    /// `client_secret_basic` or `client_secret_post`. `None`: a public client
    /// (auth method `none`), identified by `client_id` in the token request.
    pub client_secret: Option<String>,
    /// Allowed `redirect_uri`s, compared as exact strings. Empty means any
    /// `http` URI on `127.0.0.1`, `localhost` or `[::1]` (any port and path),
    /// for tests on ephemeral ports.
    pub redirect_uris: Vec<String>,
}

/// A running development issuer. Dropping it (or calling
/// [`shutdown`](DevIdp::shutdown)) stops it.
#[derive(Debug)]
pub struct DevIdp {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

/// Request counters, for tests asserting what a client did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevIdpStats {
    /// Requests to the token endpoint, any grant type, successful or not.
    pub token_requests: u64,
    /// Requests to the userinfo endpoint, successful or not.
    pub userinfo_requests: u64,
    /// Token requests with `grant_type=refresh_token`, successful or not
    /// (also counted in `token_requests`).
    pub refresh_requests: u64,
    /// Successful password logins at the form.
    pub logins: u64,
}

/// State shared by every connection of one issuer.
#[derive(Debug)]
struct Shared {
    issuer: String,
    clients: HashMap<String, DevClient>,
    groups_in_id_token: bool,
    email_in_id_token: bool,
    id_token_ttl: Duration,
    keys: Keys,
    store: Mutex<Store>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    token: AtomicU64,
    userinfo: AtomicU64,
    refresh: AtomicU64,
    logins: AtomicU64,
}

/// Response type of every endpoint.
type Res = Response<Full<Bytes>>;

/// Request parameters (query string or form body). Parameters sent without a
/// value count as absent (RFC 6749 §3.1).
#[derive(Debug, Default)]
struct Params(HashMap<String, String>);

/// A parameter appeared more than once (RFC 6749 §3.1 forbids it).
#[derive(Debug, thiserror::Error)]
#[error("parameter {0:?} is repeated")]
struct RepeatedParam(String);

// === impl DevIdpConfig ===

impl DevIdpConfig {
    /// The `portcullis demo` setup: users `alice` (groups `admins`, `staff`)
    /// and `bob` (group `staff`), both with password `demo`, and one client.
    /// Claims go in the ID token; tokens live five minutes.
    ///
    /// `client_secret: None` registers a public client. To allow any loopback
    /// redirect URI instead of `redirect_uri`, clear
    /// `clients[0].redirect_uris` afterwards.
    pub fn demo(client_id: &str, client_secret: Option<&str>, redirect_uri: &str) -> Self {
        let user = |name: &str, groups: &[&str]| DevUser {
            username: name.to_owned(),
            password: "demo".to_owned(),
            email: format!("{name}@example.com"),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
        DevIdpConfig {
            users: vec![user("alice", &["admins", "staff"]), user("bob", &["staff"])],
            clients: vec![DevClient {
                client_id: client_id.to_owned(),
                client_secret: client_secret.map(str::to_owned),
                redirect_uris: vec![redirect_uri.to_owned()],
            }],
            groups_in_id_token: true,
            email_in_id_token: true,
            id_token_ttl: Duration::from_secs(300),
        }
    }
}

// === impl DevClient ===

impl DevClient {
    /// Whether `uri` is an allowed `redirect_uri` for this client.
    fn allows_redirect(&self, uri: &str) -> bool {
        if self.redirect_uris.is_empty() {
            is_loopback_http(uri)
        } else {
            self.redirect_uris.iter().any(|r| r == uri)
        }
    }

    /// Whether `uri` may be a `post_logout_redirect_uri`: same origin as a
    /// registered redirect URI (any loopback origin when none are registered).
    fn allows_post_logout(&self, uri: &str) -> bool {
        let Ok(target) = url::Url::parse(uri) else {
            return false;
        };
        if target.fragment().is_some() {
            return false;
        }
        if self.redirect_uris.is_empty() {
            return is_loopback_http(uri);
        }
        self.redirect_uris
            .iter()
            .any(|r| url::Url::parse(r).is_ok_and(|r| r.origin() == target.origin()))
    }
}

/// An absolute `http` URI on a loopback host, without user info or fragment.
fn is_loopback_http(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    url.scheme() == "http"
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none()
        && matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

// === impl DevIdp ===

/// Starts a development issuer on `listener` and returns once it accepts
/// connections. Generates a fresh RSA-2048 signing key first.
///
/// The issuer URL is `http://<listener address>` without a trailing slash
/// (`http://127.0.0.1:PORT` when bound to an unspecified address).
pub async fn start(listener: TcpListener, cfg: DevIdpConfig) -> io::Result<DevIdp> {
    let keys = tokio::task::spawn_blocking(Keys::generate)
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
    let mut addr = listener.local_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let shared = Arc::new(Shared::new(issuer_for(addr), cfg, keys));
    let (stop, stopped) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(listener, shared.clone(), stopped));
    tracing::debug!(issuer = %shared.issuer, "development issuer started");
    Ok(DevIdp {
        shared,
        stop,
        accept,
    })
}

fn issuer_for(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

impl DevIdp {
    /// The issuer URL, `http://127.0.0.1:PORT`, with no trailing slash. It is
    /// the `iss` of every ID token and the base of every endpoint.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// Stops accepting connections and closes open ones once their current
    /// request is answered. Dropping the handle does the same.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Replaces the groups of `username`, as an administrator would at a real
    /// IdP. Refreshed tokens and userinfo report the new groups at once.
    /// Returns false when there is no such user.
    pub fn set_groups<I, S>(&self, username: &str, groups: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut store = self.shared.store();
        match store.users.get_mut(username) {
            Some(user) => {
                user.groups = groups.into_iter().map(Into::into).collect();
                true
            }
            None => false,
        }
    }

    /// Counts of requests served so far.
    pub fn stats(&self) -> DevIdpStats {
        let c = &self.shared.counters;
        DevIdpStats {
            token_requests: c.token.load(Ordering::Relaxed),
            userinfo_requests: c.userinfo.load(Ordering::Relaxed),
            refresh_requests: c.refresh.load(Ordering::Relaxed),
            logins: c.logins.load(Ordering::Relaxed),
        }
    }
}

impl Drop for DevIdp {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = stopped.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "development issuer accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream, shared.clone(), stopped.clone()));
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(shared.route(req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

// === impl Shared ===

impl Shared {
    fn new(issuer: String, cfg: DevIdpConfig, keys: Keys) -> Self {
        Shared {
            issuer,
            clients: cfg
                .clients
                .into_iter()
                .map(|c| (c.client_id.clone(), c))
                .collect(),
            groups_in_id_token: cfg.groups_in_id_token,
            email_in_id_token: cfg.email_in_id_token,
            id_token_ttl: cfg.id_token_ttl,
            keys,
            store: Mutex::new(Store::new(&cfg.users)),
            counters: Counters::default(),
        }
    }

    /// Locks the store. Callers never hold the guard across an `.await`.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    async fn route(&self, req: Request<Incoming>) -> Res {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        match (path.as_str(), method) {
            ("/.well-known/openid-configuration", Method::GET | Method::HEAD) => {
                json(StatusCode::OK, &self.discovery())
            }
            ("/jwks", Method::GET | Method::HEAD) => json(StatusCode::OK, &self.keys.jwks()),
            ("/authorize", Method::GET) => self.authorize_get(req.uri().query()),
            ("/authorize", Method::POST) => match read_form(req).await {
                Ok(params) => self.authorize_post(&params),
                Err(res) => res,
            },
            ("/token", Method::POST) => self.token(req).await,
            ("/userinfo", Method::GET | Method::POST) => self.userinfo(req.headers()),
            ("/end_session", Method::GET) => self.end_session(req.uri().query()),
            ("/end_session", Method::POST) => {
                let query = req.uri().query().map(str::to_owned);
                match read_form(req).await {
                    Ok(form) if form.0.is_empty() => self.end_session(query.as_deref()),
                    Ok(form) => self.end_session_params(&form),
                    Err(res) => res,
                }
            }
            (
                "/.well-known/openid-configuration"
                | "/jwks"
                | "/authorize"
                | "/token"
                | "/userinfo"
                | "/end_session",
                _,
            ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn discovery(&self) -> serde_json::Value {
        serde_json::json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.endpoint("/authorize"),
            "token_endpoint": self.endpoint("/token"),
            "userinfo_endpoint": self.endpoint("/userinfo"),
            "jwks_uri": self.endpoint("/jwks"),
            "end_session_endpoint": self.endpoint("/end_session"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "sid",
                "at_hash", "preferred_username", "name", "email", "email_verified", "groups"
            ],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
        })
    }
}

// === impl Params ===

impl Params {
    fn parse(input: &[u8]) -> Result<Self, RepeatedParam> {
        let mut map = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(input) {
            if value.is_empty() {
                continue;
            }
            if map.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(RepeatedParam(name.into_owned()));
            }
        }
        Ok(Params(map))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Reads a form body; a too-large or unreadable body or a repeated
/// parameter gets a 400.
async fn read_form(req: Request<Incoming>) -> Result<Params, Res> {
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| {
            text(
                StatusCode::BAD_REQUEST,
                "request body unreadable or too large\n",
            )
        })?
        .to_bytes();
    Params::parse(&body).map_err(|e| text(StatusCode::BAD_REQUEST, &format!("{e}\n")))
}

// === responses ===

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Res {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

fn json(status: StatusCode, value: &serde_json::Value) -> Res {
    respond(status, "application/json", value.to_string())
}

fn html(status: StatusCode, body: String) -> Res {
    let mut res = respond(status, "text/html; charset=utf-8", body);
    // No `form-action`: browsers apply it to the redirect that follows the
    // login POST, which goes to the client's origin.
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    res
}

fn text(status: StatusCode, body: &str) -> Res {
    respond(status, "text/plain; charset=utf-8", body.to_owned())
}

/// A 302 to `location`; a location that is not a valid header value gets an
/// error page instead.
fn redirect(location: &str) -> Res {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut res = respond(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new());
            res.headers_mut().insert(header::LOCATION, value);
            res
        }
        Err(_) => html(
            StatusCode::BAD_REQUEST,
            pages::error(
                "Invalid redirect",
                "The redirect target is not a valid URI.",
            ),
        ),
    }
}

/// 32 random bytes, base64url: codes, tokens.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    keys::b64(&bytes)
}
