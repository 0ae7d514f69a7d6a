//! The converter against the oauth2-proxy configurations in
//! tests/fixtures/oauth2-proxy (file, environment and flag forms), each
//! result run through the config validator `portcullis check` uses; option
//! parsing and precedence; every oauth2-proxy option either converted or
//! commented.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::convert::{human, listen_address, regex_prefix};
use super::options::{go_duration, Kind, Source, Value, SPECS};
use super::*;
use crate::config::{Config, Policy, StoreKind};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oauth2-proxy")
}

/// A fixture case: its `.args` (one argument a line, `$FIXTURES` replaced),
/// its `.env` and `--config NAME.cfg` when those files exist.
fn case(name: &str) -> (Vec<String>, HashMap<String, String>) {
    let dir = fixtures();
    let mut args = Vec::new();
    let cfg = dir.join(format!("{name}.cfg"));
    if cfg.exists() {
        args.push("--config".to_owned());
        args.push(cfg.display().to_string());
    }
    if let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.args"))) {
        let fixtures = dir.display().to_string();
        args.extend(text.lines().map(|l| l.replace("$FIXTURES", &fixtures)));
    }
    let mut env = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.env"))) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').expect("NAME=value");
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    (args, env)
}

/// Converts a case and validates the result the way `portcullis check` does
/// (no PORTCULLIS_* variables set).
fn convert_case(name: &str) -> (String, Config) {
    let (args, env) = case(name);
    let converted = oauth2_proxy(&args, &env).unwrap_or_else(|e| panic!("{name}: {e}"));
    let config = Config::from_toml(
        &converted.toml,
        Path::new("."),
        &HashMap::<String, String>::new(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{name}: the converted config does not validate: {e}\n{}",
            converted.toml
        )
    });
    (converted.toml, config)
}

fn rule<'a>(config: &'a Config, path: &str, policy: Policy) -> &'a crate::config::RuleConfig {
    config
        .rules
        .iter()
        .find(|r| r.path == path && r.policy == policy)
        .unwrap_or_else(|| panic!("no {policy:?} rule for {path}: {:#?}", config.rules))
}

#[test]
fn keycloak_reverse_proxy_file() {
    let (toml, c) = convert_case("keycloak");
    assert_eq!(c.oidc.issuer, "https://keycloak.example.com/realms/corp");
    assert_eq!(c.oidc.client_id, "wiki");
    assert!(
        c.oidc.client_secret.is_some(),
        "an inline secret stays inline"
    );
    assert_eq!(c.oidc.user_claim.dotted, "sub");
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:4180");
    assert_eq!(
        c.server.external_url.as_ref().unwrap().as_str(),
        "https://wiki.example.com/"
    );
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert_eq!(c.session.store, StoreKind::Redis);
    assert_eq!(c.session.lifetime, Duration::from_secs(7 * 86_400));
    assert!(c.session.refresh);
    assert_eq!(c.session.cookie_name, "_oauth2_proxy");
    assert_eq!(c.headers.user.as_str(), "x-forwarded-user");
    assert!(c.headers.pass_access_token);
    // Public routes first, each sent to the upstream that serves its path.
    let health = rule(&c, "/healthz", Policy::Public);
    assert_eq!(health.methods.as_ref().unwrap()[0].as_str(), "GET");
    assert_eq!(
        health.upstream.as_ref().unwrap().as_str(),
        "http://10.0.0.12:8080/"
    );
    assert!(health.upstream_options.preserve_host);
    rule(&c, "/static", Policy::Public);
    // The API upstream before the catch-all one; both restricted alike.
    let api = c.rules.iter().position(|r| r.path == "/api").unwrap();
    let root = c
        .rules
        .iter()
        .position(|r| r.path == "/" && r.policy == Policy::Authenticated)
        .unwrap();
    assert!(api < root);
    for r in [&c.rules[api], &c.rules[root]] {
        assert_eq!(r.email_domains, ["example.com"]);
        assert_eq!(r.groups_all, ["wiki-users"]);
        assert!(!r.bearer, "skip_jwt_bearer_tokens was off");
    }
    assert_eq!(
        c.rules[api].upstream.as_ref().unwrap().as_str(),
        "http://10.0.0.13:9000/"
    );
    for commented in [
        "cookie_secret",
        "cookie_samesite",
        "api_routes",
        "skip_provider_button",
        "silence_ping_logging",
    ] {
        assert!(
            toml.contains(&format!("# not converted: {commented}")),
            "{commented}:\n{toml}"
        );
    }
    assert!(
        !toml.contains("OQINaROshtE9"),
        "oauth2-proxy's cookie secret echoed:\n{toml}"
    );
}

