//! `portcullis check`: every common SSO misconfiguration as a one-line
//! diagnosis, probed from where the gateway runs.
//!
//! [`run`] takes a validated [`Config`] and produces a [`Report`]: one
//! [`Finding`] per check, `ok`, `warn` or `FAIL`, each problem with a fix in
//! plain words. The probes live in submodules: [`net`] (DNS, TCP and TLS to
//! the IdP, with timings), [`idp`] (discovery document, issuer, clock, JWKS,
//! scopes, the authorization endpoint's verdict on the redirect URI),
//! [`local`] (what the config alone decides: scopes, redirect URI, cookie
//! domain, redirect domains), [`store`] (the session store) and [`login`]
//! (the interactive `--login`). Every network probe has a short timeout so a
//! check never hangs.
//!
//! Callers: `cli` (`portcullis check`), and `cli`'s `serve`, which runs the
//! same probes once in the background at start-up and logs what they find
//! ([`log_findings`]).

pub mod idp;
pub mod local;
pub mod login;
pub mod net;
pub mod store;

use std::fmt;
use std::path::Path;

use serde::Serialize;

pub use crate::auth::oidc::probe::{CONNECT_TIMEOUT, HTTP_TIMEOUT};
use crate::config::{Config, ConfigError, Env};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Works, but probably not as intended.
    Warn,
    /// Logins or requests will fail until this is fixed.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked, e.g. `issuer`.
    pub check: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, in plain words (`None` for `ok`).
    pub fix: Option<String>,
}

/// Every finding, in the order the checks ran.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

// === impl Status ===

impl Status {
    /// The word printed in the first column.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

// === impl Finding ===

impl Finding {
    /// An `ok` line.
    pub fn ok(check: &str, detail: impl Into<String>) -> Finding {
        Finding {
            check: check.to_owned(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A `warn` line with its fix.
    pub fn warn(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check: check.to_owned(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A `FAIL` line with its fix.
    pub fn fail(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check: check.to_owned(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Finding {
    /// `ok   issuer: ...`, `FAIL tcp: ... — fix: ...`: the status padded to
    /// four columns so the check names line up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4} {}: {}",
            self.status.label(),
            self.check,
            self.detail
        )?;
        if let Some(fix) = &self.fix {
            write!(f, " — fix: {fix}")?;
        }
        Ok(())
    }
}

// === impl Report ===

impl Report {
    /// Appends one finding.
    pub fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }

    /// Appends several.
    pub fn extend(&mut self, fs: impl IntoIterator<Item = Finding>) {
        self.findings.extend(fs);
    }

    /// True when any check failed.
    #[cfg(test)]
    pub fn has_failures(&self) -> bool {
        self.findings.iter().any(|f| f.status == Status::Fail)
    }

    /// One line per finding.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&f.to_string());
            out.push('\n');
        }
        out
    }

    /// A JSON array of `{check, status, detail, fix}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "[]".into())
    }
}

/// Loads the config at `path` and runs every check; an invalid config is
/// one `FAIL config` line per problem.
pub async fn run_file(path: &Path, env: &dyn Env) -> (Report, Option<Config>) {
    let mut report = Report::default();
    match Config::load(path, env) {
        Ok(config) => {
            report.push(Finding::ok(
                "config",
                format!("{} is valid", path.display()),
            ));
            report.extend(run(&config).await.findings);
            (report, Some(config))
        }
        Err(e) => {
            let fix = "correct the config file; `serve` refuses it as it is";
            match e {
                ConfigError::Invalid(problems) => {
                    for p in problems {
                        report.push(Finding::fail("config", p.to_string(), fix));
                    }
                }
                other => report.push(Finding::fail(
                    "config",
                    crate::base::error::error_chain(&other),
                    fix,
                )),
            }
            (report, None)
        }
    }
}

/// Runs every check against a validated config: the IdP from the network
/// up, then the scopes, the redirect URI (and the IdP's verdict on it),
/// the cookie and redirect domains, the client networks, rules that can
/// never match, and the session store.
pub async fn run(config: &Config) -> Report {
    let mut report = Report::default();
    let discovered = idp::probe(config, &mut report).await;
    report.extend(idp::bearer_issuers(config).await);
    report.extend(local::scopes(config));
    report.push(local::redirect_uri(config));
    if let Some(d) = &discovered {
        report.extend(idp::authorize_checks(config, &d.doc).await);
    }
    report.push(local::cookie_domain(config));
    report.push(local::redirect_domains(config));
    report.extend(local::networks(config));
    report.extend(local::dead_rules(config));
    report.push(store::probe(config).await);
    report
}

/// Logs every finding that is not `ok` at warn level, each with its fix,
/// and a one-line summary (`serve` calls this once after start-up).
pub fn log_findings(report: &Report) {
    let mut problems = 0;
    for f in &report.findings {
        match f.status {
            Status::Ok => {
                tracing::debug!(check = %f.check, detail = %f.detail, "start-up check ok")
            }
            Status::Warn | Status::Fail => {
                problems += 1;
                tracing::warn!(
                    check = %f.check,
                    status = f.status.label(),
                    fix = f.fix.as_deref().unwrap_or(""),
                    "{}", f.detail
                );
            }
        }
    }
    if problems == 0 {
        tracing::info!(
            checks = report.findings.len(),
            "start-up checks passed (identity provider, redirect URI, cookie domain, session store)"
        );
    } else {
        tracing::warn!(
            problems,
            "start-up checks found problems; run `portcullis check` for the full report"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_aligned_and_carry_the_fix() {
        let ok = Finding::ok("issuer", "matches");
        assert_eq!(ok.to_string(), "ok   issuer: matches");
        let fail = Finding::fail("tcp", "connection refused", "start it");
        assert_eq!(
            fail.to_string(),
            "FAIL tcp: connection refused — fix: start it"
        );
        let warn = Finding::warn("jwks", "x", "y");
        assert_eq!(warn.to_string(), "warn jwks: x — fix: y");
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let mut r = Report::default();
        r.push(Finding::ok("a", "b"));
        r.push(Finding::fail("c", "d", "e"));
        assert!(r.has_failures());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"check": "a", "status": "ok", "detail": "b", "fix": null},
                {"check": "c", "status": "fail", "detail": "d", "fix": "e"},
            ])
        );
    }
}
