//! End-to-end tests: the built `portcullis` binary against the real
//! components it is deployed with — the OpenID-certified `oidc-provider` test
//! IdP (tests/idp), Traefik, Caddy and nginx configured from the examples in
//! config/ — driven by a scripted browser that keeps cookies, follows
//! redirects itself and fills in the IdP's login form.
//!
//! Every process listens on 127.0.0.1 with an ephemeral port, its logs are
//! printed when a test fails, and it is killed when the test (or the binary)
//! ends. A missing component fails the tests with a pointer to
//! `scripts/install-test-deps.sh`; nothing is skipped.

#[path = "../common/mod.rs"]
mod common;
mod support;

// Forward auth behind Traefik, Caddy and nginx: login round trip to the
// original URL, identity headers at the app, spoofed headers, group rules,
// public and unlisted paths, API clients, path tricks; nginx's 401 login URL.
mod proxies;
// headers.preset = "oauth2-proxy" and [headers.claims] behind nginx
// (auth_request_set) and Traefik (authResponseHeaders), spoofed copies.
mod header_names;
// Rule conditions: groups_all through a real login (403 naming the missing
// group, both groups pass); networks behind Traefik, Caddy and nginx (LAN
// public, elsewhere login, spoofed X-Forwarded-For).
mod conditions;
// Domain-wide SSO behind Traefik: portcullis on auth.example.com, one cookie
// for example.com, rd anywhere under .example.com.
mod external_url;
// Hostile `rd` values at /oauth2/start, through a real IdP login.
mod redirects;
// Tampered, truncated, oversized, foreign and wrong-secret session cookies.
mod cookies;
// X-Forwarded-* and X-Original-* from a client outside trusted_proxies.
mod untrusted_peers;
// A non-ASCII cookie beside portcullis's own: login, proxy mode, sign-out
// (memory store and Redis).
mod non_ascii_cookies;
// A login started on one gateway process and finished on another; several
// tabs at once; abandoned logins and the flow-cookie cap.
mod cross_process;
// IdP unreachable (before discovery, before the code exchange), IdP error
// callbacks, replayed authorization codes; cached IdP metadata (a start after
// the IdP went down, a start burst at a dead IdP, an IdP that comes up after
// the gateway, a rotated signing key).
mod idp_failures;
// `portcullis check` against the real IdP configured in broken ways
// (issuer slash, unreachable host, wrong port, self-signed TLS, empty JWKS,
// groups scope, redirect URI, clock skew), `--json` and `--login`.
mod check;
// Reverse-proxy mode against real upstreams: login through the proxy, what
// reaches the app, WebSockets, 1 GiB each way with flat memory, 502/504,
// upstream TLS with a test CA, SIGHUP while a WebSocket is open.
mod reverse_proxy;
// Two gateways sharing sessions through a real Redis (and Sentinel): logins
// across instances, sign-out and revocation everywhere within a second,
// kill -9 and restarts, a Redis outage and recovery, the admin API and CLI.
mod shared_sessions;
// Bearer JWTs: tokens from the real IdP (test hook, client_credentials JWT
// access tokens) and from test-run JWKS issuers (every algorithm), hostile
// tokens, bearer vs cookie, bearer = false, key rotation, unknown-kid flood,
// readiness with unreachable keys.
mod bearer;
// Basic auth with htpasswd -B files behind Traefik and nginx and in proxy
// mode: groups, wrong and unknown users, the cache, the failure limit per user
// and per address, refused hash types with line numbers, SIGHUP.
mod basic_auth;
// README promises end to end: cookie attributes, secret rotation, SIGTERM
// drain, TLS with HTTP/2, revocation by sid and all, local_cache = false,
// the invalidation subscription down, and `portcullis demo`.
mod promises;
// The admin API's token: a public admin_listen without one refuses to start
// (`serve` and `check`); with one, revocation only with the token, 421 for
// rebinding names, health open, no token in the log.
mod admin_token;
// Every secret as a file (client secret, rotation list, Redis URL with its
// password, admin token) and nothing in the environment; a secret given
// twice refuses to start.
mod secret_files;
// SIGHUP applies the per-request keys of [server], [oidc] and [session] and
// names the changed start-up keys in its log line.
mod reload;
// Unverified e-mail addresses at the real IdP: no address for rules or
// X-Auth-Email, unless oidc.allow_unverified_email.
mod emails;
// Session refresh against a slow IdP: a sign-out during the refresh stays in
// force (memory and Redis), and the refresh lock outlasts the IdP's delay.
mod refresh;
// A burst of /readyz and /oauth2/start: few Redis connections, few IdP fetches.
mod health;
// TLS session resumption: a returning client resumes (TLS 1.3 and 1.2) after
// hundreds of other clients.
mod tls_resumption;
// Log flooding: bursts of malformed checks and IP-SNI TLS clients write a
// bounded number of lines.
mod log_flood;
// Client-sent X-Original-URL / X-Original-Method behind Traefik and Caddy at
// their defaults (no header filtering), and client X-Forwarded-* behind
// ingress-nginx's auth location: other host, scheme or method cannot change
// the verdict.
mod default_fronts;
// The signed identity assertion verified app-side against the published
// keys, refused on another host, never spoofable by a client.
mod assertion;
// /metrics before and after a real login, a denial, a check and a proxied
// request; request ids and the JSON access log, with no secret in the log.
mod metrics;
// The deployment artefacts in deploy/ and `portcullis healthcheck`, which
// their health checks run.
mod deploy;
// `portcullis migrate oauth2-proxy`: an oauth2-proxy configuration (file,
// environment, flags) converted and run against the real IdP.
mod migrate;
