//! Where a secret comes from, and the rule that it comes from one place.
//!
//! Every secret can be given inline in the file, in a file named by a
//! `*_file` key (how Docker and Kubernetes hand secrets over), or in an
//! environment variable. A secret given in two places is a mistake the
//! gateway cannot settle by precedence (one of them is stale, and which one
//! is a guess), so it is a problem naming both. An empty environment
//! variable counts as unset, as compose's `${VAR:-}` leaves it. Part of
//! `validate`; the sections call these helpers for `oidc.client_secret`,
//! the session secrets, `session.redis_url` and the admin token. No message
//! ever contains a secret.

use std::fmt;

use super::Checker;

/// One place a secret can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// A key in the config file, e.g. `session.secret_file`.
    Key(&'static str),
    /// An environment variable, e.g. `PORTCULLIS_SESSION_SECRET`.
    Env(&'static str),
}

// === impl Place ===

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Key(key) => f.write_str(key),
            Place::Env(name) => write!(f, "the environment variable {name}"),
        }
    }
}

// === impl Checker: secret sources ===

impl Checker<'_> {
    /// The value of the environment variable `name`; empty counts as unset.
    pub(super) fn env_secret(&self, name: &str) -> Option<String> {
        self.env.var(name).filter(|v| !v.is_empty())
    }

    /// The one place in `given` (`None` entries are places not used), or
    /// `Err` after recording a problem under `key` that names every place
    /// used when there is more than one.
    pub(super) fn sole_place(
        &mut self,
        key: &str,
        given: &[Option<Place>],
    ) -> Result<Option<Place>, ()> {
        let used: Vec<Place> = given.iter().flatten().copied().collect();
        match used.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            [rest @ .., last] => {
                let rest: Vec<String> = rest.iter().map(Place::to_string).collect();
                let times = match used.len() {
                    2 => "twice".to_owned(),
                    n => format!("{n} times"),
                };
                self.problem(
                    key,
                    format!(
                        "is given {times}, in {} and in {last}; give it in one place only",
                        rest.join(", in ")
                    ),
                );
                Err(())
            }
        }
    }
}

/// The whitespace-separated words of a list form (`session.secrets_file`,
/// `PORTCULLIS_SESSION_SECRETS`, a Redis Cluster URL list in a file).
pub(super) fn words(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}
