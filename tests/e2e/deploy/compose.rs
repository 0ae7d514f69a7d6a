//! deploy/compose: the compose file's settings (non-root, read-only,
//! secrets as files, pinned images, the config mounted read-only, addresses
//! that agree with portcullis.toml), and its Traefik labels made real.
//!
//! The labels of every service with `traefik.enable=true` are turned into
//! Traefik's file-provider configuration one to one
//! (`traefik.http.middlewares.portcullis.forwardAuth.address=...` becomes
//! `http.middlewares.portcullis.forwardAuth.address`); only what the Docker
//! provider adds on its own is supplied by the test: each service's servers
//! (the test's processes instead of the containers' port label) and the
//! compose host names in the forwardAuth address. Real Traefik runs with the
//! traefik service's `command:` flags as written (its entry point on a test
//! port, a file provider added), in front of two real gateways started from
//! deploy/compose/portcullis.toml sharing a real Redis, the real test IdP
//! and the echo app. Through it: a request without a session is sent to the
//! login, a login works and the app sees the identity, client identity
//! headers in every spelling never reach the app, and a client's
//! `X-Original-URL` cannot change the verdict.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Map, Value};

use super::{repo_file, yaml_file};
use crate::support::browser::Browser;
use crate::support::echo::{Echo, Seen};
use crate::support::gateway::{Gateway, Launch, LISTEN_PLACEHOLDER, SESSION_SECRET};
use crate::support::http::{probe, raw_get, RawResponse};
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure, Proc};
use crate::support::redis::Redis;
use crate::support::{free_port, require_binary, subst, wait_for};

const COMPOSE: &str = "deploy/compose/compose.yaml";
const CONFIG: &str = "deploy/compose/portcullis.toml";

