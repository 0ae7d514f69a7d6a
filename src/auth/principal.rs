//! Who an authenticated request belongs to: a browser session, a verified
//! bearer token or a user of the htpasswd file. Made by the pipeline's
//! decision; read by whatever answers the request (identity headers, the
//! identity assertion, the access log).

use std::sync::Arc;

use crate::auth::bearer::Verified;
use crate::auth::session::Session;
use crate::base::identity::{Identity, IdentityHeaders};
use crate::config::htpasswd::User;

/// Who an authenticated request belongs to.
pub enum Principal {
    /// A browser session (cookie).
    Session(Arc<Session>),
    /// A verified bearer token.
    Bearer(Arc<Verified>),
    /// A user of `access.htpasswd_file` (`Authorization: Basic`).
    Basic(Arc<User>),
}

// === impl Principal ===

impl Principal {
    /// The identity rules judge.
    pub fn identity(&self) -> &Identity {
        match self {
            Principal::Session(s) => &s.identity,
            Principal::Bearer(b) => &b.identity,
            Principal::Basic(u) => &u.identity,
        }
    }

    /// The identity header values, rendered once.
    pub fn headers(&self) -> &IdentityHeaders {
        match self {
            Principal::Session(s) => &s.headers,
            Principal::Bearer(b) => &b.headers,
            Principal::Basic(u) => &u.headers,
        }
    }
}
