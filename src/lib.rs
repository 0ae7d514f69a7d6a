//! portcullis: a single-binary SSO gateway.
//!
//! It answers forward-auth checks from Traefik (`forwardAuth`), Caddy
//! (`forward_auth`) and nginx (`auth_request`), runs the OpenID Connect login
//! against the operator's IdP, keeps sessions behind an authenticated cookie,
//! applies per-route group rules, and can also sit in front of an app as an
//! authenticating reverse proxy.
//!
//! # Layout
//!
//! Seven folders, each importing only from the ones listed before it:
//!
//! - [`base`]: what every part uses. [`base::clock`] (the coarse clock of the
//!   per-request path), [`base::crypto`] (the rustls crypto provider of the
//!   build: ring, or aws-lc-rs with the feature `aws-lc-rs`),
//!   [`base::error`] (fault classes and error chains),
//!   [`base::secret`] (redacted secrets, constant-time comparison),
//!   [`base::identity`] (the subject of a request and its header values),
//!   `base::jwt` (reading the claims of a JWT whose signature was checked on
//!   arrival), [`base::request_id`] and `base::access` (`X-Request-Id` and the
//!   access log), [`base::metrics`] (every metric and the text of `/metrics`),
//!   [`base::http_util`] (the response body type and small HTTP helpers),
//!   `base::transport` (upstream connection pools and streamed bodies).
//! - [`config`]: TOML → validated, immutable [`config::Config`]; SIGHUP reload
//!   merging; the files it names (templates, assertion keys, htpasswd users).
//! - [`auth`]: the decision. [`auth::rules`] compiles `[[rule]]`s into a
//!   [`auth::rules::RuleSet`]; [`auth::pipeline`]: facts → rule →
//!   authentication → authorisation → [`auth::pipeline::Decision`];
//!   `auth::principal`: who an allowed request belongs to; [`auth::session`]:
//!   session cookies, the [`auth::session::SessionStore`] trait, the memory and
//!   Redis stores; `auth::oidc`: discovery, the authorization-code flow,
//!   ID-token checks, flow-state cookies, the IdP probes; `auth::refresh`:
//!   renewing a session's tokens; [`auth::basic`] and [`auth::bearer`]:
//!   `Authorization: Basic` and `Bearer`; `auth::redirect`: which `rd=`
//!   targets are safe; `auth::client_addr`: the address rule `networks`
//!   see; `auth::assertion`: the signed identity assertion and its JWKS;
//!   `auth::proxy_table`: the reverse proxy's upstreams and header rules;
//!   `auth::diagnostics`: run-time failure classes logged once with their
//!   fix, then rate-limited.
//! - [`endpoints`]: what answers. [`endpoints::forward_auth`] (`/oauth2/auth`),
//!   `endpoints::proxy` (reverse-proxy mode), `endpoints::login` and
//!   `endpoints::logout`, `endpoints::admin` (`/healthz`, `/readyz`,
//!   `/metrics`, `/admin/sessions`), `endpoints::debug` (the caller's own
//!   identity, opt-in), `endpoints::pages` (the HTML/JSON bodies), and
//!   `endpoints::respond`, the one place a decision or a failure becomes a
//!   response, in every mode.
//! - [`server`]: listeners, TLS, connection limits, routing, graceful drain.
//! - `dev`: the development issuer and `portcullis demo` (never used by
//!   `serve`; only in builds with the `dev-issuer` feature, which is on by
//!   default).
//! - [`tools`]: the command line ([`tools::cli`]), `portcullis check`
//!   (`tools::check`, the same probes at start-up), `healthcheck`,
//!   `migrate oauth2-proxy`, and logging (`tools::telemetry`).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod base;
pub mod config;
#[cfg(feature = "dev-issuer")]
pub mod dev;
pub mod endpoints;
pub mod server;
pub mod tools;
