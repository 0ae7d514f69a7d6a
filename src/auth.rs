//! Authentication and authorisation: everything that decides whether a
//! request may pass and as whom. The rules and the request phases
//! ([`pipeline`]), the sessions and their stores, OpenID Connect, bearer
//! tokens, Basic credentials, token refresh, safe redirects, the client
//! address, the signed identity assertion, the reverse-proxy table the
//! decision consults, and the run-time diagnostics of the IdP.
//!
//! Uses `base` and `config`; the endpoints turn its decisions into
//! responses.

pub mod assertion;
pub mod basic;
pub mod bearer;
pub mod client_addr;
pub mod diagnostics;
pub mod oidc;
pub mod pipeline;
pub mod principal;
pub mod proxy_table;
pub mod redirect;
pub mod refresh;
pub mod rules;
pub mod session;
