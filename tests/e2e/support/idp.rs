//! The real OpenID provider: `node tests/idp/idp.mjs CONFIG.json` (the
//! `oidc-provider` package), with client `portcullis` and users alice
//! (groups admins, staff), bob (staff) and carol (no groups).

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use super::proc::{scratch_dir, Proc};
use super::{repo_root, require_binary, wait_for, INSTALL_HINT};

/// The OAuth client id registered at the IdP.
pub const CLIENT_ID: &str = "portcullis";
/// Its secret.
pub const CLIENT_SECRET: &str = "e2e-client-secret-0123456789abcdef";

/// The users every IdP knows; the password is always `<name>-pw`.
pub const USERS: [&str; 3] = ["alice", "bob", "carol"];

/// A user's password.
pub fn password(user: &str) -> String {
    format!("{user}-pw")
}

/// A running IdP.
pub struct Idp {
    /// The process.
    pub proc: Proc,
    /// The issuer, e.g. `http://127.0.0.1:41235`.
    pub issuer: String,
    /// Its port.
    pub port: u16,
    /// Its scratch directory.
    pub dir: PathBuf,
}

impl Idp {
    /// Starts an IdP whose client accepts exactly `redirect_uris`.
    pub fn start(redirect_uris: &[String]) -> Idp {
        Idp::start_with(redirect_uris, json!({}))
    }

    /// Starts an IdP as [`Idp::start`] does, with `extra` merged into its
    /// config (top-level keys; see tests/idp/README.md).
    pub fn start_with(redirect_uris: &[String], extra: serde_json::Value) -> Idp {
        let node = require_binary("node");
        let idp_dir = repo_root().join("tests/idp");
        if !idp_dir.join("node_modules").is_dir() {
            panic!(
                "e2e: tests/idp/node_modules is missing (the test IdP's packages); {INSTALL_HINT}"
            );
        }
        let dir = scratch_dir("idp");
        let config = json!({
            "port": 0,
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": redirect_uris,
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            }],
            "users": {
                "alice": {"password": password("alice"), "email": "alice@example.com", "groups": ["admins", "staff"], "name": "Alice"},
                "bob": {"password": password("bob"), "email": "bob@example.com", "groups": ["staff"], "name": "Bob"},
                "carol": {"password": password("carol"), "email": "carol@example.com", "name": "Carol"},
            },
        });
        let mut config = config;
        if let (Some(c), serde_json::Value::Object(e)) = (config.as_object_mut(), extra) {
            c.extend(e);
        }
        let config_path = dir.join("idp.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let launch = || {
            let mut cmd = Command::new(&node);
            cmd.arg(idp_dir.join("idp.mjs"))
                .arg(&config_path)
                .current_dir(&idp_dir);
            let proc = Proc::spawn("idp", cmd, &dir);
            let ready = wait_for(
                "idp",
                || proc.check_alive(),
                || {
                    proc.stdout()
                        .lines()
                        .find_map(|l| l.strip_prefix("READY ").map(|s| s.trim().to_owned()))
                },
            );
            (proc, ready)
        };
        // On this shared CI host a start has, rarely, stalled past the
        // deadline (normally it takes about a second): one more try, said
        // aloud; a second failure fails the test.
        let (proc, issuer) = match launch() {
            (proc, Ok(issuer)) => (proc, issuer),
            (stalled, Err(e)) => {
                eprintln!(
                    "e2e: {e}; starting the test IdP once more\n{}",
                    stalled.logs()
                );
                stalled.kill();
                match launch() {
                    (proc, Ok(issuer)) => (proc, issuer),
                    (proc, Err(e)) => panic!("{e} (second start)\n{}", proc.logs()),
                }
            }
        };
        let port = url::Url::parse(&issuer)
            .ok()
            .and_then(|u| u.port())
            .expect("READY line names an issuer with a port");
        Idp {
            proc,
            issuer,
            port,
            dir,
        }
    }

    /// Kills the IdP (SIGKILL): from now on it is unreachable.
    pub fn kill(&self) {
        self.proc.kill();
    }

    /// `POST /__test/rotate_keys`: a new signing key; the old `kid` leaves
    /// the JWKS. Returns the new `kid`.
    pub fn rotate_keys(&self) -> String {
        let host = format!("127.0.0.1:{}", self.port);
        let r = super::http::raw_request(
            self.port,
            "POST",
            &host,
            "/__test/rotate_keys",
            &[("Content-Length", "0")],
        )
        .expect("POST /__test/rotate_keys");
        assert_eq!(r.status, 200, "rotate_keys: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("rotate_keys JSON");
        v["kid"].as_str().expect("kid").to_owned()
    }

    /// `GET`s of the discovery document and of the JWKS so far, from [`Idp::stats`].
    pub fn metadata_fetches(&self) -> MetadataFetches {
        let s = self.stats();
        let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s}"));
        MetadataFetches {
            discovery: n("discovery"),
            jwks: n("jwks"),
        }
    }

    /// `GET /__test/stats` as JSON: request counts per endpoint, with
    /// `discovery` and `jwks` counting `GET`s of the discovery document and
    /// of `jwks_uri`.
    pub fn stats(&self) -> serde_json::Value {
        let r = super::http::raw_get(
            self.port,
            &format!("127.0.0.1:{}", self.port),
            "/__test/stats",
            &[],
        );
        serde_json::from_slice(&r.body).expect("stats JSON")
    }
}

/// How often the IdP served its discovery document and its JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataFetches {
    /// `GET /.well-known/openid-configuration`.
    pub discovery: u64,
    /// `GET` of `jwks_uri`.
    pub jwks: u64,
}
