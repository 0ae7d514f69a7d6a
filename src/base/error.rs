//! What every error shares: its [`Fault`] class, which decides the status
//! family of its answer and the level of its log line, and [`error_chain`],
//! the one-line rendering of an error and its causes. Turning an error into
//! a response is `respond`'s work; this module has no HTTP in it, so every
//! module can use it.
//!
//! Errors that wrap another keep it as their `source()`; their own message
//! may repeat the cause's text so that a log line printing just the error
//! still names it, and [`error_chain`] leaves out a cause already said.

/// Whose fault a failure is: picks the answer's status family and the level
/// of its one log line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// The client sent something that cannot be served (malformed request,
    /// missing or wrong credentials, a login state from another browser):
    /// 4xx, logged at info, and at most once per
    /// `diagnostics::CLIENT_ERRORS_EVERY` (debug in between) where
    /// a client can repeat it on every request.
    Client,
    /// The upstream behind a proxied host refused, failed or timed out: 502
    /// or 504, logged at warn.
    Upstream,
    /// The identity provider could not be reached or answered something
    /// unusable: 502 or 503, logged at warn.
    Idp,
    /// The session store could not answer: 503. The store logs the outage
    /// itself, once, at error when it starts; each request it fails is
    /// logged at debug only, so an outage does not flood the log.
    Store,
    /// A bug or an impossible state in the gateway itself: 500, logged at
    /// error.
    Internal,
}

// === impl Fault ===

impl Fault {
    /// The level of the log line a request failing this way gets.
    pub fn level(self) -> tracing::Level {
        match self {
            Fault::Client => tracing::Level::INFO,
            Fault::Upstream | Fault::Idp => tracing::Level::WARN,
            Fault::Store => tracing::Level::DEBUG,
            Fault::Internal => tracing::Level::ERROR,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oidc::LoginError;

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
        let oidc = crate::auth::oidc::test_client(&issuer);
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
        let e = crate::auth::session::redis::conn::classify(&redis_error);
        assert!(
            matches!(e, crate::auth::session::StoreError::Unavailable(_)),
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
        let e = crate::auth::session::redis::codec::DecodeError::Corrupt(
            postcard::from_bytes::<String>(&[0xff]).unwrap_err(),
        );
        assert_eq!(causes(&e).len(), 1, "{e:?}");
        assert_eq!(error_chain(&e), e.to_string());
    }
}
