//! The request phases in order: facts → rule → authentication →
//! authorisation → [`Decision`]. Shared by forward auth and reverse-proxy
//! mode; `respond` turns the decision into the answer of either.
//!
//! Also home of [`Gateway`] (the long-lived state: sessions, OIDC client,
//! cookie keys) and [`Runtime`] (the reloadable part: config, compiled
//! rules and the reverse-proxy upstreams, swapped atomically on SIGHUP; a request loads it once and uses that
//! snapshot to the end).
//!
//! A request with `Authorization: Bearer` on a rule that accepts bearer
//! tokens (the default) is judged by the token alone: a bad token is
//! [`Decision::InvalidToken`], never a fall-back to the cookie. On a rule with
//! `bearer = false` the header is ignored for authentication.
//!
//! Likewise `Authorization: Basic` on a rule with `basic_auth` is judged by
//! the htpasswd file alone ([`crate::auth::basic`]): wrong credentials are
//! [`Decision::BadCredentials`] (401 with a Basic challenge, never a login
//! redirect), too many failures [`Decision::TooManyAttempts`]. On other
//! rules the header plays no part.
//!
//! Hot path: no allocation beyond the cookie check, no I/O unless the session
//! (or bearer token) is not in the local cache, no locks.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue};

use crate::auth::bearer::{self, Bearer};
pub use crate::auth::client_addr::canonical;
use crate::auth::oidc::Oidc;
pub use crate::auth::principal::Principal;
use crate::auth::redirect::RedirectPolicy;
use crate::auth::rules::{CompiledRule, Match, RequestFacts, RuleSet, RulesError};
use crate::auth::session::{Session, SessionKeys, SessionStore, StoreError};
use crate::base::clock::unix_now;
use crate::base::http_util;
use crate::base::metrics::{self, Lookup, Outcome, RuleMetrics};
use crate::config::{Config, DefaultPolicy, Policy};

/// The reloadable part of the gateway: config plus what is compiled from it.
pub struct Runtime {
    /// The validated config.
    pub config: Config,
    /// Compiled `[[rule]]`s.
    pub rules: RuleSet,
    /// Compiled `allowed_redirect_domains`.
    pub redirects: RedirectPolicy,
    /// True when any rule names groups (for the empty-groups hint).
    pub rules_need_groups: bool,
    /// Reverse-proxy upstreams (with their client pools) and header rules.
    pub proxy: crate::auth::proxy_table::ProxyTable,
    /// The decision counters of these rules.
    pub decisions: RuleMetrics,
    /// `headers.assertion`: the signer and its token cache; `None` when off.
    pub assertion: Option<crate::auth::assertion::Signer>,
}

/// Long-lived state shared by every connection.
pub struct Gateway {
    /// Current runtime; `load()` once per request.
    pub runtime: ArcSwap<Runtime>,
    /// Session store.
    pub sessions: Arc<dyn SessionStore>,
    /// The IdP.
    pub oidc: Arc<Oidc>,
    /// Bearer-token verification (issuers, keys, verified-token cache).
    pub bearer: Arc<Bearer>,
    /// Cookie keys.
    pub keys: SessionKeys,
    /// Set once the untrusted-forwarded-headers warning was logged.
    pub untrusted_hint_logged: AtomicBool,
    /// Sessions whose refresh this instance started in the last
    /// [`crate::auth::session::REFRESH_LOCK`] (single-flight within the process).
    pub refreshing: moka::sync::Cache<(crate::auth::session::SessionId, u64), ()>,
    /// Verified Basic credentials and failure counters (outlast reloads).
    pub basic: crate::auth::basic::BasicAuth,
}

