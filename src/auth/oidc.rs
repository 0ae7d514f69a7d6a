//! OpenID Connect: discovery, the authorization-code login with PKCE (S256),
//! `state` and `nonce`, code redemption, ID-token validation and claim
//! extraction (with the userinfo fallback).
//!
//! This module speaks the protocol and returns values; it never sets cookies
//! or builds HTTP responses. `login` (the `/oauth2/*` endpoints) hands it the
//! flow state it kept in an encrypted cookie ([`flow::FlowState`]) and turns
//! its [`LoginOutcome`] or [`LoginError`] into a session and a response.
//!
//! The provider metadata (the discovery document, `end_session_endpoint`
//! included) and the signing keys are fetched at start-up in the background,
//! kept in memory and reloaded every [`METADATA_RELOAD`]; logins, token
//! checks and RP-initiated logout read that copy and never ask the IdP for it
//! per request. Every fetch is single-flight. A request that finds nothing
//! loaded yet (the IdP was down at start) fetches it inline, once for all
//! requests waiting; a failed fetch is remembered for
//! [`FAILURE_BACKOFF`], so a burst at a dead IdP costs it one request, and
//! each login meanwhile gets a clear 503 page, never a grant or a bare 500.
//! An ID token signed with a key not in the copy (the IdP rotated its keys)
//! triggers one refetch, at most every [`KEY_REFETCH_MIN_SECS`].

pub mod flow;
pub mod probe;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, TokenResponse,
};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::base::clock::unix_now;
use crate::base::error::error_chain;
use crate::base::identity::{EmailClaim, Identity};
use crate::base::jwt::jwt_payload;
use crate::base::secret::{constant_time_eq, Secret};
use crate::config::OidcConfig;

pub use flow::FlowState;

/// How often the metadata and keys are reloaded once loaded.
pub const METADATA_RELOAD: Duration = Duration::from_secs(3600);
/// How long a failed fetch is answered from memory while nothing is loaded,
/// before the next request may ask the IdP again.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(2);
/// Fewest seconds between two refetches triggered by an unknown signing key.
pub const KEY_REFETCH_MIN_SECS: u64 = 10;

/// The discovery-document members portcullis reads beyond the typed ones.
/// Kept as JSON values, so an odd one cannot make the whole document unusable.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct ExtraMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_session_endpoint: Option<Value>,
}

