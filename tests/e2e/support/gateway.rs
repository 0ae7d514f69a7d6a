//! portcullis itself: the built binary (`CARGO_BIN_EXE_portcullis`) run as
//! `portcullis serve --config FILE`, secrets from the environment unless
//! the config names them (a secret given in both is a start-up error).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::browser::Browser;
use super::http::{probe, raw_get, RawResponse};
use super::idp::CLIENT_SECRET;
use super::proc::{scratch_dir, Proc};
use super::{free_port, wait_for};

/// The session secret of most gateways in these tests.
pub const SESSION_SECRET: &str = "e2e-session-secret-0123456789-abcdefghijklmnop";
/// The listen placeholder in config texts (as in the examples in config/).
pub const LISTEN_PLACEHOLDER: &str = "127.0.0.1:4180";

/// A running gateway.
pub struct Gateway {
    /// The process.
    pub proc: Proc,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The config file it runs with.
    pub config: PathBuf,
}

/// How to start a gateway.
pub struct Launch<'a> {
    /// Name in logs.
    pub name: &'a str,
    /// Config text; `127.0.0.1:4180` is replaced by the listen address.
    pub config: &'a str,
    /// The listen port; `None` picks a free one.
    pub port: Option<u16>,
    /// `PORTCULLIS_SESSION_SECRET`; empty = not set (the config has it).
    pub session_secret: &'a str,
    /// `PORTCULLIS_OIDC_CLIENT_SECRET`; empty = not set (the config has it).
    pub client_secret: &'a str,
    /// Wait for `/readyz` (IdP metadata loaded), not just `/healthz`.
    pub wait_ready: bool,
    /// Run from this existing file instead of `config` (several processes
    /// sharing one file). With `listen = "127.0.0.1:0"` the port is read
    /// from the "portcullis listening" log line.
    pub config_file: Option<&'a Path>,
    /// Probe readiness on this port (the config's `admin_listen`) instead of the listen port.
    pub admin_port: Option<u16>,
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Launch {
            name: "portcullis",
            config: "",
            port: None,
            session_secret: SESSION_SECRET,
            client_secret: CLIENT_SECRET,
            wait_ready: true,
            config_file: None,
            admin_port: None,
        }
    }
}

impl Gateway {
    /// Starts a gateway with `config` (see [`Launch`]) and waits until it is ready.
    pub fn start(config: &str) -> Gateway {
        Gateway::launch(Launch {
            config,
            ..Launch::default()
        })
    }

