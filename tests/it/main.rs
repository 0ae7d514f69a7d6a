//! In-process integration tests: the gateway on 127.0.0.1:0 against the
//! built-in development issuer and the demo echo app. Fast; the end-to-end
//! suite (`tests/e2e`) repeats the important flows against the real IdP and
//! front proxies.
//!
//! Modules:
//! - `support`: harness (IdP, app, gateway) and a browser-like client.
//! - `login`: the OIDC flow, `rd` validation, state handling, IdP failures.
//! - `forward_auth`: the `/oauth2/auth` answers, trust, path tricks.
//! - `cookies`: tampered, truncated, oversized and foreign cookies.
//! - `proxy`: reverse-proxy header hygiene.
//! - `bearer`: bearer tokens in reverse-proxy mode.
//! - `server`: TLS, HTTP/2, limits, health.
//! - `cli`: the binary's commands and exit codes.
//! - `health`: where health answers, and what `/readyz` tells whom.
//! - `admin`: the admin listener's token and Host check.
//! - `basic_auth`: `basic_auth` rules: htpasswd users, the Basic challenge, the failure limit, the cache.
//! - `networks`: rule `networks` and the X-Forwarded-For walk.
//! - `pages`: `server.pages_dir`, the operator's 403, error and signed-out pages.
//! - `metrics`: `/metrics`: counters by outcome and rule, where it answers, the admin token.
//! - `request_id`: `X-Request-Id` returned, passed upstream, kept from trusted peers only.
//! - `session_store`: the `SessionStore` conformance suite, memory and a real Redis.
//!
//! `common` (tests/common) is shared with the end-to-end tests and the load
//! bench: child processes, the Redis launcher, a raw HTTP client.

mod admin;
mod basic_auth;
mod bearer;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod cookies;
mod forward_auth;
mod health;
mod login;
mod metrics;
mod networks;
mod pages;
mod proxy;
mod request_id;
mod server;
mod session_store;
mod support;
