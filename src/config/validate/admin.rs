//! `server.admin_listen` and the admin API's token (`server.admin_token_file`
//! or the `PORTCULLIS_SERVER_ADMIN_TOKEN` environment variable, not both),
//! and the rule that an admin listener reachable from other hosts must have
//! one. Part of `validate`; the token is enforced by `admin`.
//!
//! Loopback means `127.0.0.0/8` or `::1` (an IPv4-mapped `::ffff:127.x.y.z`
//! counts as its IPv4 address). A wildcard address (`0.0.0.0`, `[::]`) is
//! not loopback. No message ever contains the token.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::secrets::Place;
use super::{Checker, ADMIN_TOKEN_ENV};
use crate::base::secret::Secret;

/// Shortest admin token accepted, in bytes.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// True when `addr` can be reached from this host only.
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

// === impl Checker: admin token ===

impl Checker<'_> {
    /// Reads `server.admin_token_file` or the environment and checks that
    /// a non-loopback `admin_listen` has a token.
    pub(super) fn admin_token(
        &mut self,
        file: Option<PathBuf>,
        admin_listen: Option<SocketAddr>,
    ) -> Option<Secret<String>> {
        const KEY: &str = "server.admin_token_file";
        let env = self.env_secret(ADMIN_TOKEN_ENV);
        let given = [
            file.as_ref().map(|_| Place::Key(KEY)),
            env.as_ref().map(|_| Place::Env(ADMIN_TOKEN_ENV)),
        ];
        let place = self.sole_place(KEY, &given);
        let token = match (place, file, env) {
            (Err(()), ..) => None,
            (_, Some(path), _) => self.read_admin_token(path),
            (_, None, Some(value)) => {
                self.check_admin_token(ADMIN_TOKEN_ENV, value.as_bytes(), "the variable")
            }
            (_, None, None) => None,
        };
        let failed = self.has_problem(KEY) || self.has_problem(ADMIN_TOKEN_ENV);
        match admin_listen {
            Some(addr) if !is_loopback(addr) && token.is_none() && !failed => {
                self.problem(
                    "server.admin_listen",
                    format!("{addr} is not a loopback address: the admin API (session listing and revocation) would be open to the network; set server.admin_token_file to a file holding a token of at least {MIN_ADMIN_TOKEN_BYTES} bytes (or put the token in the {ADMIN_TOKEN_ENV} environment variable; `portcullis gen-secret` prints one), or listen on 127.0.0.1 or [::1]"),
                );
            }
            None if token.is_some() => {
                let (key, what) = match place {
                    Ok(Some(Place::Env(name))) => (name, "set admin_listen or unset the variable"),
                    _ => (KEY, "set admin_listen or remove admin_token_file"),
                };
                self.problem(
                    key,
                    format!("has no effect without server.admin_listen: the admin API is served only there; {what}"),
                );
            }
            _ => {}
        }
        token
    }

    /// The token in `path`, checked as [`Self::check_admin_token`] does.
    fn read_admin_token(&mut self, path: PathBuf) -> Option<Secret<String>> {
        const KEY: &str = "server.admin_token_file";
        let shown = self.resolve(path.clone());
        let bytes = self.read_secret_file(KEY, path)?;
        self.check_admin_token(KEY, &bytes, &format!("{}: the file", shown.display()))
    }

    /// The token in `bytes`: trailing whitespace trimmed, printable ASCII,
    /// at least [`MIN_ADMIN_TOKEN_BYTES`] long; else a problem under `key`
    /// that calls the source `what`.
    fn check_admin_token(&mut self, key: &str, bytes: &[u8], what: &str) -> Option<Secret<String>> {
        let token = bytes.trim_ascii_end();
        let problem = if token.is_empty() {
            Some("is empty; write a token of at least 16 bytes into it (`portcullis gen-secret` prints one)".to_owned())
        } else if !token.iter().all(|b| b.is_ascii_graphic()) {
            Some("holds characters other than printable ASCII (or whitespace inside the token); an HTTP Authorization header cannot carry them".to_owned())
        } else if token.len() < MIN_ADMIN_TOKEN_BYTES {
            Some(format!(
                "holds a token of {} bytes; use at least {MIN_ADMIN_TOKEN_BYTES} (`portcullis gen-secret` prints one)",
                token.len()
            ))
        } else {
            None
        };
        if let Some(why) = problem {
            self.problem(key, format!("{what} {why}"));
            return None;
        }
        // All printable ASCII, so valid UTF-8.
        Some(Secret::new(String::from_utf8_lossy(token).into_owned()))
    }

    fn has_problem(&self, key: &str) -> bool {
        self.problems.iter().any(|p| p.key == key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::config::{Config, ConfigError};

    const BASE: &str = "[oidc]\nissuer = \"https://idp.example.com/\"\nclient_id = \"x\"\n[session]\nsecrets = [\"0123456789abcdef0123456789abcdef\"]\n";
    const TOKEN: &str = "s3cr3t-admin-token-0123456789";

    fn load(server: &str, dir: &Path) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("[server]\n{server}\n{BASE}"), dir, &HashMap::new())
    }

    /// Every problem's text, one per line.
    fn problems(server: &str, dir: &Path) -> String {
        match load(server, dir) {
            Ok(_) => panic!("accepted: {server}"),
            Err(ConfigError::Invalid(p)) => p.iter().map(|p| format!("{p}\n")).collect::<String>(),
            Err(e) => panic!("{e}"),
        }
    }

    fn token_file(dir: &Path, contents: &[u8]) -> PathBuf {
        let path = dir.join("admin_token");
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn loopback_addresses() {
        for a in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback(a.parse().unwrap()), "{a}");
        }
        for a in [
            "0.0.0.0:1",
            "[::]:1",
            "10.0.0.1:1",
            "[::ffff:10.0.0.1]:1",
            "[fe80::1]:1",
        ] {
            assert!(!is_loopback(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn loopback_admin_listener_needs_no_token() {
        let dir = tempfile::tempdir().unwrap();
        for addr in ["127.0.0.1:9180", "[::1]:9180"] {
            let cfg = load(&format!("admin_listen = \"{addr}\""), dir.path()).unwrap();
            assert!(cfg.server.admin_token.is_none());
        }
    }

    #[test]
    fn non_loopback_admin_listener_without_a_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for addr in ["0.0.0.0:9180", "[::]:9180", "10.1.2.3:9180"] {
            let text = problems(&format!("admin_listen = \"{addr}\""), dir.path());
            assert!(text.starts_with("server.admin_listen: "), "{text}");
            assert!(text.contains("is not a loopback address"), "{text}");
            assert!(text.contains("server.admin_token_file"), "{text}");
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }

    #[test]
    fn non_loopback_admin_listener_with_a_token_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        // Trailing whitespace and newlines are not part of the token.
        let path = token_file(dir.path(), format!("{TOKEN} \r\n\n").as_bytes());
        let cfg = load(
            &format!("admin_listen = \"0.0.0.0:9180\"\nadmin_token_file = {path:?}"),
            dir.path(),
        )
        .unwrap();
        assert_eq!(cfg.server.admin_token.as_ref().unwrap().expose(), TOKEN);
        // Never in the config's Debug output.
        assert!(!format!("{cfg:?}").contains(TOKEN));
        // A relative path resolves against the config file's directory.
        let cfg = load(
            "admin_listen = \"[::]:9180\"\nadmin_token_file = \"admin_token\"",
            dir.path(),
        )
        .unwrap();
        assert_eq!(cfg.server.admin_token.unwrap().expose(), TOKEN);
    }

    #[test]
    fn bad_token_files_are_refused_without_showing_the_token() {
        let dir = tempfile::tempdir().unwrap();
        for (contents, want) in [
            (&b""[..], "is empty"),
            (b" \n\n", "is empty"),
            (
                b"short-token\n",
                "holds a token of 11 bytes; use at least 16",
            ),
            (b"0123456789 abcdef0123", "printable ASCII"),
            (b"0123456789abcdef\xff", "printable ASCII"),
        ] {
            let path = token_file(dir.path(), contents);
            let text = problems(
                &format!("admin_listen = \"127.0.0.1:9180\"\nadmin_token_file = {path:?}"),
                dir.path(),
            );
            assert!(
                text.starts_with(&format!(
                    "server.admin_token_file: {}: the file ",
                    path.display()
                )),
                "{text}"
            );
            assert!(text.contains(want), "{contents:?}: {text}");
            assert!(!text.contains("short-token"), "{text}");
            assert!(!text.contains("0123456789"), "{text}");
            assert_eq!(text.lines().count(), 1, "{text}");
        }
        // A bad token file on a public listener: one problem, about the file.
        let path = token_file(dir.path(), b"short");
        let text = problems(
            &format!("admin_listen = \"0.0.0.0:9180\"\nadmin_token_file = {path:?}"),
            dir.path(),
        );
        assert!(text.starts_with("server.admin_token_file: "), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn missing_token_file_names_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let text = problems(
            &format!("admin_listen = \"0.0.0.0:9180\"\nadmin_token_file = {missing:?}"),
            dir.path(),
        );
        assert!(
            text.starts_with(&format!(
                "server.admin_token_file: cannot read {}",
                missing.display()
            )),
            "{text}"
        );
    }

    #[test]
    fn token_without_admin_listener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(dir.path(), TOKEN.as_bytes());
        let text = problems(&format!("admin_token_file = {path:?}"), dir.path());
        assert!(
            text.starts_with("server.admin_token_file: has no effect without server.admin_listen"),
            "{text}"
        );
    }
}