impl ExtraMetadata {
    /// Where RP-initiated logout sends the browser (`oidc.rp_logout`).
    pub fn end_session_endpoint(&self) -> Option<&str> {
        self.end_session_endpoint.as_ref().and_then(Value::as_str)
    }
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// The IdP's discovery document and signing keys, as loaded.
pub type ProviderMetadata = openidconnect::ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The IdP as far as the login flow is concerned.
pub struct Oidc {
    cfg: OidcConfig,
    http: reqwest::Client,
    metadata: ArcSwapOption<ProviderMetadata>,
    /// Serialises fetches from the IdP (single-flight).
    fetch_lock: Mutex<()>,
    /// The last fetch's failure and when it ended; cleared by a success.
    failure: std::sync::Mutex<Option<(Instant, LoginError)>>,
    /// Unix seconds of the last refetch for an unknown key (under `fetch_lock`).
    last_key_refetch: AtomicU64,
}

/// What a successful login produced.
#[derive(Debug)]
pub struct LoginOutcome {
    /// The derived identity.
    pub identity: Identity,
    /// `sub`.
    pub subject: String,
    /// `sid`, when the IdP sent one.
    pub idp_session: Option<String>,
    /// The raw ID token.
    pub id_token: Secret<String>,
    /// The access token.
    pub access_token: Secret<String>,
    /// The refresh token, when issued.
    pub refresh_token: Option<Secret<String>>,
    /// Whether the groups claim was absent from both the ID token and userinfo.
    pub groups_claim_missing: bool,
    /// The address left out of the identity because the IdP did not mark it
    /// `email_verified` (and `oidc.allow_unverified_email` is off).
    pub unverified_email: Option<String>,
}

/// The error behind a [`LoginError`], kept as its source. Shared: the last
/// failure is remembered and handed out again.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a login failed. Each variant has a short [`LoginError::reason`] for
/// logs and a plain-words [`LoginError::user_message`] for the error page.
/// Messages name their cause too (see [`crate::base::error`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoginError {
    /// Discovery, the token endpoint or userinfo could not be reached.
    #[error("identity provider unreachable: {what}: {}", error_chain(.source.as_ref()))]
    IdpUnreachable {
        /// What was being reached: `discovery at ISSUER`, `token endpoint`, `userinfo`.
        what: String,
        /// The HTTP client's error.
        #[source]
        source: Cause,
    },
    /// The discovery document was unusable (for example its issuer differs
    /// from `oidc.issuer`), or no client could be set up from it and the
    /// configuration (a malformed issuer or redirect URI, no token endpoint).
    #[error("identity provider metadata rejected: {}", with_causes(.detail, .source.as_ref()))]
    Discovery {
        /// What was wrong (may be empty when the cause says it all).
        detail: String,
        /// The error that found it, when one did.
        #[source]
        source: Option<Cause>,
    },
    /// The IdP redirected back with `error=`.
    #[error("identity provider returned error {error:?}: {description}")]
    IdpRefused {
        /// The `error` parameter.
        error: String,
        /// The `error_description` parameter, if any.
        description: String,
    },
    /// The callback came without its flow cookie: blocked cookies, another browser, or older than 10 minutes.
    #[error("login state cookie missing")]
    StateMissing,
    /// The flow cookie did not decrypt or parse.
    #[error("login state cookie invalid")]
    StateInvalid,
    /// The flow cookie was older than its 10 minute limit.
    #[error("login state expired")]
    StateExpired,
    /// The `state` parameter does not belong to this browser's flow.
    #[error("login state mismatch")]
    StateMismatch,
    /// The callback had no `code` or `state`.
    #[error("callback without code or state")]
    MissingParameters,
    /// The IdP refused the code (reused, expired, or redirect URI / PKCE mismatch).
    #[error("token endpoint returned invalid_grant: {0}")]
    InvalidGrant(String),
    /// The token endpoint failed otherwise (client authentication, malformed answer).
    #[error("token endpoint error: {}", with_causes(.detail, .source.as_ref()))]
    TokenEndpoint {
        /// The IdP's error code and description, or what was wrong with its answer.
        detail: String,
        /// The error that found it, when one did.
        #[source]
        source: Option<Cause>,
    },
    /// The token response had no ID token.
    #[error("token response has no id_token")]
    NoIdToken,
    /// The ID token failed a check; `check` names which.
    #[error("id token rejected ({check}): {}", with_causes(.detail, .source.as_ref()))]
    IdTokenRejected {
        /// The check that failed: signature, issuer, audience, expiry, nonce, ...
        check: &'static str,
        /// What was wrong (empty when the cause says it all).
        detail: String,
        /// The validator's error, when it found it.
        #[source]
        source: Option<Cause>,
    },
    /// Userinfo answered something unusable.
    #[error("userinfo rejected: {}", with_causes(.detail, .source.as_ref()))]
    Userinfo {
        /// What was wrong.
        detail: String,
        /// The error that found it, when one did.
        #[source]
        source: Option<Cause>,
    },
    /// The session could not be stored.
    #[error("session store: {0}")]
    Store(#[source] crate::auth::session::StoreError),
}

// === impl LoginError ===

impl LoginError {
    /// The `reason` label this failure is counted under in the login metric.
    pub fn metric_reason(&self) -> crate::base::metrics::LoginFailure {
        use crate::base::metrics::LoginFailure as F;
        match self {
            LoginError::IdpRefused { .. } => F::IdpError,
            LoginError::StateMissing
            | LoginError::StateInvalid
            | LoginError::StateExpired
            | LoginError::StateMismatch
            | LoginError::MissingParameters => F::State,
            LoginError::InvalidGrant(_) => F::InvalidGrant,
            LoginError::IdTokenRejected { .. } | LoginError::NoIdToken => F::IdTokenRejected,
            LoginError::IdpUnreachable { .. } => F::IdpUnreachable,
            LoginError::Discovery { .. }
            | LoginError::TokenEndpoint { .. }
            | LoginError::Userinfo { .. }
            | LoginError::Store(_) => F::Other,
        }
    }

