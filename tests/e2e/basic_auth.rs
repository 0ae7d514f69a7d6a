//! HTTP Basic auth against password files made by Debian's `htpasswd -B`
//! (apache2-utils): behind real Traefik and nginx and in reverse-proxy mode,
//! a good password passes with the groups file's groups (and group rules
//! judge them), wrong passwords and unknown users get 401 with the Basic
//! challenge, Basic credentials on a rule without `basic_auth` change
//! nothing; verified credentials are not hashed again (the hash-check
//! counter of `/metrics`); failures are limited per user and per client
//! address (clients told apart by their loopback source address, as in
//! `conditions`); MD5, SHA-1, plain and crypt entries are refused by `serve`
//! and `check` with their line numbers; SIGHUP re-reads both files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;

use crate::support::echo::{Echo, Seen};
use crate::support::gateway::{direct_config, Gateway, Launch, LISTEN_PLACEHOLDER};
use crate::support::http::{raw_get, RawResponse};
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure, Proc};
use crate::support::proxy::{self, Edits, Kind, Ports};
use crate::support::{free_port, require_binary};

const CHALLENGE: &str = "Basic realm=\"portcullis\", charset=\"UTF-8\"";

/// `/dav` for the `dav` group, `/ops` for `ops`, both with Basic auth;
/// `/` any signed-in user without it; files.example.com proxied with Basic
/// auth (its `/ops` for `ops`).
fn rules(echo: u16) -> String {
    format!(
        r#"[[rule]]
host = "app.example.com"
path = "/health"
policy = "public"

[[rule]]
host = "app.example.com"
path = "/dav"
basic_auth = true
groups = ["dav"]

[[rule]]
host = "app.example.com"
path = "/ops"
basic_auth = true
groups = ["ops"]

[[rule]]
host = "app.example.com"
path = "/"
policy = "authenticated"

[[rule]]
host = "files.example.com"
path = "/ops"
basic_auth = true
groups = ["ops"]
upstream = "http://127.0.0.1:{echo}"

[[rule]]
host = "files.example.com"
basic_auth = true
upstream = "http://127.0.0.1:{echo}"
"#
    )
}

fn idp() -> &'static Idp {
    static IDP: OnceLock<Idp> = OnceLock::new();
    IDP.get_or_init(|| Idp::start(&["http://app.example.com/oauth2/callback".to_owned()]))
}