/// What to do with a request.
pub enum Decision<'a> {
    /// A public rule: allow, identity headers empty.
    Public(Option<&'a CompiledRule>),
    /// Signed in and permitted.
    Allow(Principal, Option<&'a CompiledRule>),
    /// No (valid) credentials on a rule that needs them.
    Unauthenticated(Option<&'a CompiledRule>),
    /// A bearer token was presented and failed verification (401 `invalid_token`).
    InvalidToken(Option<&'a CompiledRule>),
    /// Basic credentials were presented on a `basic_auth` rule and are wrong
    /// (401 with the Basic challenge).
    BadCredentials(Option<&'a CompiledRule>),
    /// Too many failed Basic attempts for this user or client address: 429
    /// with `Retry-After` (these seconds); the password was not checked.
    TooManyAttempts(Option<&'a CompiledRule>, u64),
    /// Signed in, but the rule does not permit this user.
    Forbidden(Principal, Option<&'a CompiledRule>),
    /// The rule (or the default) denies everybody.
    Deny(Option<&'a CompiledRule>),
    /// The session store could not answer: fail closed with 503.
    StoreUnavailable(Option<&'a CompiledRule>, StoreError),
}

// === impl Decision ===

impl<'a> Decision<'a> {
    /// The rule the decision was made under (`None`: the default policy).
    pub fn rule(&self) -> Option<&'a CompiledRule> {
        match self {
            Decision::Public(r)
            | Decision::Allow(_, r)
            | Decision::Unauthenticated(r)
            | Decision::InvalidToken(r)
            | Decision::BadCredentials(r)
            | Decision::TooManyAttempts(r, _)
            | Decision::Forbidden(_, r)
            | Decision::Deny(r)
            | Decision::StoreUnavailable(r, _) => *r,
        }
    }

    /// The decision's `outcome` label in the metrics.
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Public(_) | Decision::Allow(..) => Outcome::Allow,
            Decision::Unauthenticated(_) | Decision::BadCredentials(_) => Outcome::Unauthenticated,
            Decision::InvalidToken(_) => Outcome::InvalidToken,
            Decision::Forbidden(..) | Decision::Deny(_) | Decision::TooManyAttempts(..) => {
                Outcome::Deny
            }
            Decision::StoreUnavailable(..) => Outcome::Error,
        }
    }

    /// Who the request belongs to, when known.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Decision::Allow(p, _) | Decision::Forbidden(p, _) => Some(p),
            _ => None,
        }
    }
}

// === impl Runtime ===

impl Runtime {
    /// Compiles a validated config.
    pub fn compile(config: Config) -> Result<Runtime, RulesError> {
        let rules = RuleSet::compile(&config.rules, config.access.default)?;
        let redirects = RedirectPolicy::new(&config.access.allowed_redirect_domains);
        let rules_need_groups = config
            .rules
            .iter()
            .any(|r| !(r.groups.is_empty() && r.groups_all.is_empty()));
        let proxy = crate::auth::proxy_table::ProxyTable::compile(&config);
        let decisions = RuleMetrics::compile(rules.rules().iter().map(|r| r.name.as_str()));
        let assertion = match (&config.headers.assertion, &config.server.external_url) {
            (Some(keys), Some(iss)) => Some(crate::auth::assertion::Signer::new(
                keys.clone(),
                iss.as_str(),
            )),
            _ => None,
        };
        Ok(Runtime {
            assertion,
            proxy,
            decisions,
            config,
            rules,
            redirects,
            rules_need_groups,
        })
    }

    /// True when `peer` may set `X-Forwarded-*` / `X-Original-*`.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        self.config
            .server
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&peer))
    }

    /// The gateway's endpoint prefix (`/oauth2`).
    pub fn prefix(&self) -> &str {
        &self.config.server.prefix
    }
}

/// The connection a request came on, as the server saw it when the request
/// arrived.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// True on a TLS listener.
    pub tls: bool,
    /// True when `addr` is in `server.trusted_proxies`.
    pub trusted: bool,
    /// The request's id (see `request_id`).
    pub id: &'a HeaderValue,
}

impl<'a> Peer<'a> {
    /// The peer at `addr`, trusted as `rt`'s `server.trusted_proxies` say.
    pub fn new(rt: &Runtime, addr: SocketAddr, tls: bool, id: &'a HeaderValue) -> Peer<'a> {
        Peer {
            addr,
            tls,
            trusted: rt.is_trusted(addr.ip()),
            id,
        }
    }
}

// === impl Gateway ===

impl Gateway {
    /// The live session named by the request's session cookie, if any.
    /// Every cookie problem means "no session"; only a store failure is an error.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<Arc<Session>>, StoreError> {
        let id = match self.session_now(headers) {
            Cached::Hit(s) => return Ok(Some(s)),
            Cached::NoSession => return Ok(None),
            Cached::Miss(id) => id,
        };
        let m = metrics::global();
        let started = std::time::Instant::now();
        let found = self.sessions.load(&id).await;
        m.store_duration.observe(started.elapsed());
        let found = found.inspect_err(|_| {
            m.store_errors.inc();
        })?;
        let found = found.filter(|s| s.is_live(unix_now()));
        match &found {
            Some(s) => {
                m.session_lookup(Lookup::Store);
                self.refresh_if_due(s);
            }
            None => m.session_lookup(Lookup::Miss),
        }
        Ok(found)
    }