    /// A short label naming the failure class (logs, metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::IdpUnreachable { .. } => "idp_unreachable",
            LoginError::Discovery { .. } => "discovery",
            LoginError::IdpRefused { .. } => "idp_error",
            LoginError::StateMissing => "state_missing",
            LoginError::StateInvalid => "state_invalid",
            LoginError::StateExpired => "state_expired",
            LoginError::StateMismatch => "state_mismatch",
            LoginError::MissingParameters => "missing_parameters",
            LoginError::InvalidGrant(_) => "invalid_grant",
            LoginError::TokenEndpoint { .. } => "token_endpoint",
            LoginError::NoIdToken => "no_id_token",
            LoginError::IdTokenRejected { .. } => "id_token_rejected",
            LoginError::Userinfo { .. } => "userinfo",
            LoginError::Store(_) => "store_unavailable",
        }
    }

    /// True when the ID token is signed with a key the IdP's JWKS does not
    /// list (after the one refetch an unknown key triggers).
    pub fn is_unknown_key(&self) -> bool {
        match self {
            LoginError::IdTokenRejected {
                source: Some(c), ..
            } => c
                .downcast_ref::<openidconnect::ClaimsVerificationError>()
                .is_some_and(is_key_miss),
            _ => false,
        }
    }

    /// The HTTP status of the error page.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            LoginError::IdpUnreachable { .. } | LoginError::Store(_) => S::SERVICE_UNAVAILABLE,
            LoginError::Discovery { .. }
            | LoginError::TokenEndpoint { .. }
            | LoginError::NoIdToken
            | LoginError::IdTokenRejected { .. }
            | LoginError::Userinfo { .. } => S::BAD_GATEWAY,
            LoginError::IdpRefused { .. } => S::FORBIDDEN,
            _ => S::BAD_REQUEST,
        }
    }

    /// What the error page tells the person.
    pub fn user_message(&self) -> String {
        match self {
            LoginError::IdpUnreachable { .. } => "The identity provider cannot be reached right now. Please try again in a moment.".into(),
            LoginError::Discovery { .. } => "The identity provider's configuration does not match this gateway's. An administrator has to fix it.".into(),
            LoginError::IdpRefused { error, description } => {
                if description.is_empty() {
                    format!("The identity provider refused the sign-in ({error}).")
                } else {
                    format!("The identity provider refused the sign-in ({error}: {description}).")
                }
            }
            LoginError::StateMissing => "This sign-in could not be matched to your browser: it may have started in another browser, taken longer than 10 minutes, or cookies are blocked.".into(),
            LoginError::StateInvalid | LoginError::StateMismatch => "This sign-in could not be matched to your browser. Please start again.".into(),
            LoginError::StateExpired => "This sign-in took too long and expired. Please start again.".into(),
            LoginError::MissingParameters => "The sign-in response was incomplete.".into(),
            LoginError::InvalidGrant(_) => "The identity provider did not accept the sign-in code (it may have been used already or expired). Please start again.".into(),
            LoginError::TokenEndpoint { .. } | LoginError::NoIdToken | LoginError::Userinfo { .. } => "The identity provider's answer could not be used. An administrator can find the cause in the gateway's log.".into(),
            LoginError::IdTokenRejected { check, .. } => format!("The identity provider's ID token failed the {check} check. An administrator can find the cause in the gateway's log."),
            LoginError::Store(_) => "Sessions cannot be stored right now. Please try again in a moment.".into(),
        }
    }
}

// === impl Oidc ===

