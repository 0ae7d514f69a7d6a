//! Reading `access.htpasswd_file` and `access.htpasswd_groups_file`.
//!
//! An htpasswd file holds `user:hash` lines; only bcrypt (`$2y$`, `$2b$`,
//! `$2a$`, as `htpasswd -B` writes) and argon2 (`$argon2id$`, `$argon2i$`,
//! `$argon2d$`) hashes are accepted. Plain-text passwords, DES `crypt`, MD5
//! (`$apr1$`, `$1$`), SHA-1 (`{SHA}`) and SHA-crypt (`$5$`, `$6$`) entries are
//! refused with their line number: they are fast to guess or not hashes at
//! all. A groups file has Apache `AuthGroupFile` lines, `group: user1 user2`.
//! Blank lines and lines starting with `#` are skipped in both.
//!
//! Called by config validation (start-up, SIGHUP, `portcullis check`), which
//! reports every problem found here under the key of the file. No message
//! ever contains a hash or a password.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use crate::base::identity::{Identity, IdentityHeaders};

/// The users of `access.htpasswd_file`, with their groups: part of the
/// validated config.
#[derive(Default)]
pub struct Users {
    by_name: HashMap<String, Arc<User>>,
}

/// One user of the htpasswd file.
pub struct User {
    /// The identity rules judge: the user name, no e-mail, the groups of
    /// the groups file.
    pub identity: Identity,
    /// Its header values, rendered once.
    pub headers: IdentityHeaders,
    pub(crate) hash: PasswordHash,
}

