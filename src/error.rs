//! Error answers shared by several endpoints: the 503 for an unavailable
//! session store or IdP, the login error page, and 404. The client gets a
//! short, generic body; the cause is logged once by the caller at the
//! boundary where the error is turned into this response.

use http::{Response, StatusCode};

use crate::http_util::Body;
use crate::oidc::LoginError;
use crate::pages;

/// 503 when sessions cannot be read or written.
pub fn store_unavailable(browser: bool) -> Response<Body> {
    if browser {
        pages::html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in temporarily unavailable",
            "The session store cannot be reached. Please try again in a moment.",
            None,
        )
    } else {
        pages::json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "session store unavailable",
        )
    }
}

/// The page for a failed login, with a link that starts over. Logs one line
/// naming the cause: client-side problems at info, IdP-side at warn.
pub fn login_failed(e: &LoginError, retry: &str) -> Response<Body> {
    if matches!(e, LoginError::Store(_)) {
        // The store logs the outage once when it starts.
        tracing::debug!(reason = e.reason(), error = %e, "login failed");
    } else if e.status().is_server_error() {
        tracing::warn!(reason = e.reason(), error = %e, "login failed");
    } else {
        tracing::info!(reason = e.reason(), error = %e, "login failed");
    }
    pages::html(
        e.status(),
        "Sign-in failed",
        &e.user_message(),
        Some((retry, "Try again")),
    )
}

/// 404 for paths portcullis does not serve.
pub fn not_found() -> Response<Body> {
    pages::json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
