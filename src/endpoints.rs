//! What answers requests: forward auth, the reverse proxy, the login and
//! logout endpoints, the admin and debug endpoints, the HTML and JSON
//! pages, and [`respond`], the one place a decision or a failure becomes a
//! response.
//!
//! Uses `base`, `config` and `auth`; `server` routes requests here.

pub mod admin;
pub mod debug;
pub mod forward_auth;
pub mod login;
pub mod logout;
pub mod pages;
pub mod proxy;
pub mod respond;