#[test]
fn traefik_forward_auth_environment() {
    let (toml, c) = convert_case("traefik");
    assert_eq!(
        c.oidc.issuer,
        "https://authentik.example.com/application/o/traefik/"
    );
    assert!(
        c.oidc.client_secret.is_none(),
        "a secret from the environment is not printed"
    );
    assert!(toml.contains("PORTCULLIS_OIDC_CLIENT_SECRET"), "{toml}");
    assert!(!toml.contains("kept-in-the-environment"), "{toml}");
    assert_eq!(c.session.cookie_domain.as_deref(), Some("example.com"));
    assert_eq!(c.access.allowed_redirect_domains, [".example.com"]);
    assert_eq!(
        c.server.external_url.as_ref().unwrap().as_str(),
        "https://auth.example.com/"
    );
    assert_eq!(c.headers.user.as_str(), "x-auth-request-user");
    assert_eq!(c.headers.groups.as_str(), "x-auth-request-groups");
    assert!(toml.contains("preset = \"oauth2-proxy\""), "{toml}");
    assert_eq!(c.server.trusted_proxies[0].to_string(), "172.18.0.0/16");
    assert!(
        toml.contains("not converted: upstream static://202"),
        "{toml}"
    );
    // email_domains = * and no groups: any signed-in user, on every path.
    let all = rule(&c, "/", Policy::Authenticated);
    assert!(!all.has_conditions_on_user());
    assert!(all.upstream.is_none());
    let favicon = rule(&c, "/favicon.ico", Policy::Public);
    assert_eq!(favicon.methods.as_ref().unwrap()[0].as_str(), "GET");
    let preflight = rule(&c, "/", Policy::Public);
    assert_eq!(preflight.methods.as_ref().unwrap()[0].as_str(), "OPTIONS");
}

#[test]
fn nginx_auth_request_flags() {
    let (toml, c) = convert_case("nginx");
    assert_eq!(c.oidc.issuer, "https://dex.example.com");
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:4180");
    assert_eq!(c.session.lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(c.access.allowed_redirect_domains, [".example.com"]);
    let all = rule(&c, "/", Policy::Authenticated);
    assert_eq!(
        all.email_domains,
        ["example.com", "example.org"],
        "repeated flag, and `--flag value`"
    );
    assert_eq!(
        all.emails,
        ["jane.contractor@partner.example", "joe@partner.example"]
    );
    assert_eq!(
        all.groups_all,
        ["ops", "dev"],
        "several allowed groups with e-mail checks: stricter"
    );
    assert!(toml.contains("# WARNING: allowed_groups"), "{toml}");
    rule(&c, "/public", Policy::Public);
    assert!(
        toml.contains("not converted: skip_auth_regex entry \"^/ws$\""),
        "{toml}"
    );
    assert!(
        c.rules.iter().all(|r| r.path != "/ws"),
        "an exact-path regex must not become a prefix rule"
    );
}

#[test]
fn webdav_with_an_htpasswd_file() {
    let (toml, c) = convert_case("webdav");
    assert!(c.access.htpasswd.is_some(), "{toml}");
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:4180");
    let dav = rule(&c, "/", Policy::Authenticated);
    assert!(dav.basic_auth);
    assert!(
        !dav.upstream_options.preserve_host,
        "pass_host_header = false"
    );
    assert!(
        dav.users.is_empty(),
        "htpasswd names must not admit IdP users of the same name"
    );
    assert!(toml.contains("\"dav: alice carol\""), "{toml}");
    assert!(toml.contains("# WARNING: htpasswd users"), "{toml}");
    // Hashes portcullis refuses are named before it refuses to start.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(
        &file,
        "old:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nnew:$2y$05$abcdefghijklmnopqrstuv\n",
    )
    .unwrap();
    let args: Vec<String> = [
        "--provider=oidc",
        "--client-id=x",
        "--oidc-issuer-url=https://i.example.com",
        "--email-domain=*",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([format!("--htpasswd-file={}", file.display())])
    .collect();
    let out = oauth2_proxy(&args, &HashMap::<String, String>::new()).unwrap();
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("entries of old are not bcrypt")),
        "{:?}",
        out.warnings
    );
}

