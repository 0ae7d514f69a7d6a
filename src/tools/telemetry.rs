//! The tracing subscriber: plain text or JSON lines on stderr, filtered by
//! `RUST_LOG` (default `info`). Field names are dotted (`client.addr`,
//! `rule.name`); secrets never reach a field (see `secret`).
//!
//! Dependencies that log once per connection on a client's say-so (rustls's
//! "Illegal SNI extension" for every TLS client that connects by IP address,
//! hyper's and h2's protocol errors) are held to errors by default, so no
//! client can fill the disk with them; the gateway logs what it makes of
//! those failures itself. A `RUST_LOG` directive naming such a crate
//! (`RUST_LOG=info,rustls=warn`) overrides the default.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Directives that come before `RUST_LOG`'s (which win for the same target).
pub const DEPENDENCY_DEFAULTS: &str =
    "rustls=error,tokio_rustls=error,hyper=error,hyper_util=error,h2=error";

/// Installs the global subscriber. Safe to call twice (the second call is ignored).
pub fn init(format: LogFormat) {
    let user = std::env::var("RUST_LOG").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&user))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The filter for `RUST_LOG` text `user`: `info` when empty, after the
/// dependency defaults.
fn filter(user: &str) -> EnvFilter {
    let user = if user.trim().is_empty() { "info" } else { user };
    EnvFilter::builder().parse_lossy(format!("{DEPENDENCY_DEFAULTS},{user}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_held_to_errors_unless_named() {
        let has = |f: &str, d: &str| f.split(',').any(|x| x == d);
        let f = filter("info").to_string();
        assert!(has(&f, "rustls=error") && has(&f, "h2=error"), "{f}");
        let f = filter("debug,rustls=warn").to_string();
        assert!(has(&f, "rustls=warn") && !has(&f, "rustls=error"), "{f}");
        assert!(filter("").to_string().contains("info"));
    }
}
