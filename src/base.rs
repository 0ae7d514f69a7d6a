//! The building blocks every other part uses, importing nothing outside
//! this folder: the clock, the TLS crypto provider, errors and their fault
//! classes, secrets, identities and their header values, JWT claims,
//! request ids and the access log, metrics, small HTTP helpers and the
//! response body type, and the upstream transport (connection pools,
//! streamed bodies, an HTTP/1.1 answer reader).

pub(crate) mod access;
pub mod clock;
pub mod crypto;
pub mod error;
pub mod http_util;
pub mod identity;
pub(crate) mod jwt;
pub mod metrics;
pub mod request_id;
pub mod secret;
pub(crate) mod transport;

// The load harness's `httparse` floor writes requests and reads answers with them.
pub use transport::{h1_request, h1_response, h1_server};
