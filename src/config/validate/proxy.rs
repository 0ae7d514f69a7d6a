//! `[proxy]` timeouts and the per-rule upstream options (`upstream_ca`,
//! `upstream_insecure_skip_verify`, `preserve_host`). The CA file is read
//! and parsed here, at load time, so a bad file is refused with the rest of
//! the config (and a SIGHUP with a bad file keeps the running config). Part
//! of `validate`.

use url::Url;

use super::Checker;
use crate::config::raw::{RawProxy, RawRule};
use crate::config::{ProxyConfig, UpstreamOptions, UpstreamTls};

// === impl Checker: [proxy] and rule upstream options ===

impl Checker<'_> {
    pub(super) fn proxy(&mut self, raw: RawProxy) -> ProxyConfig {
        ProxyConfig {
            connect_timeout: self.positive("proxy.connect_timeout", raw.connect_timeout.0),
            response_header_timeout: self.positive(
                "proxy.response_header_timeout",
                raw.response_header_timeout.0,
            ),
            idle_timeout: self.positive("proxy.idle_timeout", raw.idle_timeout.0),
        }
    }

    /// The upstream options of `rule[i]`; `upstream` is the rule's validated upstream.
    pub(super) fn upstream_options(
        &mut self,
        i: usize,
        raw: &RawRule,
        upstream: Option<&Url>,
    ) -> UpstreamOptions {
        let key = |field: &str| format!("rule[{i}].{field}");
        let has_upstream = raw.upstream.is_some();
        let https = upstream.is_some_and(|u| u.scheme() == "https");
        for (set, field) in [
            (raw.upstream_ca.is_some(), "upstream_ca"),
            (
                raw.upstream_insecure_skip_verify,
                "upstream_insecure_skip_verify",
            ),
            (raw.preserve_host, "preserve_host"),
        ] {
            if set && !has_upstream {
                self.problem(key(field), "applies only to a rule with an upstream");
            }
        }
        let tls = match (&raw.upstream_ca, raw.upstream_insecure_skip_verify) {
            (Some(_), true) => {
                self.problem(
                    key("upstream_insecure_skip_verify"),
                    "contradicts upstream_ca; set one or the other",
                );
                UpstreamTls::SystemRoots
            }
            (Some(path), false) => {
                if upstream.is_some() && !https {
                    self.problem(key("upstream_ca"), "applies only to an https:// upstream");
                }
                self.ca_file(&key("upstream_ca"), path.clone()).map_or(
                    UpstreamTls::SystemRoots,
                    |ca| UpstreamTls::Ca {
                        path: ca.path,
                        certs: ca.certs,
                    },
                )
            }
            (None, true) => UpstreamTls::InsecureSkipVerify,
            (None, false) => UpstreamTls::SystemRoots,
        };
        UpstreamOptions {
            tls,
            preserve_host: raw.preserve_host,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Config, ConfigError, UpstreamTls};

    const BASE: &str = "[oidc]\nissuer = \"https://idp.example.com/\"\nclient_id = \"x\"\n[session]\nsecrets = [\"0123456789abcdef0123456789abcdef\"]\n";

    fn load(rest: &str, dir: &Path) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("{BASE}{rest}"), dir, &HashMap::new())
    }

    fn problems(rest: &str) -> Vec<String> {
        match load(rest, Path::new("/nonexistent")) {
            Err(e) => e.problems().iter().map(ToString::to_string).collect(),
            Ok(_) => panic!("accepted:\n{rest}"),
        }
    }

    #[test]
    fn defaults() {
        let c = load(
            "[[rule]]\nupstream = \"http://127.0.0.1:1\"\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.proxy.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.proxy.response_header_timeout, Duration::from_secs(60));
        assert_eq!(c.proxy.idle_timeout, Duration::from_secs(90));
        assert!(!c.rules[0].upstream_options.preserve_host);
        assert!(matches!(
            c.rules[0].upstream_options.tls,
            UpstreamTls::SystemRoots
        ));
    }

    #[test]
    fn options_need_an_upstream_and_agree() {
        let p = problems("[[rule]]\npreserve_host = true\nupstream_insecure_skip_verify = true\n");
        assert!(
            p.iter()
                .any(|p| p.starts_with("rule[0].preserve_host: applies only")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("rule[0].upstream_insecure_skip_verify: applies only")),
            "{p:?}"
        );
        let p = problems("[[rule]]\nupstream = \"https://a.example.com\"\nupstream_ca = \"ca.pem\"\nupstream_insecure_skip_verify = true\n");
        assert!(
            p.iter().any(|p| p.contains("contradicts upstream_ca")),
            "{p:?}"
        );
        let p = problems("[[rule]]\nupstream = \"http://a.example.com\"\nupstream_ca = \"/nonexistent/ca.pem\"\n");
        assert!(
            p.iter().any(|p| p.contains("only to an https:// upstream")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("cannot read /nonexistent/ca.pem")),
            "{p:?}"
        );
        let p = problems("[proxy]\nconnect_timeout = \"0s\"\n");
        assert!(
            p.iter()
                .any(|p| p.starts_with("proxy.connect_timeout: must be longer")),
            "{p:?}"
        );
    }

    #[test]
    fn ca_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(dir.path().join("empty.pem"), "nothing here\n").unwrap();
        let c = load(
            "[[rule]]\nupstream = \"https://a.example.com\"\nupstream_ca = \"ca.pem\"\n",
            dir.path(),
        )
        .unwrap();
        assert!(
            matches!(&c.rules[0].upstream_options.tls, UpstreamTls::Ca { certs, .. } if certs.len() == 1)
        );
        let e = load(
            "[[rule]]\nupstream = \"https://a.example.com\"\nupstream_ca = \"empty.pem\"\n",
            dir.path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
    }
}