    /// What the session cookie says without asking the store: no session,
    /// a session from the local cache, or an id only the store can answer for.
    fn session_now(&self, headers: &HeaderMap) -> Cached {
        let Some(value) = http_util::cookie_bytes(headers, self.keys.cookie_name()) else {
            return Cached::NoSession;
        };
        let Some(id) = self.keys.unseal(value) else {
            return Cached::NoSession;
        };
        match self.sessions.lookup_cached(&id) {
            Some(s) => {
                metrics::global().session_lookup(Lookup::LocalCache);
                self.refresh_if_due(&s);
                Cached::Hit(s)
            }
            None => Cached::Miss(id),
        }
    }

    /// Starts a background refresh when the session's claims are due for
    /// renewal (see `refresh`); the request goes on with the current session.
    fn refresh_if_due(&self, s: &Arc<Session>) {
        if s.refresh_at == 0 || crate::base::clock::unix_secs() < s.refresh_at {
            return;
        }
        if !self
            .refreshing
            .entry((s.id, s.refresh_at))
            .or_insert(())
            .is_fresh()
        {
            return;
        }
        tokio::spawn(crate::auth::refresh::run(
            self.sessions.clone(),
            self.oidc.clone(),
            s.clone(),
        ));
    }

    /// Runs the phases for one request. The decision is counted where it
    /// is answered (`respond`).
    pub async fn decide<'a>(
        &self,
        rt: &'a Runtime,
        facts: &RequestFacts<'_>,
        headers: &HeaderMap,
    ) -> Decision<'a> {
        self.decide_matched(rt, rt.rules.evaluate(facts), facts, headers)
            .await
    }

    /// [`Gateway::decide`] without waiting: `None` when the decision needs a
    /// round trip (a session not in the local cache, a bearer token not in
    /// the verified-token cache, Basic credentials), which
    /// [`Gateway::decide`] then makes. The common case (a public or denying
    /// rule, no cookie, a cached session or token) is decided here, so the
    /// caller can answer without a future.
    pub fn decide_now<'a>(
        &self,
        rt: &'a Runtime,
        facts: &RequestFacts<'_>,
        headers: &HeaderMap,
    ) -> Option<Decision<'a>> {
        let (rule, policy) = rule_policy(rt.rules.evaluate(facts));
        let decision = self.judge_now(rt, rule, policy, headers)?;
        Some(noted(decision, facts))
    }

    /// [`Gateway::decide`] for a request whose rule the caller has already
    /// looked up (the reverse proxy, which needs the match for the upstream).
    pub async fn decide_matched<'a>(
        &self,
        rt: &'a Runtime,
        matched: Match<'a>,
        facts: &RequestFacts<'_>,
        headers: &HeaderMap,
    ) -> Decision<'a> {
        let (rule, policy) = rule_policy(matched);
        let decision = match self.judge_now(rt, rule, policy, headers) {
            Some(d) => d,
            None => self.judge(rt, rule, policy, facts, headers).await,
        };
        noted(decision, facts)
    }

    /// Authentication and authorisation under the matched rule, when no
    /// round trip is needed (see [`Gateway::decide_now`]).
    fn judge_now<'a>(
        &self,
        rt: &Runtime,
        rule: Option<&'a CompiledRule>,
        policy: Policy,
        headers: &HeaderMap,
    ) -> Option<Decision<'a>> {
        match policy {
            Policy::Public => return Some(Decision::Public(rule)),
            Policy::Deny => return Some(Decision::Deny(rule)),
            Policy::Authenticated => {}
        }
        if basic_of(rt, rule, headers).is_some() {
            return None;
        }
        let principal = match token_of(rule, headers) {
            Some(token) => Principal::Bearer(self.bearer.verify_cached(token)?),
            None => match self.session_now(headers) {
                Cached::Hit(s) => Principal::Session(s),
                Cached::NoSession => return Some(Decision::Unauthenticated(rule)),
                Cached::Miss(_) => return None,
            },
        };
        Some(permit(rule, principal))
    }

    /// Authentication and authorisation under the matched rule.
    async fn judge<'a>(
        &self,
        rt: &Runtime,
        rule: Option<&'a CompiledRule>,
        policy: Policy,
        facts: &RequestFacts<'_>,
        headers: &HeaderMap,
    ) -> Decision<'a> {
        match policy {
            Policy::Public => return Decision::Public(rule),
            Policy::Deny => return Decision::Deny(rule),
            Policy::Authenticated => {}
        }
        let principal = if let Some((value, users)) = basic_of(rt, rule, headers) {
            match self
                .basic
                .authenticate(users, value, facts.client, rule_name(rule))
                .await
            {
                Ok(u) => Principal::Basic(u),
                Err(crate::auth::basic::BasicError::RateLimited {
                    retry_after_secs, ..
                }) => return Decision::TooManyAttempts(rule, retry_after_secs),
                Err(_) => return Decision::BadCredentials(rule),
            }
        } else {
            match token_of(rule, headers) {
                Some(token) => match self.bearer.verify(token).await {
                    Ok(v) => Principal::Bearer(v),
                    Err(e) => {
                        tracing::debug!(rule.name = rule_name(rule), check = e.check(), reason = %e, "bearer token rejected");
                        return Decision::InvalidToken(rule);
                    }
                },
                None => match self.session(headers).await {
                    Ok(Some(s)) => Principal::Session(s),
                    Ok(None) => return Decision::Unauthenticated(rule),
                    Err(e) => return Decision::StoreUnavailable(rule, e),
                },
            }
        };
        permit(rule, principal)
    }
}