#[test]
fn layered_flags_over_environment_over_file() {
    let (toml, c) = convert_case("layered");
    assert_eq!(c.oidc.client_id, "from-the-flags");
    assert_eq!(
        c.session.lifetime,
        Duration::from_secs(3 * 86_400),
        "the flag's 72h"
    );
    assert_eq!(c.oidc.extra_audiences, ["cli"]);
    assert_eq!(c.oidc.bearer_issuers.len(), 1);
    assert_eq!(
        c.oidc.bearer_issuers[0].issuer,
        "https://kubernetes.default.svc"
    );
    assert_eq!(c.oidc.bearer_issuers[0].audiences, ["portcullis"]);
    assert_eq!(c.session.redis_urls.len(), 1);
    assert!(
        toml.contains("redis+sentinel://:redis-pass@sentinel-1:26379,sentinel-2:26379/sessions"),
        "{toml}"
    );
    let secret_file = fixtures().join("client-secret.txt");
    assert!(
        toml.contains(&format!("client_secret_file = \"{}\"", secret_file.display())),
        "a relative path is made absolute (oauth2-proxy read it from its working directory, the crate root here): {toml}"
    );
    assert_eq!(
        c.oidc.client_secret.as_ref().unwrap().expose(),
        "layered-client-secret"
    );
    // The environment's groups (the file's are overridden); "*": any-of groups.
    let app = c
        .rules
        .iter()
        .find(|r| r.policy == Policy::Authenticated)
        .unwrap();
    assert_eq!(app.groups, ["staff", "admins"]);
    assert!(app.bearer, "skip_jwt_bearer_tokens = true");
    assert!(app.upstream.is_some());
    assert!(
        app.upstream_options.preserve_host,
        "pass_host_header's default"
    );
    // trusted_ips and the preflight come before the upstream rule, routed to it.
    let first = &c.rules[0];
    assert_eq!(first.policy, Policy::Public);
    assert_eq!(
        first.networks.as_ref().unwrap()[0].to_string(),
        "192.168.1.0/24"
    );
    assert_eq!(
        first.upstream.as_ref().unwrap().as_str(),
        "http://app.internal:3000/"
    );
    assert_eq!(c.rules[1].methods.as_ref().unwrap()[0].as_str(), "OPTIONS");
    assert!(
        c.rules.iter().all(|r| r.host.is_none()),
        "oauth2-proxy serves any host"
    );
}