impl Oidc {
    /// A client for the configured IdP; nothing is fetched yet.
    pub fn new(cfg: OidcConfig) -> Result<Self, LoginError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.http_timeout)
            .connect_timeout(cfg.http_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| LoginError::Discovery {
                detail: "http client".into(),
                source: Some(Arc::new(e)),
            })?;
        Ok(Oidc {
            cfg,
            http,
            metadata: ArcSwapOption::empty(),
            fetch_lock: Mutex::new(()),
            failure: std::sync::Mutex::new(None),
            last_key_refetch: AtomicU64::new(0),
        })
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// True once the provider metadata and keys are loaded.
    pub fn is_ready(&self) -> bool {
        self.metadata.load().is_some()
    }

    /// The loaded metadata. When nothing is loaded yet, fetches it (one fetch
    /// for all callers waiting), unless the last fetch failed less than
    /// [`FAILURE_BACKOFF`] ago: then that failure, without asking the IdP.
    pub async fn metadata(&self) -> Result<Arc<ProviderMetadata>, LoginError> {
        if let Some(m) = self.metadata.load_full() {
            return Ok(m);
        }
        self.recent_failure()?;
        let _flight = self.fetch_lock.lock().await;
        if let Some(m) = self.metadata.load_full() {
            return Ok(m);
        }
        self.recent_failure()?;
        self.fetch_locked().await
    }

    /// Fetches the discovery document and keys now (after a fetch already
    /// under way) and keeps them; the copy loaded before stays on failure.
    pub async fn reload(&self) -> Result<Arc<ProviderMetadata>, LoginError> {
        let _flight = self.fetch_lock.lock().await;
        self.fetch_locked().await
    }

    /// The failure of a fetch that ended less than [`FAILURE_BACKOFF`] ago.
    fn recent_failure(&self) -> Result<(), LoginError> {
        let failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match &*failure {
            Some((at, e)) if at.elapsed() < FAILURE_BACKOFF => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// One fetch of the discovery document and the JWKS; `fetch_lock` held.
    async fn fetch_locked(&self) -> Result<Arc<ProviderMetadata>, LoginError> {
        let result = self.download().await;
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(meta) => {
                let meta = Arc::new(meta);
                self.metadata.store(Some(meta.clone()));
                *failure = None;
                Ok(meta)
            }
            Err(e) => {
                *failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    async fn download(&self) -> Result<ProviderMetadata, LoginError> {
        let issuer =
            IssuerUrl::new(self.cfg.issuer.clone()).map_err(|e| LoginError::Discovery {
                detail: "issuer URL".into(),
                source: Some(Arc::new(e)),
            })?;
        ProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| discovery_error(&self.cfg.issuer, e))
    }

    /// Metadata whose keys may verify a token `seen` could not: after a
    /// refetch another caller finished meanwhile, or one made now when the
    /// last refetch for an unknown key is [`KEY_REFETCH_MIN_SECS`] old.
    /// `None` when no newer copy may be had yet.
    async fn refetch_keys(
        &self,
        seen: &ProviderMetadata,
    ) -> Result<Option<Arc<ProviderMetadata>>, LoginError> {
        let _flight = self.fetch_lock.lock().await;
        if let Some(current) = self.metadata.load_full() {
            if !std::ptr::eq(&*current, seen) {
                return Ok(Some(current));
            }
        }
        let now = unix_now();
        let last = self.last_key_refetch.load(Ordering::Relaxed);
        if now.saturating_sub(last) < KEY_REFETCH_MIN_SECS {
            return Ok(None);
        }
        self.last_key_refetch.store(now, Ordering::Relaxed);
        self.fetch_locked().await.map(Some)
    }

    /// Keeps metadata fresh: retries with backoff until it loads (logging
    /// each failure class once per change), then reloads it every
    /// [`METADATA_RELOAD`].
    /// The task holds the client only while it fetches, and ends once the
    /// client is dropped.
    pub fn spawn_metadata_reload(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            let mut last_error = String::new();
            loop {
                let Some(this) = weak.upgrade() else { return };
                let wait = match this.reload().await {
                    Ok(_) => {
                        if !last_error.is_empty() {
                            tracing::info!(issuer = %this.cfg.issuer, "identity provider metadata loaded");
                        }
                        last_error.clear();
                        backoff = Duration::from_secs(1);
                        METADATA_RELOAD
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        if msg != last_error {
                            let also = if this.is_ready() {
                                "logins go on with the copy loaded before"
                            } else {
                                "logins fail until it loads"
                            };
                            tracing::warn!(issuer = %this.cfg.issuer, error = %msg, "cannot load identity provider metadata; {also}");
                            last_error = msg;
                        }
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        wait
                    }
                };
                // Not kept while waiting: the task ends once the client is dropped.
                drop(this);
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// Starts a login: the IdP URL to send the browser to, and the secrets to
    /// keep in the flow cookie.
    pub async fn begin(
        &self,
        redirect_uri: &str,
        rd: &str,
    ) -> Result<(String, FlowState), LoginError> {
        let meta = self.metadata().await?;
        let client = self.client(&meta, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.cfg.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = req.url();
        let flow = FlowState {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            redirect_uri: redirect_uri.to_owned(),
            rd: rd.to_owned(),
            issued_at: unix_now(),
        };
        Ok((url.to_string(), flow))
    }

    /// Completes a login: redeems `code`, validates the ID token against the
    /// flow's nonce, and derives the identity.
    pub async fn complete(&self, flow: &FlowState, code: &str) -> Result<LoginOutcome, LoginError> {
        let meta = self.metadata().await?;
        let client = self.client(&meta, &flow.redirect_uri)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(unusable_metadata)?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let nonce = Nonce::new(flow.nonce.clone());
        self.outcome(&meta, &flow.redirect_uri, &token, Some(&nonce))
            .await
    }

    /// Renews a session's tokens and claims with its refresh token. The new
    /// ID token is validated like a login's (without a nonce, which refreshed
    /// tokens do not carry). `InvalidGrant` means the IdP ended the grant.
    pub async fn redeem_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<LoginOutcome, LoginError> {
        let meta = self.metadata().await?;
        // The refresh request carries no redirect URI; the client needs one.
        let redirect = self.cfg.issuer.clone();
        let client = self.client(&meta, &redirect)?;
        let rt = openidconnect::RefreshToken::new(refresh_token.to_owned());
        let token = client
            .exchange_refresh_token(&rt)
            .map_err(unusable_metadata)?
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let mut outcome = self.outcome(&meta, &redirect, &token, None).await?;
        if outcome.refresh_token.is_none() {
            // The IdP did not rotate it: the old one stays valid.
            outcome.refresh_token = Some(Secret::new(refresh_token.to_owned()));
        }
        Ok(outcome)
    }

    /// Validates a token response's ID token (nonce when given) and derives the identity.
    async fn outcome(
        &self,
        meta: &ProviderMetadata,
        redirect_uri: &str,
        token: &openidconnect::core::CoreTokenResponse,
        nonce: Option<&Nonce>,
    ) -> Result<LoginOutcome, LoginError> {
        let id_token = token.id_token().ok_or(LoginError::NoIdToken)?;
        let check_nonce = move |got: Option<&Nonce>| match nonce {
            None => Ok(()),
            Some(want)
                if got.is_some_and(|g| {
                    constant_time_eq(g.secret().as_bytes(), want.secret().as_bytes())
                }) =>
            {
                Ok(())
            }
            Some(_) => Err("nonce does not match the login's".to_string()),
        };
        let client = self.client(meta, redirect_uri)?;
        let verified = {
            let verifier = self.id_token_verifier(&client);
            id_token.claims(&verifier, check_nonce).map(|_| ())
        };
        let refetched;
        let meta = match verified {
            Ok(()) => meta,
            // An unknown key may mean the IdP rotated its keys: refetch once, rate-limited.
            Err(e) if is_key_miss(&e) => match self.refetch_keys(meta).await? {
                Some(newer) => {
                    refetched = newer;
                    let client = self.client(&refetched, redirect_uri)?;
                    let verifier = self.id_token_verifier(&client);
                    id_token
                        .claims(&verifier, check_nonce)
                        .map_err(claims_error)?;
                    &*refetched
                }
                None => return Err(claims_error(e)),
            },
            Err(e) => return Err(claims_error(e)),
        };
        let raw_id_token = id_token.to_string();
        let mut claims = jwt_payload(&raw_id_token).ok_or_else(|| LoginError::IdTokenRejected {
            check: "format",
            detail: "payload is not a JSON object".into(),
            source: None,
        })?;
        check_azp(&claims, &self.cfg.client_id)?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();

        let access_token = token.access_token().secret().clone();
        // The address and its `email_verified` are read from one claims
        // object: the ID token's when it carries the address, else userinfo's.
        let mut email = EmailClaim::of(&self.cfg.email_claim, &claims);
        if self.cfg.userinfo_fallback
            && (self.cfg.groups_claim.lookup(&claims).is_none()
                || self.cfg.email_claim.lookup(&claims).is_none()
                || self
                    .cfg
                    .capture
                    .claims
                    .iter()
                    .any(|c| c.lookup(&claims).is_none()))
        {
            if let Some(url) = meta.userinfo_endpoint() {
                let info = self.userinfo(url.as_str(), &access_token).await?;
                if info.get("sub").and_then(Value::as_str) != Some(subject.as_str()) {
                    return Err(LoginError::Userinfo {
                        detail: "userinfo sub differs from the ID token's sub".into(),
                        source: None,
                    });
                }
                email = email_from(email, EmailClaim::of(&self.cfg.email_claim, &info));
                merge_missing(&mut claims, info);
            }
        }
        let groups = self.cfg.groups_claim.strings(&claims);
        let mut identity = Identity {
            user: self
                .cfg
                .user_claim
                .string(&claims)
                .unwrap_or_else(|| subject.clone()),
            email: email.usable(self.cfg.allow_unverified_email),
            groups: groups.clone().unwrap_or_default(),
            ..Identity::default()
        };
        for claim in self.cfg.capture.apply(&claims, &mut identity) {
            tracing::warn!(user = %identity.user, claim = %claim, max_bytes = crate::base::identity::MAX_CLAIM_VALUE, "claim too long for its [headers.claims] header; the header is sent empty");
        }
        let unverified_email = email
            .dropped(self.cfg.allow_unverified_email)
            .map(str::to_owned);
        Ok(LoginOutcome {
            identity,
            idp_session: claims.get("sid").and_then(Value::as_str).map(str::to_owned),
            subject,
            id_token: Secret::new(raw_id_token),
            access_token: Secret::new(access_token),
            refresh_token: token
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone())),
            groups_claim_missing: groups.is_none(),
            unverified_email,
        })
    }

    /// The IdP's `end_session_endpoint`, when it advertises one (from the
    /// loaded metadata; fetched only if nothing is loaded yet).
    pub async fn end_session_endpoint(&self) -> Option<String> {
        let meta = match self.metadata().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "identity provider metadata unavailable; signing out locally only");
                return None;
            }
        };
        let endpoint = meta
            .additional_metadata()
            .end_session_endpoint()
            .map(str::to_owned);
        if endpoint.is_none() {
            tracing::warn!("oidc.rp_logout is true but the identity provider advertises no end_session_endpoint; signing out locally only");
        }
        endpoint
    }

    fn client(
        &self,
        meta: &ProviderMetadata,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        LoginError,
    > {
        let redirect =
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| LoginError::Discovery {
                detail: format!("redirect URI {redirect_uri:?}"),
                source: Some(Arc::new(e)),
            })?;
        Ok(CoreClient::from_provider_metadata(
            meta.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            self.cfg
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().clone())),
        )
        .set_redirect_uri(redirect))
    }

    fn id_token_verifier<'a>(
        &self,
        client: &'a CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
    ) -> openidconnect::core::CoreIdTokenVerifier<'a> {
        use CoreJwsSigningAlgorithm as A;
        let leeway = self.cfg.clock_leeway;
        client
            .id_token_verifier()
            .set_allowed_algs([
                A::RsaSsaPkcs1V15Sha256,
                A::RsaSsaPkcs1V15Sha384,
                A::RsaSsaPkcs1V15Sha512,
                A::RsaSsaPssSha256,
                A::RsaSsaPssSha384,
                A::RsaSsaPssSha512,
                A::EcdsaP256Sha256,
                A::EcdsaP384Sha384,
                A::EdDsa,
            ])
            .set_time_fn(move || chrono_now() - leeway_delta(leeway))
            .set_issue_time_verifier_fn(move |iat| {
                if iat > chrono_now() + leeway_delta(leeway) {
                    Err("issued in the future (clock skew?)".to_string())
                } else {
                    Ok(())
                }
            })
    }

    async fn userinfo(&self, url: &str, access_token: &str) -> Result<Value, LoginError> {
        let res = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| LoginError::IdpUnreachable {
                what: "userinfo".into(),
                source: Arc::new(e),
            })?;
        let status = res.status();
        if !status.is_success() {
            return Err(LoginError::Userinfo {
                detail: format!("userinfo answered {status}"),
                source: None,
            });
        }
        let v: Value = res.json().await.map_err(|e| LoginError::Userinfo {
            detail: "userinfo is not JSON".into(),
            source: Some(Arc::new(e)),
        })?;
        if !v.is_object() {
            return Err(LoginError::Userinfo {
                detail: "userinfo is not a JSON object".into(),
                source: None,
            });
        }
        Ok(v)
    }
}