/// Runs Debian's `htpasswd` in batch mode: `flags` then `file user password`.
fn htpasswd(file: &Path, flags: &str, user: &str, password: &str) {
    let out = Command::new(require_binary("htpasswd"))
        .arg(flags)
        .arg(file)
        .arg(user)
        .arg(password)
        .output()
        .expect("run htpasswd");
    assert!(
        out.status.success(),
        "htpasswd {flags}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A password file made with `htpasswd -B` (alice, bob, carol) and a groups file.
fn password_files(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch_dir(name);
    let file = dir.join("htpasswd");
    htpasswd(&file, "-cbB", "alice", "alice-pw-1");
    htpasswd(&file, "-bB", "bob", "bob-pw-2");
    htpasswd(&file, "-bB", "carol", "carol-pw-3");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines().all(|l| l.contains(":$2y$")),
        "htpasswd -B wrote:\n{text}"
    );
    let groups = dir.join("htgroups");
    std::fs::write(&groups, "dav: alice bob carol\nops: bob\n").unwrap();
    (file, groups)
}

fn config(files: &(PathBuf, PathBuf), echo: u16) -> String {
    let access = format!(
        "allowed_redirect_domains = [\"app.example.com\"]\nhtpasswd_file = \"{}\"\nhtpasswd_groups_file = \"{}\"",
        files.0.display(),
        files.1.display()
    );
    direct_config(&idp().issuer, &access, &rules(echo))
}

struct Stack {
    gw: Gateway,
    files: (PathBuf, PathBuf),
    echo: Echo,
}

impl Stack {
    /// `kind` in front of the gateway and the echo app: its port and process.
    fn front(&self, kind: Kind) -> (u16, Proc) {
        proxy::require(kind);
        let port = free_port();
        let ports = Ports {
            proxy: port,
            gateway: self.gw.port,
            app: self.echo.port,
        };
        (port, proxy::start(kind, &ports, &Edits::default()))
    }
}

fn start(name: &str) -> Stack {
    let echo = Echo::start();
    let files = password_files(name);
    let gw = Gateway::launch(Launch {
        name,
        config: &config(&files, echo.port),
        ..Launch::default()
    });
    Stack { gw, files, echo }
}

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

/// `GET path` on `host` through `port` (a front proxy or the gateway) as an API client.
fn get(port: u16, host: &str, path: &str, auth: Option<&str>) -> RawResponse {
    let mut headers = vec![("Accept", "application/json")];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    raw_get(port, &format!("{host}:{port}"), path, &headers)
}

fn challenges(r: &RawResponse) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `portcullis_basic_auth_hash_checks_total` of the gateway.
fn hash_checks(gw: &Gateway) -> u64 {
    let r = raw_get(gw.port, &format!("127.0.0.1:{}", gw.port), "/metrics", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_basic_auth_hash_checks_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no hash-check counter in:\n{}", r.text()))
}

fn seen(r: &RawResponse) -> Seen {
    Seen::parse(&r.text()).unwrap_or_else(|| panic!("not the app ({}): {}", r.status, r.text()))
}

/// The answers every front must give for Basic credentials.
fn basic_answers(port: u16, kind: &str) {
    let host = "app.example.com";
    let r = get(
        port,
        host,
        "/dav/notes.txt",
        Some(&basic("alice", "alice-pw-1")),
    );
    assert_eq!(r.status, 200, "{kind}: {}", r.text());
    assert_eq!(
        seen(&r).identity(),
        ("alice".into(), String::new(), "dav".into()),
        "{kind}"
    );
    // The groups file decides group rules: alice is not in ops, bob is.
    let r = get(port, host, "/ops", Some(&basic("alice", "alice-pw-1")));
    assert_eq!(r.status, 403, "{kind}: {}", r.text());
    let r = get(port, host, "/ops", Some(&basic("bob", "bob-pw-2")));
    assert_eq!(r.status, 200, "{kind}: {}", r.text());
    assert_eq!(seen(&r).identity().2, "dav,ops", "{kind}");
    for (what, auth) in [
        ("wrong password", basic("alice", "alice-pw-2")),
        ("unknown user", basic("mallory", "alice-pw-1")),
        ("malformed", "Basic not-base64!".to_owned()),
    ] {
        let r = get(port, host, "/dav", Some(&auth));
        assert_eq!(r.status, 401, "{kind}, {what}: {}", r.text());
        assert!(
            Seen::parse(&r.text()).is_none(),
            "{kind}, {what}: reached the app"
        );
        assert!(r.header("location").is_none(), "{kind}, {what}: redirected");
    }
    // Basic credentials on a rule without basic_auth: a sign-in is needed, as before.
    let r = get(
        port,
        host,
        "/elsewhere",
        Some(&basic("alice", "alice-pw-1")),
    );
    assert_eq!(r.status, 401, "{kind}: {}", r.text());
}

#[tokio::test]
async fn basic_auth_behind_traefik() {
    let s = start("portcullis-basic-traefik");
    let (port, front) = s.front(Kind::Traefik);
    let _logs = LogsOnFailure(vec![&idp().proc, &s.gw.proc, &front]);
    basic_answers(port, "traefik");
    // Traefik hands portcullis's 401 to the client as it is: the challenge too.
    let r = get(
        port,
        "app.example.com",
        "/dav",
        Some(&basic("alice", "nope")),
    );
    assert_eq!(challenges(&r), vec![CHALLENGE]);
    let r = get(port, "app.example.com", "/dav", None);
    assert_eq!(r.status, 401);
    assert_eq!(challenges(&r), vec!["Bearer", CHALLENGE]);
    let log = s.gw.log();
    assert!(log.contains("basic auth failed"), "{log}");
    assert!(!log.contains("alice-pw-2"), "a password was logged:\n{log}");

    // A client sending the header on every request costs one hash check.
    let before = hash_checks(&s.gw);
    for _ in 0..20 {
        let r = get(
            port,
            "app.example.com",
            "/dav/x",
            Some(&basic("carol", "carol-pw-3")),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(hash_checks(&s.gw) - before, 1);
}

#[tokio::test]
async fn basic_auth_behind_nginx() {
    let s = start("portcullis-basic-nginx");
    let (port, front) = s.front(Kind::Nginx);
    let _logs = LogsOnFailure(vec![&idp().proc, &s.gw.proc, &front]);
    basic_answers(port, "nginx");
    let r = get(
        port,
        "app.example.com",
        "/dav",
        Some(&basic("alice", "nope")),
    );
    assert_eq!(challenges(&r), vec![CHALLENGE], "{r:?}");
}

#[tokio::test]
async fn basic_auth_in_reverse_proxy_mode() {
    let s = start("portcullis-basic-proxy");
    let _logs = LogsOnFailure(vec![&idp().proc, &s.gw.proc]);
    let host = "files.example.com";
    let r = get(s.gw.port, host, "/a", Some(&basic("bob", "bob-pw-2")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        seen(&r).identity(),
        ("bob".into(), String::new(), "dav,ops".into())
    );
    let r = get(s.gw.port, host, "/a", Some(&basic("bob", "alice-pw-1")));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(challenges(&r), vec![CHALLENGE]);
    let r = get(s.gw.port, host, "/a", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(challenges(&r), vec!["Bearer", CHALLENGE]);
}

/// `GET /dav` through the front on `port`, sent from `source`: the status
/// and the `Retry-After` header.
async fn dav_from(port: u16, source: [u8; 4], auth: &str) -> (u16, Option<u64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(source), 0).into())
        .unwrap();
    let mut s = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let req = format!(
        "GET /dav HTTP/1.1\r\nHost: app.example.com:{port}\r\nAccept: application/json\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let retry = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().parse().ok())?
    });
    (status, retry)
}

#[tokio::test]
async fn failed_attempts_are_limited_per_user_and_per_address() {
    let s = start("portcullis-basic-limit");
    let (port, front) = s.front(Kind::Traefik);
    let _logs = LogsOnFailure(vec![&idp().proc, &s.gw.proc, &front]);
    let guesser = [127, 0, 0, 4];
    let owner = [127, 0, 0, 5];
    let other = [127, 0, 0, 6];
    for n in 0..5 {
        let (st, _) = dav_from(port, guesser, &basic("carol", &format!("guess-{n}"))).await;
        assert_eq!(st, 401, "guess {n}");
    }
    let checks = hash_checks(&s.gw);
    // carol's own password, from her own address: the user is limited.
    let (st, retry) = dav_from(port, owner, &basic("carol", "carol-pw-3")).await;
    assert_eq!(st, 429);
    assert!(retry.is_some_and(|r| (1..=60).contains(&r)), "{retry:?}");
    // Another user from the guessing address: the address is limited.
    let (st, _) = dav_from(port, guesser, &basic("alice", "alice-pw-1")).await;
    assert_eq!(st, 429);
    assert_eq!(hash_checks(&s.gw), checks, "a limited attempt ran a hash");
    // Another user from another address is not affected.
    let (st, _) = dav_from(port, other, &basic("alice", "alice-pw-1")).await;
    assert_eq!(st, 200);
    let log = s.gw.log();
    assert!(log.contains("too many failed attempts"), "{log}");
    assert!(
        log.contains("127.0.0.4"),
        "the log names the client address:\n{log}"
    );
}

#[test]
fn refused_hashes_are_named_with_their_line_numbers() {
    let dir = scratch_dir("basic-refused");
    let file = dir.join("htpasswd");
    htpasswd(&file, "-cbB", "alice", "alice-pw-1"); // line 1: fine
    htpasswd(&file, "-bm", "bob", "x"); // line 2: MD5 (apr1)
    htpasswd(&file, "-bs", "carol", "x"); // line 3: SHA-1
    htpasswd(&file, "-bp", "dave", "plaintext-pw"); // line 4: plain
    htpasswd(&file, "-bd", "erin", "x"); // line 5: crypt
    let text = std::fs::read_to_string(&file).unwrap();
    let config = direct_config(
        &idp().issuer,
        &format!("htpasswd_file = \"{}\"", file.display()),
        "[[rule]]\nhost = \"app.example.com\"\nbasic_auth = true\n",
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config.replace(LISTEN_PLACEHOLDER, "127.0.0.1:0")).unwrap();
    for command in ["check", "serve"] {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg(command)
            .arg("--config")
            .arg(&path)
            .env("PORTCULLIS_OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env(
                "PORTCULLIS_SESSION_SECRET",
                crate::support::gateway::SESSION_SECRET,
            )
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{command} accepted:\n{said}");
        for (line, user, kind) in [
            (2, "bob", "MD5"),
            (3, "carol", "SHA-1"),
            (4, "dave", "plain-text"),
            (5, "erin", "DES crypt"),
        ] {
            let found = said.lines().any(|l| {
                l.contains("access.htpasswd_file")
                    && l.contains(&format!("line {line}:"))
                    && l.contains(&format!("\"{user}\""))
                    && l.contains(kind)
            });
            assert!(
                found,
                "{command}: line {line} ({kind}) not reported:\n{said}\nfile:\n{text}"
            );
        }
        assert!(
            !said.contains("line 1:"),
            "{command}: bcrypt refused:\n{said}"
        );
        assert!(
            !said.contains("plaintext-pw"),
            "{command} echoed a password:\n{said}"
        );
    }
}

#[tokio::test]
async fn sighup_rereads_the_password_and_groups_files() {
    let s = start("portcullis-basic-reload");
    let _logs = LogsOnFailure(vec![&idp().proc, &s.gw.proc]);
    let host = "files.example.com";
    let old = basic("alice", "alice-pw-1");
    assert_eq!(get(s.gw.port, host, "/", Some(&old)).status, 200);
    assert_eq!(get(s.gw.port, host, "/ops", Some(&old)).status, 403);

    // A new password for alice, and alice joins ops.
    htpasswd(&s.files.0, "-bB", "alice", "alice-pw-new");
    std::fs::write(&s.files.1, "dav: alice bob carol\nops: bob alice\n").unwrap();
    s.gw.hup();
    s.gw.wait_log("configuration reloaded", 1);
    // The old password was verified (and cached) before; it no longer counts.
    let r = get(s.gw.port, host, "/", Some(&old));
    assert_eq!(r.status, 401, "{}", r.text());
    let new = basic("alice", "alice-pw-new");
    let r = get(s.gw.port, host, "/ops", Some(&new));
    assert_eq!(r.status, 200, "{}", r.text());

    // A refused entry: the reload is refused and the running files stay.
    let mut text = std::fs::read_to_string(&s.files.0).unwrap();
    text.push_str("mallory:$apr1$ahmAwEGD$U.1opusfy8dR9yB192vq.1\n");
    std::fs::write(&s.files.0, text).unwrap();
    s.gw.hup();
    s.gw.wait_log("reload refused", 1);
    let log = s.gw.log();
    assert!(log.contains("line 4"), "{log}");
    assert_eq!(get(s.gw.port, host, "/", Some(&new)).status, 200);
}