/// What the session cookie gives without the store (see `Gateway::session_now`).
enum Cached {
    /// No cookie, or one that does not verify.
    NoSession,
    /// The session, from the local cache.
    Hit(Arc<Session>),
    /// A valid cookie whose session only the store knows.
    Miss(crate::auth::session::SessionId),
}

/// The rule of a match and the policy it applies.
fn rule_policy(matched: Match<'_>) -> (Option<&CompiledRule>, Policy) {
    match matched {
        Match::Rule(r) => (Some(r), r.policy),
        Match::Default(DefaultPolicy::Authenticated) => (None, Policy::Authenticated),
        Match::Default(DefaultPolicy::Deny) => (None, Policy::Deny),
    }
}

/// The Basic credentials a `basic_auth` rule judges the request by, with the
/// htpasswd users they are checked against.
fn basic_of<'h, 'r>(
    rt: &'r Runtime,
    rule: Option<&CompiledRule>,
    headers: &'h HeaderMap,
) -> Option<(&'h HeaderValue, &'r crate::config::htpasswd::Users)> {
    rule.filter(|r| r.basic_auth)
        .and_then(|_| crate::auth::basic::credentials(headers))
        .zip(rt.config.access.htpasswd.as_deref())
}

/// The bearer token the request is judged by, on a rule that accepts one.
fn token_of<'h>(rule: Option<&CompiledRule>, headers: &'h HeaderMap) -> Option<&'h str> {
    bearer::token_of(headers).filter(|_| rule.is_none_or(|r| r.bearer))
}

/// Authorisation: the rule's groups against the principal.
fn permit<'a>(rule: Option<&'a CompiledRule>, principal: Principal) -> Decision<'a> {
    if rule.is_none_or(|r| r.permits(principal.identity())) {
        Decision::Allow(principal, rule)
    } else {
        Decision::Forbidden(principal, rule)
    }
}

/// Notes the decision for the access log line (see `access`).
fn noted<'a>(decision: Decision<'a>, facts: &RequestFacts<'_>) -> Decision<'a> {
    crate::base::access::note(
        rule_name(decision.rule()),
        decision.principal().map(|p| p.identity().user.as_str()),
        Some((facts.host, facts.path)),
    );
    decision
}

/// The name of a decision's rule for logs (`default` when none matched).
pub fn rule_name(rule: Option<&CompiledRule>) -> &str {
    rule.map(|r| r.name.as_str()).unwrap_or("default")
}
