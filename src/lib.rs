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
//! - [`config`]: TOML → validated, immutable [`config::Config`]; SIGHUP reload merging.
//! - [`rules`]: compiles `[[rule]]`s into a [`rules::RuleSet`]; path and host normalisation.
//! - [`redirect`]: which `rd=` targets are safe.
//! - [`identity`]: the subject of a request and its header values.
//! - [`session`]: session cookie seal/unseal, the [`session::SessionStore`] trait, the memory and Redis stores.
//! - [`oidc`]: discovery, the authorization-code flow (PKCE, `state`, `nonce`), ID-token checks, flow-state cookies.
//! - [`login`]: the browser endpoints `start`, `callback`, `sign_out` and `userinfo` (cookies and sessions around `oidc`).
//! - [`logout`]: back-channel logout from the IdP and RP-initiated logout at it.
//! - [`refresh`]: renewing a session's tokens with its refresh token (`session.refresh`).
//! - [`basic`]: `Authorization: Basic` against an htpasswd file, on rules with `basic_auth`.
//! - [`bearer`]: `Authorization: Bearer` JWTs: per-issuer JWKS cache, verification, verified-token cache.
//! - [`jwt`]: reading the claims of a JWT whose signature was checked on arrival.
//! - [`pipeline`]: facts → rule → authentication → authorisation → [`pipeline::Decision`];
//!   [`principal`]: who an allowed request belongs to.
//! - [`forward_auth`]: the `/oauth2/auth` endpoint.
//! - [`proxy`]: reverse-proxy mode; [`proxy_table`]: its upstreams and header rules, compiled
//!   into the runtime; [`transport`]: its upstream connection pools and streamed bodies.
//! - [`assertion`]: the signed identity assertion header and its JWKS.
//! - [`server`]: listeners, TLS, connection limits, routing, graceful drain.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/admin/sessions`; the admin token and Host check.
//! - [`respond`]: the one place a decision or a failure becomes a response, in every mode.
//! - [`error`] and [`pages`]: fault classes and error chains; the HTML/JSON bodies.
//! - [`http_util`]: the response body type and small HTTP helpers.
//! - `devidp` and `demo`: the development issuer and `portcullis demo` (never used by `serve`;
//!   only in builds with the `dev-issuer` feature, which is on by default).
//! - [`check`]: `portcullis check`, the same probes at start-up.
//! - [`healthcheck`]: `portcullis healthcheck`, one `/healthz` probe for container health checks.
//! - [`migrate`]: `portcullis migrate oauth2-proxy`, an oauth2-proxy configuration as portcullis TOML.
//! - [`request_id`] and [`access`]: `X-Request-Id` and the access log.
//! - [`metrics`]: every metric and the text of `/metrics`.
//! - [`debug`]: `GET <prefix>/debug`, the caller's own identity, claims and matching rule (opt-in).
//! - [`diagnostics`]: run-time failure classes logged once with their fix, then rate-limited.
//! - [`cli`], [`telemetry`], [`secret`]: command line, logging, redacted secrets and constant-time comparison.
//! - [`clock`]: the coarse clock of the per-request path.
//! - [`client_addr`]: the client address rule `networks` see (the `X-Forwarded-For` walk).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod assertion;
pub mod basic;
pub mod bearer;
pub mod check;
pub mod cli;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod debug;
#[cfg(feature = "dev-issuer")]
pub mod demo;
#[cfg(feature = "dev-issuer")]
pub mod devidp;
pub mod diagnostics;
pub mod error;
pub mod forward_auth;
pub mod healthcheck;
pub mod http_util;
pub mod identity;
pub mod jwt;
pub mod login;
pub mod logout;
pub mod metrics;
pub mod migrate;
pub mod oidc;
pub mod pages;
pub mod pipeline;
pub mod principal;
pub mod proxy;
pub mod proxy_table;
pub mod redirect;
pub mod refresh;
pub mod request_id;
pub mod respond;
pub mod rules;
pub mod secret;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod transport;