/// An accepted password hash (the text of the htpasswd entry).
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$`, `$2b$` or `$2a$`.
    Bcrypt(Arc<str>),
    /// `$argon2id$`, `$argon2i$` or `$argon2d$` (PHC string).
    Argon2(Arc<str>),
}

/// One problem in one of the files.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// The file could not be read (missing, permissions, not UTF-8).
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is wrong; `reason` says how, without echoing secrets.
    #[error("{path}: line {line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// One-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Reads and checks both files. Every problem is returned, not just the first.
pub fn load(passwords: &Path, groups: Option<&Path>) -> Result<Users, Vec<FileProblem>> {
    let mut problems = Vec::new();
    let entries = read(passwords, &mut problems)
        .map(|text| parse_passwords(&passwords.display().to_string(), &text, &mut problems))
        .unwrap_or_default();
    let memberships = groups
        .and_then(|path| read(path, &mut problems).map(|text| (path, text)))
        .map(|(path, text)| parse_groups(&path.display().to_string(), &text, &mut problems))
        .unwrap_or_default();
    if !problems.is_empty() {
        return Err(problems);
    }
    let by_name = entries
        .into_iter()
        .map(|(name, hash)| {
            let identity = Identity {
                groups: memberships.get(&name).cloned().unwrap_or_default(),
                user: name.clone(),
                email: String::new(),
                ..Identity::default()
            };
            let user = User {
                headers: identity.headers(),
                identity,
                hash,
            };
            (name, Arc::new(user))
        })
        .collect();
    Ok(Users { by_name })
}

fn read(path: &Path, problems: &mut Vec<FileProblem>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            problems.push(FileProblem::Unreadable {
                path: path.display().to_string(),
                source: e,
            });
            None
        }
    }
}

/// The significant lines of a file: one-based number and trimmed text.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// `user:hash` lines, in file order.
pub fn parse_passwords(
    path: &str,
    text: &str,
    problems: &mut Vec<FileProblem>,
) -> Vec<(String, PasswordHash)> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, text) in lines(text) {
        let mut problem = |reason: String| {
            problems.push(FileProblem::Line {
                path: path.to_owned(),
                line,
                reason,
            })
        };
        let Some((name, hash)) = text.split_once(':') else {
            problem("not a \"user:hash\" line".to_owned());
            continue;
        };
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            problem("the user name is empty or contains spaces or control characters".to_owned());
            continue;
        }
        if let Some(first) = seen.insert(name.to_owned(), line) {
            problem(format!("user {name:?} is already defined on line {first}"));
            continue;
        }
        match classify(hash) {
            Ok(hash) => out.push((name.to_owned(), hash)),
            Err(reason) => problem(format!("user {name:?}: {reason}")),
        }
    }
    out
}

/// Accepts bcrypt and argon2 hashes; names the kind of anything else.
pub fn classify(hash: &str) -> Result<PasswordHash, String> {
    const ONLY: &str =
        "only bcrypt and argon2 hashes are accepted (create the entry with `htpasswd -B`)";
    let refused = |what: &str| Err(format!("{what} are refused; {ONLY}"));
    if let Some(rest) = hash
        .strip_prefix("$2y$")
        .or_else(|| hash.strip_prefix("$2b$"))
        .or_else(|| hash.strip_prefix("$2a$"))
    {
        return match is_bcrypt(rest) && bcrypt::HashParts::from_str(hash).is_ok() {
            true => Ok(PasswordHash::Bcrypt(hash.into())),
            false => Err("is not a valid bcrypt hash (expected $2y$NN$ and 53 characters)".into()),
        };
    }
    if hash.starts_with("$argon2") {
        return match argon2::PasswordHash::new(hash) {
            Ok(parsed) if parsed.hash.is_some() && parsed.salt.is_some() => {
                Ok(PasswordHash::Argon2(hash.into()))
            }
            Ok(_) => Err("is an argon2 hash without salt or output".into()),
            Err(e) => Err(format!("is not a valid argon2 hash: {e}")),
        };
    }
    if hash.starts_with("$2x$") {
        return refused("bcrypt $2x$ hashes (made by a bcrypt with a known flaw)");
    }
    if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
        return refused("MD5 hashes");
    }
    if hash.starts_with("{SHA}") {
        return refused("SHA-1 hashes");
    }
    if hash.starts_with("$5$") || hash.starts_with("$6$") {
        return refused("SHA-256/SHA-512 crypt hashes");
    }
    if hash.len() == 13 && hash.bytes().all(is_crypt_char) {
        return refused("DES crypt hashes");
    }
    refused("plain-text passwords and unknown hash formats")
}

/// `NN$` and 53 characters of bcrypt's base64, after the `$2y$` prefix.
fn is_bcrypt(rest: &str) -> bool {
    let b = rest.as_bytes();
    b.len() == 56
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b'$'
        && (4..=31).contains(&((b[0] - b'0') * 10 + (b[1] - b'0')))
        && b[3..].iter().copied().all(is_crypt_char)
}

fn is_crypt_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

/// `group: user1 user2` lines: user → groups, in file order, each once.
pub fn parse_groups(
    path: &str,
    text: &str,
    problems: &mut Vec<FileProblem>,
) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (line, text) in lines(text) {
        let Some((group, members)) = text.split_once(':') else {
            problems.push(FileProblem::Line {
                path: path.to_owned(),
                line,
                reason: "not a \"group: user1 user2\" line".to_owned(),
            });
            continue;
        };
        let group = group.trim();
        if group.is_empty() || group.chars().any(|c| c.is_control() || c.is_whitespace()) {
            problems.push(FileProblem::Line {
                path: path.to_owned(),
                line,
                reason: "the group name is empty or contains spaces or control characters"
                    .to_owned(),
            });
            continue;
        }
        for user in members.split_whitespace() {
            let groups = out.entry(user.to_owned()).or_default();
            if !groups.iter().any(|g| g == group) {
                groups.push(group.to_owned());
            }
        }
    }
    out
}

// === impl Users ===

impl Users {
    /// The user named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<User>> {
        self.by_name.get(name)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when the file has no users.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Some user's hash, to check unknown user names against so that they
    /// take as long as known ones.
    pub(crate) fn decoy(&self) -> Option<PasswordHash> {
        self.by_name.values().next().map(|u| u.hash.clone())
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("users", &self.by_name.len())
            .finish()
    }
}

// === impl User ===

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("identity", &self.identity)
            .field("hash", &"[redacted]")
            .finish()
    }
}

// === impl PasswordHash ===

impl PasswordHash {
    /// True when `password` matches. Slow by design: call off the async workers.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::Argon2(h) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(h).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password, &parsed)
                        .is_ok()
                })
            }
        }
    }
}
