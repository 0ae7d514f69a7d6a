//! `portcullis check` against the real IdP configured in deliberately broken
//! ways: each case asserts the exact line the operator would read, and the
//! exit code (1 on any FAIL, 0 otherwise).
//!
//! Four IdPs cover every case: a good one (Authentik-style issuer with a
//! trailing slash), one with an empty JWKS, no `groups` scope and a clock
//! five minutes ahead, one whose users carry no groups claim (for
//! `--login`), and one served over self-signed TLS.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::json;

use crate::support::browser::{Browser, Nav};
use crate::support::free_port;
use crate::support::gateway::{Gateway, Launch, APP_RULES, LISTEN_PLACEHOLDER, SESSION_SECRET};
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure};
use crate::support::redis::Redis;
use crate::support::wait_for;

const ISSUER_PATH: &str = "/application/o/portcullis/";

/// The port in the registered redirect URI (nothing listens there: `check`
/// only computes the URI and asks the IdP about it).
fn auth_port() -> u16 {
    static P: OnceLock<u16> = OnceLock::new();
    *P.get_or_init(free_port)
}

/// The port of a gateway on the broken IdP (also registered there).
fn broken_port() -> u16 {
    static P: OnceLock<u16> = OnceLock::new();
    *P.get_or_init(free_port)
}

fn registered() -> Vec<String> {
    [auth_port(), broken_port()]
        .iter()
        .map(|p| format!("http://auth.example.com:{p}/oauth2/callback"))
        .collect()
}

fn good_idp() -> &'static Idp {
    static I: OnceLock<Idp> = OnceLock::new();
    I.get_or_init(|| Idp::start_with(&registered(), json!({"issuer_path": ISSUER_PATH})))
}

fn broken_idp() -> &'static Idp {
    static I: OnceLock<Idp> = OnceLock::new();
    I.get_or_init(|| {
        Idp::start_with(
            &registered(),
            json!({"empty_jwks": true, "no_groups_scope": true, "clock_skew_seconds": 300}),
        )
    })
}

/// What the operator writes, with the parts a case changes as parameters.
struct Cfg<'a> {
    issuer: &'a str,
    external_url: String,
    scopes: &'a str,
    extra_server: &'a str,
    /// Appended to `[oidc]` (e.g. `[[oidc.bearer_issuers]]` tables).
    extra_oidc: String,
    /// Appended to `[session]`.
    extra_session: String,
}