/// `detail`, then `source` and its causes (see [`error_chain`]), joined
/// with `: `.
pub(crate) fn with_causes(detail: &str, source: Option<&Cause>) -> String {
    match source {
        None => detail.to_owned(),
        Some(e) if detail.is_empty() => error_chain(e.as_ref()),
        Some(e) => format!("{detail}: {}", error_chain(e.as_ref())),
    }
}

/// The token request could not be built from the loaded metadata (it
/// lists no token endpoint, for example).
fn unusable_metadata(e: openidconnect::ConfigurationError) -> LoginError {
    LoginError::Discovery {
        detail: String::new(),
        source: Some(Arc::new(e)),
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn leeway_delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::zero())
}

fn check_azp(claims: &Value, client_id: &str) -> Result<(), LoginError> {
    match claims.get("azp") {
        None => Ok(()),
        Some(Value::String(azp)) if azp == client_id => Ok(()),
        Some(other) => Err(LoginError::IdTokenRejected {
            check: "azp",
            detail: format!("azp {other} is not this client"),
            source: None,
        }),
    }
}

/// The e-mail claim of a login: the ID token's, unless it has none and
/// userinfo has one. An unverified address in the ID token counts as
/// verified when userinfo vouches for the very same address.
fn email_from(id_token: EmailClaim, userinfo: EmailClaim) -> EmailClaim {
    match (id_token, userinfo) {
        (EmailClaim::Absent, info) => info,
        (EmailClaim::Unverified(a), EmailClaim::Verified(b)) if a == b => EmailClaim::Verified(b),
        (id, _) => id,
    }
}

