//! Error answers shared by several endpoints: the 503 for an unavailable
//! session store or IdP, the login error page, and 404. The client gets a
//! short, generic body; the cause is logged once by the caller at the
//! boundary where the error is turned into this response.
//!
//! It also owns [`error_chain`], the one-line rendering of an error and its
//! causes. Errors that wrap another keep it as their `source()`; their own
//! message may repeat the cause's text so that a log line printing just the
//! error still names it, and [`error_chain`] leaves out a cause already said.

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

/// `e` and its sources joined with `: `, each cause left out when the text
/// so far already contains it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// 404 for paths portcullis does not serve.
pub fn not_found() -> Response<Body> {
    pages::json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts of `e`'s causes, outermost first (not `e` itself).
    fn causes(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = e.source();
        while let Some(c) = cur {
            out.push(c.to_string());
            cur = c.source();
        }
        out
    }

    /// A loopback port nothing listens on: connections are refused.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn refused(causes: &[String]) -> bool {
        causes
            .iter()
            .any(|c| c.to_ascii_lowercase().contains("connection refused"))
    }

    #[tokio::test]
    async fn an_unreachable_idp_keeps_the_connect_error_as_its_cause() {
        let issuer = format!("http://127.0.0.1:{}", closed_port());
        let text =
            format!("[server]\n[oidc]\nissuer = \"{issuer}\"\nclient_id = \"c\"\n[session]\n");
        let env: std::collections::HashMap<String, String> = [(
            "PORTCULLIS_SESSION_SECRET".to_owned(),
            "0123456789abcdef0123456789abcdef-x".to_owned(),
        )]
        .into();
        let config = crate::config::Config::from_toml(&text, std::path::Path::new("/"), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        let oidc = crate::oidc::Oidc::new(config.oidc).unwrap();
        let e = oidc.metadata().await.expect_err("nothing listens there");
        assert!(matches!(e, LoginError::IdpUnreachable { .. }), "{e:?}");
        let causes = causes(&e);
        assert!(refused(&causes), "{causes:?}");
        let line = error_chain(&e);
        assert!(
            line.starts_with("identity provider unreachable: discovery at "),
            "{line}"
        );
        assert!(
            line.to_ascii_lowercase().contains("connection refused"),
            "{line}"
        );
        assert_eq!(line, e.to_string(), "the message already names every cause");
    }

    #[tokio::test]
    async fn a_store_error_keeps_the_redis_error_as_its_cause() {
        let url = format!("redis://127.0.0.1:{}/", closed_port());
        let client = ::redis::Client::open(url.as_str()).unwrap();
        let redis_error = client
            .get_multiplexed_async_connection()
            .await
            .expect_err("nothing listens there");
        let e = crate::session::redis::conn::classify(&redis_error);
        assert!(
            matches!(e, crate::session::StoreError::Unavailable(_)),
            "{e:?}"
        );
        let causes = causes(&e);
        assert!(refused(&causes), "{causes:?}");
        assert!(error_chain(&e).starts_with("session store unreachable: "));

        // A login that cannot store its session names the store's cause too.
        let login = LoginError::Store(e);
        assert!(refused(&self::causes(&login)), "{login:?}");
    }

    #[test]
    fn a_config_file_error_keeps_the_os_error_as_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        let e = crate::config::Config::load(&path, &std::collections::HashMap::new())
            .expect_err("no such file");
        let io = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("the OS error is the cause");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        let line = error_chain(&e);
        assert!(line.starts_with("cannot read config file "), "{line}");
        assert!(line.contains(&io.to_string()), "{line}");
    }

    #[test]
    fn the_chain_skips_a_cause_already_said() {
        let e = crate::session::redis::codec::DecodeError::Corrupt(
            postcard::from_bytes::<String>(&[0xff]).unwrap_err(),
        );
        assert_eq!(causes(&e).len(), 1, "{e:?}");
        assert_eq!(error_chain(&e), e.to_string());
    }
}
