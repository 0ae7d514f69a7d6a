//! What answers requests: forward auth, the reverse proxy, the login and
//! logout endpoints, the admin and debug endpoints, the HTML and JSON
//! pages, and `respond`, the one place a decision or a failure becomes a
//! response.
//!
//! Uses `base`, `config` and `auth`; `server` routes requests here.

pub(crate) mod admin;
pub(crate) mod debug;
pub mod forward_auth;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod pages;
pub(crate) mod proxy;
pub(crate) mod respond;