fn merge_missing(claims: &mut Value, extra: Value) {
    if let (Value::Object(c), Value::Object(e)) = (claims, extra) {
        for (k, v) in e {
            c.entry(k).or_insert(v);
        }
    }
}

fn is_key_miss(e: &openidconnect::ClaimsVerificationError) -> bool {
    use openidconnect::{ClaimsVerificationError as C, SignatureVerificationError as S};
    matches!(e, C::SignatureVerification(S::NoMatchingKey))
}

fn claims_error(e: openidconnect::ClaimsVerificationError) -> LoginError {
    use openidconnect::ClaimsVerificationError as C;
    let check = match &e {
        C::Expired(_) => "expiry",
        C::InvalidAudience(_) => "audience",
        C::InvalidIssuer(_) => "issuer",
        C::InvalidNonce(_) => "nonce",
        C::InvalidSubject(_) => "subject",
        C::InvalidAuthTime(_) | C::InvalidAuthContext(_) => "auth_time",
        C::SignatureVerification(_) => "signature",
        C::Unsupported(_) => "algorithm",
        _ => "claims",
    };
    LoginError::IdTokenRejected {
        check,
        detail: String::new(),
        source: Some(Arc::new(e)),
    }
}

fn token_error<RE: std::error::Error + Send + Sync + 'static>(
    e: RequestTokenError<
        RE,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> LoginError {
    use openidconnect::core::CoreErrorResponseType as T;
    match e {
        RequestTokenError::ServerResponse(r) => {
            let desc = r.error_description().cloned().unwrap_or_default();
            match r.error() {
                T::InvalidGrant => LoginError::InvalidGrant(desc),
                other => LoginError::TokenEndpoint {
                    detail: format!("{}: {desc}", other.as_ref()),
                    source: None,
                },
            }
        }
        RequestTokenError::Request(e) => LoginError::IdpUnreachable {
            what: "token endpoint".into(),
            source: Arc::new(e),
        },
        RequestTokenError::Parse(e, _) => LoginError::TokenEndpoint {
            detail: "unparseable token response".into(),
            source: Some(Arc::new(e)),
        },
        RequestTokenError::Other(detail) => LoginError::TokenEndpoint {
            detail,
            source: None,
        },
    }
}

