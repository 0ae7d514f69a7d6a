//! Authentication and authorisation: everything that decides whether a
//! request may pass and as whom. The rules and the request phases
//! ([`pipeline`]), the sessions and their stores, OpenID Connect, bearer
//! tokens, Basic credentials, token refresh, safe redirects, the client
//! address, the signed identity assertion, the reverse-proxy table the
//! decision consults, and the run-time diagnostics of the IdP.
//!
//! Uses `base` and `config`; the endpoints turn its decisions into
//! responses.

pub(crate) mod assertion;
pub mod basic;
pub mod bearer;
pub(crate) mod client_addr;
pub(crate) mod diagnostics;
pub(crate) mod oidc;
pub mod pipeline;
pub(crate) mod principal;
pub(crate) mod proxy_table;
pub(crate) mod redirect;
pub(crate) mod refresh;
pub mod rules;
pub mod session;

// The hygiene benchmark scrubs requests as the proxy does.
pub use proxy_table::headers as proxy_headers;