impl Cfg<'_> {
    fn new(issuer: &str) -> Cfg<'_> {
        Cfg {
            issuer,
            external_url: format!("http://auth.example.com:{}", auth_port()),
            scopes: r#"["openid", "profile", "email", "groups"]"#,
            extra_server: "",
            extra_oidc: String::new(),
            extra_session: String::new(),
        }
    }

    fn text(&self) -> String {
        format!(
            r#"[server]
listen = "{LISTEN_PLACEHOLDER}"
external_url = "{}"
{}

[oidc]
issuer = "{}"
client_id = "portcullis"
scopes = {}
{}

[session]
cookie_secure = false
cookie_domain = "example.com"
{}

[access]
default = "deny"
allowed_redirect_domains = [".example.com"]

{APP_RULES}"#,
            self.external_url,
            self.extra_server,
            self.issuer,
            self.scopes,
            self.extra_oidc,
            self.extra_session
        )
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// The one line of `check`, panicking with the whole output when absent.
    fn line(&self, check: &str) -> &str {
        let found: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| {
                l.get(5..)
                    .is_some_and(|r| r.starts_with(&format!("{check}: ")))
            })
            .collect();
        assert_eq!(found.len(), 1, "expected one `{check}` line:\n{self}");
        found[0]
    }

    fn assert_line(&self, expected: &str) {
        let check = expected[5..].split(": ").next().unwrap();
        assert_eq!(self.line(check), expected, "\n{self}");
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn command(config: &str, args: &[&str]) -> Command {
    let dir = scratch_dir("check");
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("check").arg("--config").arg(&path).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PORTCULLIS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("PORTCULLIS_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("PORTCULLIS_SESSION_SECRET", SESSION_SECRET)
        .env("NO_COLOR", "1")
        .current_dir(&dir);
    cmd
}

fn check(config: &str, args: &[&str]) -> Outcome {
    let out = command(config, args)
        .output()
        .expect("run portcullis check");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const SCOPE_FIX: &str = "create a `groups` scope at the IdP that releases the groups claim (Authentik: a scope mapping named groups returning [g.name for g in request.user.ak_groups.all()]), or drop it from oidc.scopes and point oidc.groups_claim at the claim your IdP uses (e.g. realm_access.roles)";

#[test]
fn good_config_passes_with_exit_0() {
    let idp = good_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    let mut cfg = Cfg::new(&idp.issuer);
    // An extra bearer issuer whose keys are at a given URL.
    cfg.extra_oidc = format!(
        "[[oidc.bearer_issuers]]\nissuer = \"https://kubernetes.default.svc\"\njwks_url = \"{}jwks\"\naudiences = [\"api\"]\n",
        idp.issuer
    );
    let out = check(&cfg.text(), &[]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.lines().iter().all(|l| l.starts_with("ok   ")),
        "every line ok:\n{out}"
    );
    let port = auth_port();
    out.assert_line(&format!(
        "ok   issuer: oidc.issuer matches the discovery document's issuer \"{}\" byte for byte",
        idp.issuer
    ));
    out.assert_line(&format!("ok   redirect_uri: portcullis sends http://auth.example.com:{port}/oauth2/callback; register exactly this redirect URI at the IdP"));
    out.assert_line(&format!("ok   authorize: the IdP accepts client \"portcullis\" with redirect URI http://auth.example.com:{port}/oauth2/callback"));
    out.assert_line(
        "ok   scopes: openid, profile, email, groups all in the IdP's scopes_supported",
    );
    out.assert_line("ok   groups scope: requested; rules using groups: rule[1]");
    out.assert_line("ok   cookie_domain: session.cookie_domain = \"example.com\" covers auth.example.com, app.example.com");
    out.assert_line("ok   redirect_domains: access.allowed_redirect_domains covers every app host");
    out.assert_line("ok   session store: memory: sessions live in this process only (lost on restart, not shared between instances)");
    for check in [
        "dns",
        "tcp",
        "discovery",
        "clock",
        "jwks",
        "signing",
        "offline_access",
    ] {
        out.line(check);
    }
    assert!(out.line("jwks").contains("1 signing key(s)"), "{out}");
    assert!(
        out.line("bearer_issuers[0]").starts_with(&format!(
            "ok   bearer_issuers[0]: 1 signing key(s) at {}jwks (RS256 kid=",
            idp.issuer
        )),
        "{out}"
    );

    // The same as JSON for machines.
    let json = check(&cfg.text(), &["--json"]);
    assert_eq!(json.code, Some(0), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("--json prints JSON");
    let items = v.as_array().expect("an array");
    assert_eq!(items.len(), out.lines().len(), "{json}");
    let issuer = items.iter().find(|i| i["check"] == "issuer").unwrap();
    assert_eq!(issuer["status"], "ok");
    assert!(issuer["fix"].is_null());
}

#[test]
fn issuer_without_trailing_slash() {
    let idp = good_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    let without = idp.issuer.trim_end_matches('/');
    let out = check(&Cfg::new(without).text(), &["--json"]);
    assert_eq!(out.code, Some(1), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let issuer = v
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["check"] == "issuer")
        .unwrap()
        .clone();
    assert_eq!(
        issuer,
        json!({
            "check": "issuer",
            "status": "fail",
            "detail": format!("oidc.issuer \"{without}\" lacks the trailing slash of the discovery document's issuer \"{}\"; ID tokens carry the issuer byte for byte, so every login would fail", idp.issuer),
            "fix": format!("set oidc.issuer = \"{}\" exactly", idp.issuer),
        })
    );
    let text = check(&Cfg::new(without).text(), &[]);
    text.assert_line(&format!("FAIL issuer: oidc.issuer \"{without}\" lacks the trailing slash of the discovery document's issuer \"{}\"; ID tokens carry the issuer byte for byte, so every login would fail — fix: set oidc.issuer = \"{}\" exactly", idp.issuer, idp.issuer));
    assert!(text.stderr.contains("check(s) failed"), "{text}");
}

#[test]
fn unreachable_host() {
    let out = check(&Cfg::new("https://portcullis-check.invalid/").text(), &[]);
    assert_eq!(out.code, Some(1), "{out}");
    let fix = "check the host name in oidc.issuer; if it resolves on your laptop but not here, this host uses other DNS servers (split DNS, container DNS): add the name there or to /etc/hosts";
    let line = out.line("dns");
    assert!(
        line == format!("FAIL dns: cannot resolve portcullis-check.invalid: no such host — fix: {fix}")
            || line == format!("FAIL dns: cannot resolve portcullis-check.invalid: the DNS server did not answer (temporary failure) — fix: {fix}"),
        "{out}"
    );
    // Nothing that needs the IdP is claimed to work.
    for c in ["tcp", "discovery", "issuer", "authorize"] {
        assert!(!out.stdout.contains(&format!(" {c}: ")), "{out}");
    }
}

#[test]
fn wrong_port() {
    let port = free_port();
    let out = check(&Cfg::new(&format!("http://127.0.0.1:{port}/")).text(), &[]);
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_line(&format!("FAIL tcp: 127.0.0.1:{port} refused the connection (nothing listens on port {port}) — fix: check the port in oidc.issuer and that the IdP is running and listening on that address"));
}

#[test]
fn tls_failure_self_signed() {
    let dir = scratch_dir("idp-tls");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let idp = Idp::start_with(
        &registered(),
        json!({"tls": {"cert": dir.join("cert.pem"), "key": dir.join("key.pem")}}),
    );
    assert!(idp.issuer.starts_with("https://"), "{}", idp.issuer);
    let out = check(&Cfg::new(&idp.issuer).text(), &[]);
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_line("FAIL tls: handshake with 127.0.0.1 failed: invalid peer certificate: UnknownIssuer — fix: the IdP's certificate is not signed by a public CA (self-signed or a private CA): portcullis trusts the public web PKI (Mozilla's roots), so give the IdP a certificate from a public CA such as Let's Encrypt, and serve the full chain");
    assert!(!out.stdout.contains(" discovery: "), "{out}");
}

#[test]
fn jwks_without_keys() {
    let idp = broken_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    let out = check(&Cfg::new(&idp.issuer).text(), &[]);
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_line(&format!("FAIL jwks: {}/jwks has no keys — fix: attach a signing key to this client at the IdP (Authentik: the provider's Signing Key; Keycloak: an active RS256 realm key) so ID tokens are signed with RS256 or ES256", idp.issuer));
}

#[test]
fn groups_scope_not_supported() {
    let idp = broken_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    let out = check(&Cfg::new(&idp.issuer).text(), &[]);
    out.assert_line(&format!("warn scopes: groups is not among the IdP's scopes_supported (openid, offline_access, profile, email); the IdP may reject the login or ignore it — fix: {SCOPE_FIX}"));
}

#[test]
fn groups_scope_not_requested() {
    let idp = good_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    let mut cfg = Cfg::new(&idp.issuer);
    cfg.scopes = r#"["openid", "profile", "email"]"#;
    let out = check(&cfg.text(), &[]);
    // A warning: some IdPs put groups into the profile scope.
    assert_eq!(out.code, Some(0), "{out}");
    out.assert_line("warn groups scope: rules use groups (rule[1]) but oidc.scopes does not request the `groups` scope, so most IdPs send no groups claim — fix: add \"groups\" to oidc.scopes (or, if your IdP puts groups elsewhere, point oidc.groups_claim at that claim)");
}

#[test]
fn clock_skew() {
    let idp = broken_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    let out = check(&Cfg::new(&idp.issuer).text(), &[]);
    out.assert_line("FAIL clock: the IdP's clock is about 300 s ahead of this host's, more than oidc.clock_leeway = 60 s — fix: synchronise both clocks with NTP (chrony, systemd-timesyncd); ID tokens from a clock that runs ahead are rejected as issued in the future, from one that runs behind as expired");
}

#[test]
fn redirect_uri_not_registered() {
    let idp = good_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    let mut cfg = Cfg::new(&idp.issuer);
    // A different port than the one registered: the IdP shows its own error page.
    let other = free_port();
    cfg.external_url = format!("http://auth.example.com:{other}");
    let out = check(&cfg.text(), &[]);
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_line(&format!("FAIL authorize: instead of its login page, the IdP shows an error page (the browser never comes back to portcullis) for redirect URI http://auth.example.com:{other}/oauth2/callback: 400 invalid_redirect_uri: redirect_uri did not match any of the client's registered redirect_uris — fix: register exactly http://auth.example.com:{other}/oauth2/callback as a redirect URI of client \"portcullis\" at the IdP (scheme, host, port, path and trailing slash must all match)"));
}

#[test]
fn serve_logs_the_same_findings_once_at_start_up() {
    let idp = good_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    let without = idp.issuer.trim_end_matches('/');
    let gw = Gateway::launch(Launch {
        name: "portcullis-startup-check",
        config: &Cfg::new(without).text(),
        wait_ready: false,
        ..Launch::default()
    });
    wait_for(
        "start-up checks",
        || gw.proc.check_alive(),
        || {
            gw.log()
                .contains("start-up checks found problems")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    let log = gw.log();
    let issuer: Vec<&str> = log.lines().filter(|l| l.contains("check=issuer")).collect();
    assert_eq!(issuer.len(), 1, "{log}");
    assert!(issuer[0].contains(" WARN "), "{log}");
    assert!(issuer[0].contains("lacks the trailing slash"), "{log}");
    assert!(
        issuer[0].contains(&format!("set oidc.issuer = \\\"{}\\\" exactly", idp.issuer)),
        "{log}"
    );
    assert!(
        log.contains("run `portcullis check` for the full report"),
        "{log}"
    );
    // The debug endpoint is off unless enabled.
    let off = crate::support::http::raw_get(gw.port, "app.example.com", "/oauth2/debug", &[]);
    assert_eq!(off.status, 404, "{off:?}");
}

/// Lines of a gateway's log carrying `diagnosis=NAME`.
fn diagnoses(gw: &Gateway, name: &str) -> Vec<String> {
    gw.log()
        .lines()
        .filter(|l| l.contains(&format!("diagnosis=\"{name}\"")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn serve_diagnoses_a_rejected_redirect_uri_once() {
    let idp = good_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    let port = free_port();
    let mut cfg = Cfg::new(&idp.issuer);
    cfg.external_url = format!("http://auth.example.com:{port}");
    let gw = Gateway::launch(Launch {
        name: "portcullis-unregistered",
        config: &cfg.text(),
        port: Some(port),
        ..Launch::default()
    });
    for _ in 0..2 {
        let page = Browser::new()
            .open(&format!("http://auth.example.com:{port}/oauth2/start?rd=/"))
            .await;
        assert_eq!(page.status, 400, "the IdP's own error page:\n{page}");
        assert!(page.body.contains("invalid_redirect_uri"), "{page}");
    }
    let found = wait_for(
        "redirect URI diagnosis",
        || gw.proc.check_alive(),
        || {
            let d = diagnoses(&gw, "redirect_uri_rejected");
            (!d.is_empty()).then_some(d)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    assert_eq!(found.len(), 1, "logged once:\n{}", gw.log());
    let line = &found[0];
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains(&format!("redirect URI http://auth.example.com:{port}/oauth2/callback (400 invalid_redirect_uri: redirect_uri did not match any of the client's registered redirect_uris)")), "{line}");
    assert!(
        line.contains("register exactly this redirect URI"),
        "{line}"
    );
}

/// The one gateway that listens on the registered redirect URI's port,
/// with the debug endpoint on.
fn registered_gateway() -> &'static Gateway {
    static G: OnceLock<Gateway> = OnceLock::new();
    G.get_or_init(|| {
        let mut cfg = Cfg::new(&good_idp().issuer);
        cfg.extra_server = "debug_endpoint = true";
        Gateway::launch(Launch {
            name: "portcullis-registered",
            config: &cfg.text(),
            port: Some(auth_port()),
            ..Launch::default()
        })
    })
}

#[tokio::test]
async fn serve_diagnoses_an_empty_groups_claim_once() {
    let idp = good_idp();
    let gw = registered_gateway();
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    let port = gw.port;
    for _ in 0..2 {
        let page = Browser::new()
            .open_as(
                &format!("http://auth.example.com:{port}/oauth2/start?rd=/"),
                "carol",
            )
            .await;
        assert!(
            page.hops.iter().any(|h| h.contains("/oauth2/callback")),
            "{page}"
        );
    }
    let found = diagnoses(gw, "empty_groups_claim");
    assert_eq!(found.len(), 1, "logged once:\n{}", gw.log());
    assert!(
        found[0].contains(
            "the groups claim `groups` is empty for user \"carol\" while rules need groups"
        ),
        "{}",
        found[0]
    );
    assert!(found[0].contains("ak_groups"), "{}", found[0]);
}

#[tokio::test]
async fn login_shows_claims_and_a_groups_claim_absent_everywhere() {
    let cb = free_port();
    let idp = Idp::start_with(
        &[format!("http://127.0.0.1:{cb}/oauth2/callback")],
        json!({"no_groups_claim": true}),
    );
    let config = format!(
        r#"[server]
external_url = "http://127.0.0.1:{cb}"

[oidc]
issuer = "{}"
client_id = "portcullis"

[session]
cookie_secure = false

[access]
allowed_redirect_domains = [".example.com"]

{APP_RULES}"#,
        idp.issuer
    );
    let mut child = command(&config, &["--login"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run portcullis check --login");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut before = String::new();
    let url = loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("no login URL printed:\n{before}");
        }
        before.push_str(&line);
        if line.starts_with("http://127.0.0.1") && line.contains("/auth?") {
            break line.trim().to_owned();
        }
    };
    assert!(
        before.contains(&format!(
            "Open this URL in a browser and sign in (waiting 300 s; redirect URI http://127.0.0.1:{cb}/oauth2/callback):"
        )),
        "{before}"
    );
    let page = Browser::new().open_as(&url, "carol").await;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.body.contains("login received"), "{page}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let out = Outcome {
        code: status.code(),
        stdout: format!("{before}{rest}"),
        stderr: String::new(),
    };
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_line(
        "ok   login: signed in as \"carol\" through http://127.0.0.1:{cb}/oauth2/callback"
            .replace("{cb}", &cb.to_string())
            .as_str(),
    );
    out.assert_line("FAIL groups claim: the groups claim `groups` is in neither the ID token nor userinfo, and rules need groups (rule[1]) — fix: request the `groups` scope (oidc.scopes), map groups into the token at the IdP (Authentik: a scope mapping returning [g.name for g in request.user.ak_groups.all()]), or point oidc.groups_claim at the claim your IdP uses (e.g. realm_access.roles); `portcullis check --login` shows the claims received");
    // The claims side by side: email only in userinfo (oidc-provider's default), sub in both.
    let row = |name: &str| -> Vec<String> {
        let line = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no `{name}` row:\n{out}"));
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    assert_eq!(row("sub"), ["\"carol\"", "\"carol\""], "{out}");
    assert_eq!(row("email"), ["-", "\"carol@example.com\""], "{out}");
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("groups ")),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("identity: user \"carol\", email \"carol@example.com\", groups []"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("rule rule[0] (app.example.com /health): public"),
        "{out}"
    );
    assert!(out.stdout.contains("rule rule[1] (app.example.com /admin): DENIED (needs one of groups: admins, or a listed user/email)"), "{out}");
    assert!(
        out.stdout
            .contains("rule rule[2] (app.example.com /): passes"),
        "{out}"
    );
}

#[tokio::test]
async fn debug_endpoint_shows_own_identity_claims_and_rule() {
    let idp = good_idp();
    let gw = registered_gateway();
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    let port = gw.port;
    let debug = format!("http://app.example.com:{port}/oauth2/debug?path=/admin/users");
    let b = Browser::new();
    let anonymous = b.get(&debug).await;
    assert_eq!(anonymous.status, 401, "{anonymous}");
    assert!(!anonymous.body.contains("alice"), "{anonymous}");

    let page = b
        .open_as(
            &format!(
                "http://auth.example.com:{port}/oauth2/start?rd=http://app.example.com:{port}/"
            ),
            "alice",
        )
        .await;
    assert!(
        page.hops.iter().any(|h| h.contains("/oauth2/callback")),
        "{page}"
    );
    let page = b.get(&debug).await;
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(page.header("cache-control"), Some("no-store"), "{page}");
    let v: serde_json::Value = serde_json::from_str(&page.body).expect("JSON");
    assert_eq!(
        v["identity"],
        json!({"user": "alice", "email": "alice@example.com", "groups": ["admins", "staff"]})
    );
    assert_eq!(v["claims"]["id_token"]["sub"], "alice", "{v:#}");
    assert_eq!(v["claims"]["id_token"]["iss"], idp.issuer.as_str(), "{v:#}");
    // The IdP releases groups through userinfo only (fetched now).
    assert!(v["claims"]["id_token"].get("groups").is_none(), "{v:#}");
    assert_eq!(
        v["claims"]["userinfo"]["groups"],
        json!(["admins", "staff"]),
        "{v:#}"
    );
    assert_eq!(
        v["request"],
        json!({"host": "app.example.com", "path": "/admin/users", "method": "GET", "client": "127.0.0.1"})
    );
    assert_eq!(v["rule"]["name"], "rule[1]", "{v:#}");
    assert_eq!(v["rule"]["groups"], json!(["admins"]), "{v:#}");
    assert_eq!(v["rule"]["permits_you"], true, "{v:#}");
    // Never a token or a cookie.
    assert!(!page.body.contains("eyJ"), "{page}");
    assert!(!page.body.contains("_portcullis"), "{page}");
}

#[tokio::test]
async fn serve_diagnoses_invalid_grant_once() {
    let idp = good_idp();
    let gw = registered_gateway();
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    let port = gw.port;
    let b = Browser::new();
    let is_callback = |u: &url::Url| u.path() == "/oauth2/callback";
    let page = b
        .navigate(
            &format!("http://auth.example.com:{port}/oauth2/start?rd=/"),
            Nav {
                login: Some("bob"),
                stop_before: Some(&is_callback),
            },
        )
        .await;
    let callback = page.next.clone().unwrap_or_else(|| panic!("{page}"));
    let flow: Vec<String> = b
        .cookies(&callback)
        .into_iter()
        .filter(|(k, _)| k.starts_with("_portcullis_flow_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(b.get(&callback).await.status, 302);
    // The spent code twice more, with the flow cookie: invalid_grant each time.
    for _ in 0..2 {
        let page = Browser::new()
            .get_with(&callback, &[("Cookie", flow[0].as_str())])
            .await;
        assert_eq!(page.status, 400, "{page}");
    }
    let found = diagnoses(gw, "invalid_grant");
    assert_eq!(found.len(), 1, "logged once:\n{}", gw.log());
    assert!(
        found[0].contains("the token endpoint refused the authorization code (invalid_grant: "),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("authorization codes are single-use"),
        "{}",
        found[0]
    );
}

#[tokio::test]
async fn serve_diagnoses_a_signing_key_missing_from_the_jwks_once() {
    let idp = broken_idp();
    let port = broken_port();
    let mut cfg = Cfg::new(&idp.issuer);
    cfg.external_url = format!("http://auth.example.com:{port}");
    let gw = Gateway::launch(Launch {
        name: "portcullis-no-keys",
        config: &cfg.text(),
        port: Some(port),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc]);
    for _ in 0..2 {
        let page = Browser::new()
            .open_as(
                &format!("http://auth.example.com:{port}/oauth2/start?rd=/"),
                "alice",
            )
            .await;
        assert_eq!(page.status, 502, "{page}");
    }
    let found = diagnoses(&gw, "jwks_missing_kid");
    assert_eq!(found.len(), 1, "logged once:\n{}", gw.log());
    assert!(found[0].contains("an ID token is signed with a key the IdP's JWKS does not list, even after refetching it"), "{}", found[0]);
}

#[test]
fn redis_store_up_wrong_password_and_down() {
    let idp = good_idp();
    let redis = Redis::start();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    assert_eq!(
        redis
            .cli(&["CONFIG", "SET", "requirepass", "right-password-0123"])
            .trim(),
        "OK"
    );
    let port = redis.port;
    let with = |password: &str| {
        let mut cfg = Cfg::new(&idp.issuer);
        cfg.extra_session =
            format!("store = \"redis\"\nredis_url = \"redis://:{password}@127.0.0.1:{port}/0\"");
        cfg.text()
    };
    let up = check(&with("right-password-0123"), &[]);
    assert_eq!(up.code, Some(0), "{up}");
    assert!(
        up.line("session store").starts_with(&format!(
            "ok   session store: redis at redis://127.0.0.1:{port}/0 answered PING in "
        )),
        "{up}"
    );
    assert!(!up.stdout.contains("right-password"), "{up}");

    let wrong = check(&with("wrong-password-4567"), &[]);
    assert_eq!(wrong.code, Some(1), "{wrong}");
    wrong.assert_line(&format!("FAIL session store: redis at redis://127.0.0.1:{port}/0 refused the credentials: Password authentication failed - AuthenticationFailed — fix: put a user and password Redis accepts into session.redis_url (redis://USER:PASSWORD@HOST:PORT/DB; just :PASSWORD@ for requirepass)"));
    assert!(!wrong.stdout.contains("wrong-password"), "{wrong}");

    // rediss:// to a port that speaks plain Redis.
    let tls = check(
        &with("right-password-0123").replace("redis://", "rediss://"),
        &[],
    );
    assert_eq!(tls.code, Some(1), "{tls}");
    tls.assert_line(&format!("FAIL session store: redis at rediss://127.0.0.1:{port}/0 did not answer the TLS handshake (timed out); the port may speak plain Redis — fix: use rediss:// only for a TLS port (redis:// otherwise), and give Redis a certificate this host trusts for that name"));

    redis.stop();
    let down = check(&with("right-password-0123"), &[]);
    assert_eq!(down.code, Some(1), "{down}");
    down.assert_line(&format!("FAIL session store: redis at redis://127.0.0.1:{port}/0 is unreachable: Connection refused (os error 111) — fix: start Redis, or correct the host and port in session.redis_url; it must be reachable from where portcullis runs (firewall, container network)"));
}

#[test]
fn an_invalid_config_is_one_fail_line_per_problem() {
    let out = check(
        "[server]\nlisten = \"nope\"\n[oidc]\nissuer = \"https://idp.example.com/\"\nclient_id = \"c\"\n[session]\n[[rule]]\nhost = \"*.example..com\"\n",
        &[],
    );
    assert_eq!(out.code, Some(1), "{out}");
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines.iter().all(|l| l.starts_with("FAIL config: ")),
        "{out}"
    );
    assert!(out.stdout.contains("server.listen"), "{out}");
    assert!(out.stdout.contains("rule[0].host"), "{out}");
    assert!(
        lines[0].ends_with(" — fix: correct the config file; `serve` refuses it as it is"),
        "{out}"
    );
}

#[tokio::test]
async fn serve_diagnoses_clock_skew_on_id_tokens_once() {
    let port = free_port();
    let idp = Idp::start_with(
        &[format!("http://auth.example.com:{port}/oauth2/callback")],
        json!({"clock_ahead_seconds": 600}),
    );
    let mut cfg = Cfg::new(&idp.issuer);
    cfg.external_url = format!("http://auth.example.com:{port}");
    let gw = Gateway::launch(Launch {
        name: "portcullis-skew",
        config: &cfg.text(),
        port: Some(port),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc]);
    for _ in 0..2 {
        let page = Browser::new()
            .open_as(
                &format!("http://auth.example.com:{port}/oauth2/start?rd=/"),
                "alice",
            )
            .await;
        assert_eq!(page.status, 502, "{page}");
    }
    let found = diagnoses(&gw, "clock_skew");
    assert_eq!(found.len(), 1, "logged once:\n{}", gw.log());
    assert!(
        found[0].contains("an ID token was rejected for its times"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("issued in the future"), "{}", found[0]);
    assert!(found[0].contains("synchronise the clocks"), "{}", found[0]);
}

/// A rule an earlier one covers can never match: `serve` refuses such a
/// config at start-up, so `check` must fail it too, naming both rules,
/// instead of passing a config that will not run.
#[test]
fn a_rule_that_can_never_match_fails_check_as_serve_refuses_it() {
    let idp = good_idp();
    let _logs = LogsOnFailure(vec![&idp.proc]);
    // rule[1] (/admin, group admins) takes every request under /admin.
    let text = format!(
        "{}\n[[rule]]\nname = \"billing\"\nhost = \"app.example.com\"\npath = \"/admin/billing\"\ngroups = [\"finance\"]\n",
        Cfg::new(&idp.issuer).text()
    );
    let out = check(&text, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    let line = out.line("rules");
    assert!(line.starts_with("FAIL rules: "), "{line}");
    assert!(line.contains("\"billing\""), "{line}");
    assert!(line.contains("can never match"), "{line}");
    assert!(line.contains("rule[1]"), "{line}");

    // `serve` with the same file stops at start-up with the same cause.
    let dir = scratch_dir("check-dead-rule");
    let path = dir.join("portcullis.toml");
    // Port 0: were the rules accepted, it would not collide with anything.
    let serve_text = text.replace(&format!("\"{LISTEN_PLACEHOLDER}\""), "\"127.0.0.1:0\"");
    std::fs::write(&path, serve_text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("PORTCULLIS_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("PORTCULLIS_SESSION_SECRET", SESSION_SECRET)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start portcullis serve");
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().expect("poll portcullis serve") {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("portcullis serve output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.is_some_and(|s| !s.success()),
        "serve kept running or succeeded:\n{stderr}"
    );
    assert!(stderr.contains("can never match"), "{stderr}");
}