fn discovery_error<RE: std::error::Error + Send + Sync + 'static>(
    issuer: &str,
    e: openidconnect::DiscoveryError<RE>,
) -> LoginError {
    use openidconnect::DiscoveryError as D;
    match e {
        D::Request(e) => LoginError::IdpUnreachable {
            what: format!("discovery at {issuer}"),
            source: Arc::new(e),
        },
        D::Response(status, _, msg) => LoginError::Discovery {
            detail: format!("discovery at {issuer} answered {status}: {msg}"),
            source: None,
        },
        D::Validation(msg) => LoginError::Discovery {
            detail: format!(
                "{msg} (oidc.issuer must equal the document's issuer byte for byte, trailing slash included)"
            ),
            source: None,
        },
        // An unparseable document, or another failure of the discovery client.
        other => LoginError::Discovery {
            detail: String::new(),
            source: Some(Arc::new(other)),
        },
    }
}

/// A client for `issuer` (client id `c`) built from the smallest config,
/// for tests of this module and of others.
#[cfg(test)]
pub(crate) fn test_client(issuer: &str) -> Oidc {
    let text = format!("[server]\n[oidc]\nissuer = \"{issuer}\"\nclient_id = \"c\"\n[session]\n");
    let env: std::collections::HashMap<String, String> = [(
        "PORTCULLIS_SESSION_SECRET".to_owned(),
        "0123456789abcdef0123456789abcdef-x".to_owned(),
    )]
    .into();
    let config = crate::config::Config::from_toml(&text, std::path::Path::new("/"), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    Oidc::new(config.oidc).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::sync::atomic::AtomicUsize;

    /// An address where a dead IdP would be: connections are accepted and
    /// closed at once, and counted.
    fn dead_idp() -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
                let _ = conn.read(&mut [0u8; 1024]);
            }
        });
        (issuer, count)
    }

    #[tokio::test]
    async fn a_burst_at_a_dead_idp_asks_it_once_per_backoff() {
        let (issuer, asked) = dead_idp();
        let oidc = Arc::new(test_client(&issuer));
        let burst: Vec<_> = (0..50)
            .map(|_| {
                let oidc = oidc.clone();
                tokio::spawn(async move { oidc.metadata().await })
            })
            .collect();
        for call in burst {
            let result = call.await.unwrap();
            assert!(
                matches!(result, Err(LoginError::IdpUnreachable { .. })),
                "{result:?}"
            );
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "one fetch for the burst");
        assert!(oidc.metadata().await.is_err());
        assert_eq!(asked.load(Ordering::SeqCst), 1, "the failure is remembered");
        tokio::time::sleep(FAILURE_BACKOFF).await;
        assert!(oidc.metadata().await.is_err());
        assert_eq!(
            asked.load(Ordering::SeqCst),
            2,
            "asked again after the backoff"
        );
        assert!(!oidc.is_ready());
    }

    /// An IdP whose every answer is `200` with `body` as JSON.
    fn idp_answering(body: &'static str) -> String {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = conn.read(&mut [0u8; 4096]);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        issuer
    }

    #[tokio::test]
    async fn an_unparseable_discovery_document_keeps_the_parser_error() {
        let oidc = test_client(&idp_answering("{\"issuer\": 42"));
        let e = oidc.metadata().await.expect_err("not a discovery document");
        assert!(matches!(e, LoginError::Discovery { .. }), "{e:?}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the parser's error is kept: {e:?}"
        );
        let line = error_chain(&e);
        assert!(
            line.starts_with("identity provider metadata rejected: "),
            "{line}"
        );
        assert_eq!(line, e.to_string(), "the message names every cause");
        assert_eq!(e.reason(), "discovery");
        assert_eq!(e.status(), http::StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn a_rejected_id_token_keeps_the_validator_error_as_its_cause() {
        use openidconnect::{ClaimsVerificationError as C, SignatureVerificationError as S};
        let e = claims_error(C::SignatureVerification(S::NoMatchingKey));
        assert!(std::error::Error::source(&e).is_some(), "{e:?}");
        let LoginError::IdTokenRejected {
            source: Some(cause),
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        let cause = cause
            .downcast_ref::<C>()
            .expect("the validator's error is the cause");
        assert!(is_key_miss(cause), "{cause:?}");
        assert!(e.is_unknown_key());
        assert_eq!(
            e.to_string(),
            "id token rejected (signature): Signature verification failed: No matching key found"
        );
        assert_eq!(
            error_chain(&e),
            e.to_string(),
            "the message names every cause"
        );
        let e = claims_error(C::Expired("expired 5 minutes ago".into()));
        assert!(!e.is_unknown_key());
        assert_eq!(
            e.to_string(),
            "id token rejected (expiry): Expired: expired 5 minutes ago"
        );
    }

    #[test]
    fn email_comes_from_one_claims_object() {
        use EmailClaim::{Absent, Unverified, Verified};
        let v = |s: &str| Verified(s.to_owned());
        let u = |s: &str| Unverified(s.to_owned());
        assert_eq!(email_from(Absent, v("a@x.io")), v("a@x.io"));
        assert_eq!(email_from(Absent, u("a@x.io")), u("a@x.io"));
        assert_eq!(email_from(Absent, Absent), Absent);
        assert_eq!(email_from(v("a@x.io"), u("b@x.io")), v("a@x.io"));
        // Userinfo vouches only for the address it names itself.
        assert_eq!(email_from(u("a@x.io"), v("a@x.io")), v("a@x.io"));
        assert_eq!(email_from(u("ceo@x.io"), v("a@x.io")), u("ceo@x.io"));
        assert_eq!(email_from(u("a@x.io"), Absent), u("a@x.io"));
    }

    #[tokio::test]
    async fn the_metadata_task_ends_when_the_client_is_dropped() {
        let (issuer, attempts) = dead_idp();
        let client = Arc::new(test_client(&issuer));
        let task = client.spawn_metadata_reload();
        // Wait for the first attempt: the task is running.
        for _ in 0..500 {
            if attempts.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let gone = Arc::downgrade(&client);
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task ends once the client is gone")
            .expect("the task does not panic");
        assert!(gone.upgrade().is_none(), "the task released the client");
    }
}
