//! Development only: the built-in OpenID Connect issuer and
//! `portcullis demo`, compiled with the `dev-issuer` feature (on by
//! default) and never used by `serve`.
//!
//! Uses `config`, `base` and `server`; only `tools::cli` uses it.

pub mod demo;
pub mod devidp;