fn compose() -> Value {
    yaml_file(COMPOSE).remove(0)
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["services"]
        .get(name)
        .unwrap_or_else(|| panic!("{COMPOSE}: no service {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A service's labels as `key=value` pairs (list or map form).
fn labels(svc: &Value) -> Vec<(String, String)> {
    match &svc["labels"] {
        Value::Array(a) => a
            .iter()
            .map(|l| {
                let l = l.as_str().expect("a label string");
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        _ => Vec::new(),
    }
}

fn portcullis_toml() -> toml::Value {
    toml::from_str(&repo_file(CONFIG)).expect("portcullis.toml is TOML")
}

#[test]
fn deploy_compose_settings() {
    let c = compose();
    for (name, svc) in c["services"].as_object().expect("services") {
        assert_eq!(
            svc["read_only"],
            json!(true),
            "{name}: read_only: true is missing"
        );
        let image = svc["image"].as_str().unwrap_or_default();
        let tag = image.rsplit('/').next().and_then(|n| n.split_once(':'));
        assert!(
            matches!(tag, Some((_, t)) if t != "latest"),
            "{name}: image {image:?} has no tag or is latest"
        );
    }
    let p = service(&c, "portcullis");
    assert_eq!(p["user"], json!("1000:1000"));
    assert_eq!(p["deploy"]["replicas"], json!(2), "two instances");
    assert_eq!(p["cap_drop"], json!(["ALL"]));
    assert_eq!(p["build"]["dockerfile"], json!("deploy/Dockerfile"));
    assert!(strings(&p["volumes"])
        .contains(&"./portcullis.toml:/etc/portcullis/portcullis.toml:ro".to_owned()));
    assert_eq!(
        strings(&p["command"]),
        ["serve", "--config", "/etc/portcullis/portcullis.toml"]
    );

    // Secrets are compose secrets backed by files, at /run/secrets/<name>,
    // where the config looks for them.
    let cfg = portcullis_toml();
    let secrets = strings(&p["secrets"]);
    for (section, key, secret) in [
        ("oidc", "client_secret_file", "oidc_client_secret"),
        ("session", "secret_file", "portcullis_session"),
    ] {
        assert!(secrets.contains(&secret.to_owned()), "secret {secret}");
        assert!(
            c["secrets"][secret]["file"].is_string(),
            "secrets.{secret}.file"
        );
        assert_eq!(
            cfg[section][key].as_str(),
            Some(format!("/run/secrets/{secret}").as_str()),
            "{section}.{key}"
        );
    }

    // The config agrees with the compose file.
    let server = &cfg["server"];
    let listen_port = server["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    assert!(
        server["admin_listen"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "the image's HEALTHCHECK probes admin_listen inside the container"
    );
    let traefik_ip = service(&c, "traefik")["networks"]["web"]["ipv4_address"]
        .as_str()
        .expect("traefik's fixed address");
    assert_eq!(
        server["trusted_proxies"],
        toml::Value::Array(vec![format!("{traefik_ip}/32").into()]),
        "trusted_proxies is Traefik's address"
    );
    assert_eq!(
        cfg["session"]["redis_url"].as_str(),
        Some("redis://redis:6379/0")
    );
    // Only portcullis shares a network with Redis.
    let nets = |svc: &Value| -> Vec<String> {
        match &svc["networks"] {
            Value::Array(_) => strings(&svc["networks"]),
            Value::Object(m) => m.keys().cloned().collect(),
            _ => vec!["default".to_owned()],
        }
    };
    let redis_nets = nets(service(&c, "redis"));
    for (name, svc) in c["services"].as_object().unwrap() {
        let shared = nets(svc).iter().any(|n| redis_nets.contains(n));
        assert_eq!(
            shared,
            name == "redis" || name == "portcullis",
            "{name}: shares a network with redis: {shared}"
        );
    }
    assert_eq!(c["networks"]["sessions"]["internal"], json!(true));
    let pl: BTreeMap<_, _> = labels(p).into_iter().collect();
    assert_eq!(
        pl["traefik.http.middlewares.portcullis.forwardAuth.address"],
        format!("http://portcullis:{listen_port}/oauth2/auth")
    );
    assert_eq!(
        pl["traefik.http.services.portcullis.loadBalancer.server.port"],
        listen_port
    );
    assert_eq!(
        pl["traefik.http.middlewares.portcullis.forwardAuth.trustForwardHeader"],
        "true"
    );
    assert_eq!(
        pl["traefik.http.middlewares.portcullis.forwardAuth.authResponseHeadersRegex"],
        "^X-Auth-"
    );
    let traefik_cmd = strings(&service(&c, "traefik")["command"]);
    assert!(traefik_cmd.contains(&"--entryPoints.web.http.aliasHeadersStrategy=delete".to_owned()));
    assert!(traefik_cmd.contains(&"--providers.docker.exposedByDefault=false".to_owned()));
    assert_eq!(
        strings(&service(&c, "traefik")["volumes"]),
        ["/var/run/docker.sock:/var/run/docker.sock:ro"]
    );
}

/// The labels say exactly what config/traefik/dynamic.yml says (middleware,
/// routers, services, once the Docker provider's part is filled in with that
/// file's addresses), and the entry point's flags what traefik.yml says.
#[test]
fn deploy_compose_labels_mirror_the_traefik_example() {
    let c = compose();
    let shipped = yaml_file("config/traefik/dynamic.yml").remove(0);
    let servers = BTreeMap::from([
        ("portcullis", vec!["http://127.0.0.1:4180".to_owned()]),
        ("app", vec!["http://127.0.0.1:8080".to_owned()]),
    ]);
    let hosts = BTreeMap::from([("portcullis:4180", "127.0.0.1:4180".to_owned())]);
    let got = dynamic_config(&c, &servers, &hosts);
    for part in ["middlewares", "routers", "services"] {
        assert_eq!(
            got["http"][part], shipped["http"][part],
            "http.{part}: the compose labels differ from config/traefik/dynamic.yml"
        );
    }
    let stat = yaml_file("config/traefik/traefik.yml").remove(0);
    let strategy = stat["entryPoints"]["web"]["http"]["aliasHeadersStrategy"]
        .as_str()
        .expect("traefik.yml's aliasHeadersStrategy");
    assert!(
        strings(&service(&c, "traefik")["command"]).contains(&format!(
            "--entryPoints.web.http.aliasHeadersStrategy={strategy}"
        )),
        "the compose entry point's aliasHeadersStrategy is not traefik.yml's {strategy}"
    );
    assert!(stat["entryPoints"]["web"].get("forwardedHeaders").is_none());
    assert!(!strings(&service(&c, "traefik")["command"])
        .iter()
        .any(|f| f.to_ascii_lowercase().contains("forwardedheaders")));
}

/// Label keys whose values are comma-separated lists in the file provider.
const LISTS: &[&str] = &[
    "entryPoints",
    "middlewares",
    "authRequestHeaders",
    "authResponseHeaders",
];

/// Traefik's dynamic configuration from the compose file's labels.
/// `servers` gives each Traefik service's URLs; `hosts` maps the compose
/// `host:port` in a forwardAuth address to the test's address.
fn dynamic_config(
    c: &Value,
    servers: &BTreeMap<&str, Vec<String>>,
    hosts: &BTreeMap<&str, String>,
) -> Value {
    let mut http = Map::new();
    for (name, svc) in c["services"].as_object().unwrap() {
        let labels = labels(svc);
        if !labels
            .iter()
            .any(|(k, v)| k == "traefik.enable" && v == "true")
        {
            continue;
        }
        let mut own_services = Vec::new();
        for (key, value) in &labels {
            if key == "traefik.enable" {
                continue;
            }
            let path: Vec<&str> = key
                .strip_prefix("traefik.http.")
                .unwrap_or_else(|| panic!("{name}: label {key} is not traefik.http.*"))
                .split('.')
                .collect();
            let (kind, object, rest) = (path[0], path[1], &path[2..]);
            let entry = http
                .entry(kind)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap()
                .entry(object)
                .or_insert_with(|| json!({}));
            match (kind, rest) {
                ("services", ["loadBalancer", "server", "port"]) => {
                    own_services.push(object.to_owned());
                    let urls = servers
                        .get(object)
                        .unwrap_or_else(|| panic!("no test servers for service {object}"));
                    entry["loadBalancer"]["servers"] =
                        urls.iter().map(|u| json!({ "url": u })).collect();
                }
                ("services", _) => panic!("{name}: label {key} is not supported by the test"),
                ("middlewares", [_, "address"]) => {
                    let url = url::Url::parse(value).expect("forwardAuth address is a URL");
                    let authority = format!(
                        "{}:{}",
                        url.host_str().unwrap(),
                        url.port_or_known_default().unwrap()
                    );
                    let test = hosts
                        .get(authority.as_str())
                        .unwrap_or_else(|| panic!("no test address for {authority}"));
                    set(entry, rest, json!(value.replacen(&authority, test, 1)));
                }
                _ => set(entry, rest, leaf(rest.last().unwrap(), value)),
            }
        }
        // The Docker provider's implicit service: a router without one uses
        // its container's only service.
        if let Some(routers) = http.get_mut("routers") {
            for (r, router) in routers.as_object_mut().unwrap() {
                if router.get("service").is_none()
                    && labels
                        .iter()
                        .any(|(k, _)| k.starts_with(&format!("traefik.http.routers.{r}.")))
                {
                    assert_eq!(
                        own_services.len(),
                        1,
                        "{name}: router {r} has no service and its container not exactly one"
                    );
                    router["service"] = json!(own_services[0]);
                }
            }
        }
    }
    json!({ "http": http })
}

fn set(entry: &mut Value, path: &[&str], value: Value) {
    let mut cur = entry;
    for p in &path[..path.len() - 1] {
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(*p)
            .or_insert_with(|| json!({}));
    }
    cur[path[path.len() - 1]] = value;
}

/// A label value as the file provider would have it.
fn leaf(key: &str, value: &str) -> Value {
    if LISTS.contains(&key) {
        return value
            .split(',')
            .map(|s| json!(s.trim().trim_end_matches("@docker")))
            .collect();
    }
    match value {
        "true" => json!(true),
        "false" => json!(false),
        v => v
            .parse::<i64>()
            .map(|n| json!(n))
            .unwrap_or_else(|_| json!(v)),
    }
}

/// Traefik with the compose file's flags: the `web` entry point on
/// `port`, plus a file provider with `dynamic`. The Docker provider stays
/// configured as written, pointed at a socket that does not exist.
fn start_traefik(c: &Value, dynamic: &Value, port: u16) -> Proc {
    let bin = require_binary("traefik");
    let dir = scratch_dir("compose-traefik");
    let file = dir.join("dynamic.yml");
    // JSON is YAML.
    std::fs::write(&file, serde_json::to_string_pretty(dynamic).unwrap()).unwrap();
    let mut args = strings(&service(c, "traefik")["command"]);
    let address = args
        .iter_mut()
        .find(|a| a.starts_with("--entryPoints.web.address="))
        .expect("the web entry point");
    *address = format!("--entryPoints.web.address=127.0.0.1:{port}");
    args.push(format!("--providers.file.filename={}", file.display()));
    args.push(format!(
        "--providers.docker.endpoint=unix://{}/no-docker.sock",
        dir.display()
    ));
    let mut cmd = Command::new(bin);
    cmd.args(&args).current_dir(&dir);
    Proc::spawn("traefik", cmd, &dir)
}

const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml");

fn app_seen(r: &RawResponse, what: &str) -> Seen {
    assert_eq!(
        r.status,
        200,
        "{what}: {} {:?}\n{}",
        r.status,
        r.headers,
        r.text()
    );
    Seen::parse(&r.text()).unwrap_or_else(|| panic!("{what}: not the app: {}", r.text()))
}

#[tokio::test]
async fn deploy_compose_labels_drive_real_traefik() {
    let c = compose();
    let port = free_port();
    let base = format!("http://app.example.com:{port}");
    let host = format!("app.example.com:{port}");
    let redis = Redis::start();
    let idp = Idp::start(&[format!("{base}/oauth2/callback")]);
    let echo = Echo::start();
    let dir = scratch_dir("compose-secrets");
    let client_secret = dir.join("oidc_client_secret");
    let session_secret = dir.join("portcullis_session");
    std::fs::write(&client_secret, format!("{CLIENT_SECRET}\n")).unwrap();
    std::fs::write(&session_secret, format!("{SESSION_SECRET}\n")).unwrap();
    let gateway = |name: &str| {
        let admin = free_port();
        let admin_addr = format!("127.0.0.1:{admin}");
        let config = subst(
            &repo_file(CONFIG),
            CONFIG,
            &[
                ("0.0.0.0:4180", LISTEN_PLACEHOLDER),
                ("127.0.0.1:9180", &admin_addr),
                ("172.30.0.2/32", "127.0.0.1/32"),
                (
                    "https://idp.example.com/application/o/portcullis/",
                    &idp.issuer,
                ),
                (
                    "/run/secrets/oidc_client_secret",
                    client_secret.to_str().unwrap(),
                ),
                (
                    "/run/secrets/portcullis_session",
                    session_secret.to_str().unwrap(),
                ),
                ("redis://redis:6379/0", &redis.url()),
            ],
        );
        Gateway::launch(Launch {
            name,
            config: &config,
            admin_port: Some(admin),
            // The secrets come from the files the config names.
            client_secret: "",
            session_secret: "",
            ..Launch::default()
        })
    };
    let a = gateway("portcullis-1");
    let b = gateway("portcullis-2");
    let servers = BTreeMap::from([
        ("portcullis", vec![a.url(""), b.url("")]),
        ("app", vec![format!("http://127.0.0.1:{}", echo.port)]),
    ]);
    let hosts = BTreeMap::from([("portcullis:4180", format!("127.0.0.1:{}", a.port))]);
    let dynamic = dynamic_config(&c, &servers, &hosts);
    let traefik = start_traefik(&c, &dynamic, port);
    let _logs = LogsOnFailure(vec![&idp.proc, &a.proc, &b.proc, &traefik]);
    wait_for(
        "traefik",
        || traefik.check_alive(),
        || (probe(port, &host, "/health") == Some(200)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", traefik.logs()));

    // No session: a browser is sent to the login on the app's host, an API client gets 401.
    let r = raw_get(port, &host, "/some/page?x=1", &[HTML]);
    assert_eq!(r.status, 302, "{r:?}");
    let location = r.header("location").unwrap_or_default();
    assert!(
        location.starts_with(&format!("{base}/oauth2/start?rd=")),
        "{location}"
    );
    let r = raw_get(port, &host, "/some/page", &[("Accept", "application/json")]);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(Seen::parse(&r.text()).is_none());

    // A client's X-Original-URL naming a public page changes nothing.
    for (target, steer) in [("/some/page", "/health"), ("/admin", "/health")] {
        let original = format!("{base}{steer}");
        let r = raw_get(
            port,
            &host,
            target,
            &[
                HTML,
                ("X-Original-URL", &original),
                ("X-Original-Method", "GET"),
            ],
        );
        assert_eq!(r.status, 302, "{target} steered to {steer}: {r:?}");
        assert!(Seen::parse(&r.text()).is_none());
    }

    // A login through Traefik (start and callback balanced over both
    // gateways, the checks on the first) reaches the app with the identity.
    let browser = Browser::new();
    let url = format!("{base}/some/after-login");
    let page = browser.open_as(&url, "bob").await;
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(page.url.as_str(), url, "{page}");
    let seen = page.expect_app();
    assert_eq!(
        seen.identity(),
        ("bob".into(), "bob@example.com".into(), "staff".into())
    );
    let cookie = format!(
        "_portcullis={}",
        browser
            .cookie(&base, "_portcullis")
            .expect("session cookie")
    );

    // Client identity headers, in every spelling, never reach the app.
    for spoof in [
        ("X-Auth-User", "mallory"),
        ("x-auth-user", "mallory"),
        ("X_Auth_User", "mallory"),
        ("X.Auth.User", "mallory"),
        ("X-Auth-Groups", "evil-admins"),
        ("X_AUTH_GROUPS", "evil-admins"),
    ] {
        let seen = app_seen(
            &raw_get(port, &host, "/some/x", &[HTML, ("Cookie", &cookie), spoof]),
            &format!("signed in with {spoof:?}"),
        );
        seen.assert_no_spoofed(&["mallory", "evil"]);
        assert_eq!(seen.one("x-auth-user").as_deref(), Some("bob"));
        let seen = app_seen(
            &raw_get(port, &host, "/health", &[HTML, spoof]),
            &format!("public with {spoof:?}"),
        );
        seen.assert_no_spoofed(&["mallory", "evil"]);
        assert_eq!(
            seen.identity(),
            (String::new(), String::new(), String::new())
        );
    }

    // bob (staff) may not open /admin, whatever X-Original-URL says.
    let some = format!("{base}/some/x");
    for headers in [
        vec![HTML, ("Cookie", cookie.as_str())],
        vec![
            HTML,
            ("Cookie", cookie.as_str()),
            ("X-Original-URL", some.as_str()),
        ],
    ] {
        let r = raw_get(port, &host, "/admin", &headers);
        assert_eq!(r.status, 403, "{headers:?}: {r:?}");
        assert!(Seen::parse(&r.text()).is_none());
    }

    // The image's HEALTHCHECK finds each instance's admin listener from its config.
    for gw in [&a, &b] {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("healthcheck")
            .env_clear()
            .env("PORTCULLIS_CONFIG", &gw.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