/// The output without the freshly generated session secret and the
/// line counting the flags.
fn without_secret(toml: &str) -> String {
    toml.lines()
        .filter(|l| !l.starts_with("secret = ") && !l.starts_with("# Read: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each option, set alone, is either named in the output (converted with
/// its name in a comment, or "not converted") or changes it.
#[test]
fn every_option_is_converted_or_commented() {
    let base = [
        "--provider=oidc",
        "--oidc-issuer-url=https://idp.example.com",
        "--client-id=app",
        "--email-domain=*",
    ];
    let env = HashMap::<String, String>::new();
    let base_args: Vec<String> = base.iter().map(|s| (*s).to_owned()).collect();
    let base_out = without_secret(&oauth2_proxy(&base_args, &env).unwrap().toml);
    for spec in SPECS {
        if ["provider", "oidc_issuer_url", "client_id", "email_domains"].contains(&spec.cfg) {
            continue;
        }
        let value = match spec.kind {
            Kind::Bool => "true",
            Kind::Duration => "90m",
            Kind::Int => "7",
            Kind::Str | Kind::List => "https://x.example.com/sample",
        };
        let mut args: Vec<String> = base.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--{}={value}", spec.flag));
        match oauth2_proxy(&args, &env) {
            Ok(c) => assert!(
                c.toml.contains(spec.cfg) || without_secret(&c.toml) != base_out,
                "--{} left no trace in the output:\n{}",
                spec.flag,
                c.toml
            ),
            Err(MigrateError::Read { .. }) => {} // a file option pointing nowhere
            Err(e) => panic!("--{}: {e}", spec.flag),
        }
    }
}

#[test]
fn flag_forms_and_precedence() {
    let env: HashMap<String, String> = [
        ("OAUTH2_PROXY_CLIENT_ID", "env"),
        ("OAUTH2_PROXY_EMAIL_DOMAINS", "a.example, b.example"),
        ("OAUTH2_PROXY_COOKIE_SECURE", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let args: Vec<String> = [
        "--client-id",
        "flag",
        "-upstream=http://a:1/",
        "--upstream",
        "http://b:2/x/,http://c:3/y/",
        "--pass-access-token",
    ]
    .map(str::to_owned)
    .to_vec();
    let opts = Options::load(&args, &env).unwrap();
    assert_eq!(opts.str("client_id"), Some("flag"));
    assert_eq!(opts.source("client_id"), Some(Source::Flag));
    assert_eq!(opts.list("email_domains"), ["a.example", "b.example"]);
    assert_eq!(opts.bool("cookie_secure"), Some(false));
    assert_eq!(
        opts.list("upstreams"),
        ["http://a:1/", "http://b:2/x/", "http://c:3/y/"]
    );
    assert_eq!(
        opts.set.get("pass_access_token"),
        Some(&(Value::Bool(true), Source::Flag))
    );
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let env = HashMap::<String, String>::new();
    let err = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        oauth2_proxy(&args, &env).unwrap_err().to_string()
    };
    assert!(err(&["--upstrem=x"]).contains("did you mean --upstream"));
    assert!(err(&["--cookie-expire=soon"]).contains("Go duration"));
    assert!(err(&["--cookie-secure=maybe"]).contains("true or false"));
    assert!(err(&["--client-id"]).contains("needs a value"));
    assert!(err(&["stray"]).contains("unexpected argument"));
    assert!(err(&["--alpha-config=x.yaml"]).contains("alpha-config"));
    assert!(err(&["--provider=github", "--email-domain=*"]).contains("not OpenID Connect"));
    assert!(err(&["--provider=oidc"]).contains("email_domains"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("o.cfg");
    std::fs::write(&file, "cookie_secrett = \"x\"\n").unwrap();
    let e = err(&["--config", file.to_str().unwrap()]);
    assert!(
        e.contains("cookie_secrett") && e.contains("cookie_secret"),
        "{e}"
    );
    std::fs::write(&file, "upstreams = [\n").unwrap();
    assert!(
        err(&["--config", file.to_str().unwrap()]).contains("not a valid oauth2-proxy config file")
    );
}

#[test]
fn skip_auth_regexes_that_are_plain_prefixes() {
    let ok = |re: &str| regex_prefix(re).map(|(p, _)| p);
    assert_eq!(ok("^/api/").unwrap(), "/api");
    assert_eq!(ok("^/api/.*").unwrap(), "/api");
    assert_eq!(ok("^/api/.*$").unwrap(), "/api");
    assert_eq!(ok("^/favicon\\.ico").unwrap(), "/favicon.ico");
    assert_eq!(ok("^/").unwrap(), "/");
    for refused in [
        "/api",
        "^/api$",
        "^/api/[0-9]+",
        "^/(a|b)",
        "^api",
        "^/a/../b",
        "^/a\\d",
    ] {
        assert!(
            ok(refused).is_err(),
            "{refused} must not become a prefix rule"
        );
    }
}

#[test]
fn go_durations_and_addresses() {
    assert_eq!(
        go_duration("168h0m0s"),
        Some(Duration::from_secs(168 * 3600))
    );
    assert_eq!(go_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(go_duration("1.5h"), Some(Duration::from_secs(5400)));
    assert_eq!(go_duration("0"), Some(Duration::ZERO));
    assert_eq!(go_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(go_duration("12"), None);
    assert_eq!(go_duration("-1h"), None);
    assert_eq!(human(Duration::from_secs(7 * 86_400)), "7d");
    assert_eq!(human(Duration::from_secs(5400)), "90m");
    assert_eq!(human(Duration::from_millis(500)), "1s");
    assert_eq!(listen_address(":4180").as_deref(), Some("0.0.0.0:4180"));
    assert_eq!(
        listen_address("http://127.0.0.1:4180").as_deref(),
        Some("127.0.0.1:4180")
    );
    assert_eq!(
        listen_address("http://[::1]:4180").as_deref(),
        Some("[::1]:4180")
    );
    assert_eq!(listen_address("unix:///run/o2p.sock"), None);
}