    /// Starts a gateway as described. When the harness chose the port and
    /// another process took it between the choice and the gateway's bind
    /// (`Address already in use`), it starts again on another port, up to
    /// three times.
    pub fn launch(l: Launch<'_>) -> Gateway {
        let mut tries = 1;
        loop {
            match Gateway::try_launch(&l) {
                Ok(gw) => return gw,
                Err(e) if tries < 3 && l.port.is_none() && l.config_file.is_none() => {
                    eprintln!("{e}\nport taken before the gateway bound it; starting again");
                    tries += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// One start; `Err` (with the logs) when the harness-chosen port was
    /// taken, a panic on any other failure.
    fn try_launch(l: &Launch<'_>) -> Result<Gateway, String> {
        let dir = scratch_dir(l.name);
        let (fixed_port, config) = match l.config_file {
            Some(file) => (None, file.to_owned()),
            None => {
                // A port known up front: the config file names the port the
                // gateway listens on (`portcullis healthcheck --config` and
                // restarts on the same port read it from there).
                let port = l.port.unwrap_or_else(free_port);
                // The quoted placeholder only: an admin port such as 41805
                // also contains the text 127.0.0.1:4180.
                let quoted = format!("\"{LISTEN_PLACEHOLDER}\"");
                assert!(
                    l.config.contains(&quoted),
                    "gateway config needs listen = {quoted}"
                );
                let config = dir.join("portcullis.toml");
                std::fs::write(
                    &config,
                    l.config.replace(&quoted, &format!("\"127.0.0.1:{port}\"")),
                )
                .unwrap();
                (Some(port), config)
            }
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .current_dir(&dir);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PORTCULLIS_") {
                cmd.env_remove(&k);
            }
        }
        for (name, value) in [
            ("PORTCULLIS_OIDC_CLIENT_SECRET", l.client_secret),
            ("PORTCULLIS_SESSION_SECRET", l.session_secret),
        ] {
            if !value.is_empty() {
                cmd.env(name, value);
            }
        }
        cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
        let proc = Proc::spawn(l.name, cmd, &dir);
        let port = match fixed_port {
            Some(p) => p,
            None => wait_for(
                l.name,
                || proc.check_alive(),
                || listening_port(&proc.stderr()),
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", proc.logs())),
        };
        let probe_path = if l.wait_ready { "/readyz" } else { "/healthz" };
        let host = format!("127.0.0.1:{port}");
        let ready = wait_for(
            l.name,
            || proc.check_alive(),
            || (probe(l.admin_port.unwrap_or(port), &host, probe_path) == Some(200)).then_some(()),
        );
        match ready {
            Ok(()) => Ok(Gateway { proc, port, config }),
            Err(e) if proc.stderr().contains("Address already in use") => {
                Err(format!("{e}\n{}", proc.logs()))
            }
            Err(e) => panic!("{e}\n{}", proc.logs()),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The gateway's log (stderr), colour codes removed.
    pub fn log(&self) -> String {
        self.proc.stderr()
    }

    /// Waits (at most 20 s) until the log holds `needle` `count` times; the log.
    pub fn wait_log(&self, needle: &str, count: usize) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?}:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Sends SIGHUP: reload the configuration.
    pub fn hup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.proc.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Signs `user` in with `b` at `app.example.com` through this gateway
    /// (`/oauth2/start?rd=/`); the session cookie as a `Cookie` header value.
    pub async fn login(&self, b: &Browser, user: &str) -> String {
        let base = format!("http://app.example.com:{}", self.port);
        let page = b
            .open_as(&format!("{base}/oauth2/start?rd=%2F"), user)
            .await;
        let value = b
            .cookie(&base, "_portcullis")
            .unwrap_or_else(|| panic!("no session cookie after login:\n{page}"));
        format!("_portcullis={value}")
    }

    /// The forward-auth check of `GET uri` on app.example.com, sent straight
    /// to the gateway with `headers` (the `Cookie`, the `Accept` kind).
    pub fn check_app(&self, uri: &str, headers: &[(&str, &str)]) -> RawResponse {
        let mut all = vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", uri),
        ];
        all.extend_from_slice(headers);
        raw_get(
            self.port,
            &format!("127.0.0.1:{}", self.port),
            "/oauth2/auth",
            &all,
        )
    }
}

/// The port in the "portcullis listening listen=127.0.0.1:PORT" log line.
fn listening_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("portcullis listening"))?;
    let rest = &line[line.find("listen=")? + "listen=".len()..];
    let addr = rest.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

/// A gateway config for direct use (no front proxy): listen placeholder,
/// the IdP, plain-http cookies, `default = "deny"`, and `rules` appended.
pub fn direct_config(issuer: &str, access: &str, rules: &str) -> String {
    format!(
        r#"[server]
listen = "{LISTEN_PLACEHOLDER}"
trusted_proxies = ["127.0.0.1/32"]

[oidc]
issuer = "{issuer}"
client_id = "portcullis"
scopes = ["openid", "profile", "email", "groups"]
http_timeout = "5s"

[session]
cookie_secure = false

[access]
default = "deny"
{access}

{rules}
"#
    )
}

/// [`direct_config`] with [`APP_RULES`], redirects allowed to app.example.com.
pub fn app_config(issuer: &str) -> String {
    direct_config(
        issuer,
        r#"allowed_redirect_domains = ["app.example.com"]"#,
        APP_RULES,
    )
}

/// The rules most direct tests use (host `app.example.com`).
pub const APP_RULES: &str = r#"[[rule]]
host = "app.example.com"
path = "/health"
policy = "public"

[[rule]]
host = "app.example.com"
path = "/admin"
groups = ["admins"]

[[rule]]
host = "app.example.com"
path = "/"
policy = "authenticated"
"#;
