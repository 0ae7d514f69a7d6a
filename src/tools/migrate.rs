//! `portcullis migrate oauth2-proxy`: turns an oauth2-proxy configuration
//! into the equivalent portcullis config file.
//!
//! [`options`] reads what oauth2-proxy would read (its config file, its
//! `OAUTH2_PROXY_*` environment, its flags, with its precedence); `convert`
//! maps every option that has a counterpart to portcullis keys and writes a
//! `# not converted: ... (why)` comment for each one that has none. The
//! result is TOML text for stdout; it is meant to pass
//! [`Config::from_toml`](crate::config::Config::from_toml), which `cli`
//! runs on it before printing and tests run on every fixture. Nothing here
//! touches the network. Called by `cli`; the mapping is documented in
//! docs/migrating-from-oauth2-proxy.md.

mod convert;
pub mod options;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use crate::config::Env;

pub use options::Options;

/// Why an oauth2-proxy configuration could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The config file (or the authenticated-emails file) could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not TOML (oauth2-proxy reads it as TOML too).
    #[error("{} is not a valid oauth2-proxy config file (TOML): {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A key or flag oauth2-proxy does not know either (it would refuse to start).
    #[error("{option} in {place} is not an oauth2-proxy option{}", hint.as_ref().map(|h| format!(" (did you mean {h}?)")).unwrap_or_default())]
    UnknownOption {
        /// The key or flag as written.
        option: String,
        /// The file, or "the command line".
        place: String,
        /// The nearest known name.
        hint: Option<String>,
    },
    /// A value of the wrong type.
    #[error("{option}: expected {expected}")]
    BadValue {
        /// The key, flag or variable.
        option: String,
        /// What was expected.
        expected: String,
    },
    /// A flag that needs a value came last.
    #[error("{0} needs a value")]
    MissingValue(String),
    /// A word that is not a flag.
    #[error(
        "unexpected argument {0:?}: give oauth2-proxy's flags as --name=value or --name value"
    )]
    Positional(String),
    /// `--alpha-config`: the YAML format is not read.
    #[error("--alpha-config (oauth2-proxy's YAML configuration) is not supported; convert the legacy options (config file, environment, flags) instead")]
    AlphaConfig,
    /// `--version`, `--config-test`, ...
    #[error("{0} is an oauth2-proxy command, not an option; leave it out")]
    CommandFlag(String),
    /// No OpenID Connect issuer can be derived.
    #[error("provider {provider:?} is not OpenID Connect; portcullis signs users in through an OIDC issuer: configure your identity provider's OIDC endpoint as provider = \"oidc\" with oidc_issuer_url first")]
    NotOidc {
        /// The provider.
        provider: String,
    },
    /// oauth2-proxy itself refuses a configuration without any e-mail check.
    #[error("no email_domains, authenticated_emails_file or htpasswd_file: oauth2-proxy refuses this configuration too; add email_domains = [\"*\"] to admit every signed-in user")]
    NoEmailCheck,
}

/// The result of a conversion.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The portcullis config, TOML with comments.
    pub toml: String,
    /// Points the operator must act on (also written as comments).
    pub warnings: Vec<String>,
}

/// Reads oauth2-proxy's configuration from `args` (its flags, `--config
/// FILE` among them) and the `OAUTH2_PROXY_*` variables of `env`, and
/// converts it.
pub fn oauth2_proxy(args: &[String], env: &dyn Env) -> Result<Converted, MigrateError> {
    let opts = Options::load(args, env)?;
    convert::convert(&opts)
}
