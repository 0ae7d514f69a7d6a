//! Tests of config loading and validation: every check, the typo
//! suggestions, every secret source, relative `*_file` resolution, that no
//! message ever contains a secret, and that the shipped example loads.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::raw::{
    keys_of, RawAccess, RawBearerIssuer, RawConfig, RawHeaders, RawOidc, RawProxy, RawRule,
    RawServer, RawSession,
};
use super::*;

const SESSION_SECRET: &str = "session-secret-0123456789abcdef-XYZ";
const CLIENT_SECRET: &str = "client-secret-QWERTY-42";
const EXAMPLE: &str = include_str!("../../config/portcullis.example.toml");

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn default_env() -> HashMap<String, String> {
    env(&[("PORTCULLIS_SESSION_SECRET", SESSION_SECRET)])
}

/// A config with the required keys; `oidc` lines replace the defaults they name.
fn doc(server: &str, oidc: &str, session: &str, rest: &str) -> String {
    let mut o = String::new();
    if !oidc.contains("issuer =") {
        o.push_str("issuer = \"https://idp.example.com/\"\n");
    }
    if !oidc.contains("client_id =") {
        o.push_str("client_id = \"portcullis\"\n");
    }
    format!("[server]\n{server}\n[oidc]\n{o}{oidc}\n[session]\n{session}\n{rest}\n")
}

fn load_with(text: &str, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/nonexistent"), env)
}

fn ok(text: &str) -> Config {
    match load_with(text, &default_env()) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\n--- config ---\n{text}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match load_with(text, &default_env()) {
        Err(ConfigError::Invalid(p)) => p,
        Err(e) => panic!("expected Invalid, got: {e}\n--- config ---\n{text}"),
        Ok(_) => panic!("expected problems, config was accepted:\n{text}"),
    }
}

#[track_caller]
fn assert_problem(text: &str, key: &str, fragment: &str) {
    let ps = problems(text);
    assert!(
        ps.iter()
            .any(|p| p.key == key && p.message.contains(fragment)),
        "expected {key}: ...{fragment}...; got:\n{}",
        ps.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn parse_message(text: &str) -> (Option<usize>, String) {
    match load_with(text, &default_env()) {
        Err(ConfigError::Parse { line, message, .. }) => (line, message),
        Err(e) => panic!("expected Parse, got: {e}"),
        Ok(_) => panic!("expected a parse error"),
    }
}

fn server(lines: &str) -> String {
    doc(lines, "", "", "")
}
fn oidc(lines: &str) -> String {
    doc("", lines, "", "")
}
fn session(lines: &str) -> String {
    doc("", "", lines, "")
}
fn rest(lines: &str) -> String {
    doc("", "", "", lines)
}
fn rule(lines: &str) -> String {
    rest(&format!("[[rule]]\n{lines}"))
}

// === the example file ===

#[test]
fn example_loads_with_secrets_from_env() {
    let env = env(&[
        ("PORTCULLIS_SESSION_SECRET", SESSION_SECRET),
        ("PORTCULLIS_OIDC_CLIENT_SECRET", CLIENT_SECRET),
    ]);
    let cfg = match load_with(EXAMPLE, &env) {
        Ok(c) => c,
        Err(e) => panic!("example does not load:\n{e}"),
    };
    assert_eq!(
        cfg.oidc.issuer,
        "https://authentik.example.com/application/o/portcullis/"
    );
    assert_eq!(
        cfg.oidc.client_secret.as_ref().map(|s| s.expose().as_str()),
        Some(CLIENT_SECRET)
    );
    assert_eq!(cfg.session.secrets.len(), 1);
    assert_eq!(cfg.session.cookie_domain.as_deref(), Some("example.com"));
    assert_eq!(cfg.rules.len(), 3);
    assert_eq!(
        cfg.rules[1].methods,
        Some(vec![http::Method::GET, http::Method::HEAD])
    );
}

#[test]
fn example_loads_from_disk() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.example.toml");
    let env = default_env();
    assert!(Config::load(&path, &env).is_ok());
}

/// Every key of every section appears in the example, set or commented out
/// as `# key = value`, and the commented keys are well-formed.
#[test]
fn example_documents_every_key() {
    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.starts_with("[[") || looks_like_key(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    if let Err(e) = validate::parse(&uncommented) {
        panic!("the commented-out keys of the example do not parse: {e}");
    }
    let table: toml::Table = uncommented.parse().expect("parses");
    let sections: [(&str, &[&str]); 8] = [
        ("", keys_of::<RawConfig>()),
        ("server", keys_of::<RawServer>()),
        ("oidc", keys_of::<RawOidc>()),
        ("oidc.bearer_issuers", keys_of::<RawBearerIssuer>()),
        ("session", keys_of::<RawSession>()),
        ("headers", keys_of::<RawHeaders>()),
        ("access", keys_of::<RawAccess>()),
        ("proxy", keys_of::<RawProxy>()),
    ];
    for (section, keys) in sections {
        let mut t = &table;
        for part in section.split('.').filter(|p| !p.is_empty()) {
            t = match &t[part] {
                toml::Value::Table(t) => t,
                toml::Value::Array(a) => a[0].as_table().expect("table"),
                _ => panic!("{section} is not a table"),
            };
        }
        for key in keys {
            assert!(
                t.contains_key(*key),
                "the example does not document {section}.{key}"
            );
        }
    }
    let first_rule = table["rule"].as_array().expect("rules")[0]
        .as_table()
        .expect("table");
    for key in keys_of::<RawRule>() {
        let documented = first_rule.contains_key(*key) || EXAMPLE.contains(&format!("#   {key} "));
        assert!(documented, "the example does not document rule.{key}");
    }
}

fn looks_like_key(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}

// === defaults ===

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let cfg = ok(&doc("", "", "", ""));
    let s = &cfg.server;
    assert_eq!(s.listen, "0.0.0.0:4180".parse().unwrap());
    assert_eq!(s.external_url, None);
    assert_eq!(s.admin_listen, None);
    assert!(s.tls.is_none());
    assert_eq!(
        s.trusted_proxies,
        vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()]
    );
    assert_eq!(s.prefix, "/oauth2");
    assert_eq!(s.header_read_timeout, Duration::from_secs(10));
    assert_eq!(s.idle_timeout, Duration::from_secs(90));
    assert_eq!(s.max_header_bytes, 16384);
    assert_eq!(s.max_connections, 10_000);
    assert_eq!(s.max_connections_per_client, 256);
    assert_eq!(s.shutdown_grace, Duration::from_secs(10));
    assert_eq!(s.log_format, LogFormat::Text);
    assert!(!s.debug_endpoint);
    let o = &cfg.oidc;
    assert_eq!(o.scopes, ["openid", "profile", "email", "groups"]);
    assert_eq!(o.user_claim.dotted, "preferred_username");
    assert_eq!(o.email_claim.dotted, "email");
    assert_eq!(o.groups_claim.dotted, "groups");
    assert!(o.userinfo_fallback);
    assert!(o.client_secret.is_none());
    assert!(!o.rp_logout);
    assert_eq!(o.http_timeout, Duration::from_secs(10));
    assert_eq!(o.clock_leeway, Duration::from_secs(60));
    let se = &cfg.session;
    assert_eq!(se.cookie_name, "_portcullis");
    assert!(se.cookie_secure);
    assert_eq!(se.lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(se.idle_timeout, None);
    assert!(!se.refresh);
    assert_eq!(se.store, StoreKind::Memory);
    assert!(se.redis_urls.is_empty());
    assert_eq!(cfg.headers.user.as_str(), "x-auth-user");
    assert_eq!(cfg.headers.email.as_str(), "x-auth-email");
    assert_eq!(cfg.headers.groups.as_str(), "x-auth-groups");
    assert_eq!(cfg.access.default, DefaultPolicy::Deny);
    assert!(cfg.rules.is_empty());
}

#[test]
fn rule_defaults() {
    let cfg = ok(&rule(""));
    let r = &cfg.rules[0];
    assert_eq!(r.name, "rule[0]");
    assert_eq!(r.host, None);
    assert_eq!(r.path, "/");
    assert_eq!(r.methods, None);
    assert_eq!(r.policy, Policy::Authenticated);
    assert!(r.bearer);
    assert!(r.upstream.is_none());
    assert_eq!(r.path_case, PathCase::Sensitive);
}

#[test]
fn rule_path_case() {
    let cfg = ok(&rule("path_case = \"insensitive\""));
    assert_eq!(cfg.rules[0].path_case, PathCase::Insensitive);
    let cfg = ok(&rule("path_case = \"sensitive\""));
    assert_eq!(cfg.rules[0].path_case, PathCase::Sensitive);
    assert_problem(
        &rule("path_case = \"ignore\""),
        "rule[0].path_case",
        "not one of",
    );
}

// === parse errors ===

#[test]
fn unknown_key_names_the_path_and_suggests_the_fix() {
    let (line, message) = parse_message(&session("cookie_secur = true"));
    assert_eq!(
        message,
        "unknown key session.cookie_secur — did you mean cookie_secure?"
    );
    assert_eq!(line, Some(8));
    let err = load_with(&session("cookie_secur = true"), &default_env()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid config at line 8, column 1: unknown key"),
        "{err}"
    );
}

#[test]
fn unknown_keys_in_arrays_and_misplaced_keys() {
    let (_, message) = parse_message(&rest(
        "[[rule]]\npath = \"/\"\n[[rule]]\nhots = \"a.example.com\"",
    ));
    assert_eq!(message, "unknown key rule[1].hots — did you mean host?");
    let (_, message) = parse_message(&format!("listen = \"0.0.0.0:1\"\n{}", doc("", "", "", "")));
    assert!(
        message.contains("unknown key listen — did you mean server.listen?"),
        "{message}"
    );
    let (_, message) = parse_message(&rest("[[rules]]\npath = \"/\""));
    assert!(
        message.contains("unknown key rules — did you mean rule?"),
        "{message}"
    );
    let (_, message) = parse_message(&server("zzzzzz = 1"));
    assert!(
        message.contains("unknown key server.zzzzzz (known keys here: listen,"),
        "{message}"
    );
}

#[test]
fn every_unknown_key_is_listed() {
    let (_, message) = parse_message(&doc("lisen = \"x\"", "", "lifetme = \"1h\"", ""));
    assert!(
        message.contains("unknown key server.lisen — did you mean listen?"),
        "{message}"
    );
    assert!(
        message.contains("unknown key session.lifetme — did you mean lifetime?"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 2);
}

#[test]
fn syntax_and_type_errors_have_locations() {
    let (line, message) = parse_message("[server]\nlisten = \n");
    assert_eq!(line, Some(2));
    assert!(!message.is_empty());
    let text = server("max_connections = \"many\"");
    let err = load_with(&text, &default_env()).unwrap_err();
    let ConfigError::Parse {
        line,
        column,
        message,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*line, *column), (Some(2), Some(19)));
    assert!(
        message.starts_with("server.max_connections: invalid type"),
        "{message}"
    );
    let (_, message) = parse_message(&session("lifetime = \"12x\""));
    assert!(
        message.contains("session.lifetime: invalid duration \"12x\": unknown unit \"x\""),
        "{message}"
    );
    let (line, message) = parse_message(&rest("[rule]\nhost = \"a.example.com\""));
    assert_eq!(line, Some(9));
    assert!(
        message.starts_with("rule: invalid type: map, expected a sequence; write [[rule]]"),
        "{message}"
    );
    let (_, message) = parse_message(&server("idle_timeout = 90"));
    assert!(message.contains("duration string"), "{message}");
}

// === [server] ===

#[test]
fn server_addresses() {
    assert_problem(
        &server("listen = \"nope\""),
        "server.listen",
        "not a socket address",
    );
    assert_problem(
        &server("listen = \"localhost:4180\""),
        "server.listen",
        "IP:PORT",
    );
    assert_problem(
        &server("admin_listen = \"9180\""),
        "server.admin_listen",
        "not a socket address",
    );
    assert_problem(
        &server("listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:1\""),
        "server.admin_listen",
        "same address",
    );
    let cfg = ok(&server(
        "listen = \"[::]:8080\"\nadmin_listen = \"127.0.0.1:9180\"",
    ));
    assert_eq!(
        cfg.server.admin_listen,
        Some("127.0.0.1:9180".parse().unwrap())
    );
}

#[test]
fn external_url() {
    let cfg = ok(&server("external_url = \"https://Auth.example.com/sso//\""));
    assert_eq!(
        cfg.server.external_url.unwrap().as_str(),
        "https://auth.example.com/sso"
    );
    let cfg = ok(&server("external_url = \"https://auth.example.com/\""));
    assert_eq!(
        cfg.server.external_url.unwrap().as_str(),
        "https://auth.example.com/"
    );
    for (url, fragment) in [
        ("ftp://auth.example.com", "http:// or https://"),
        ("auth.example.com", "not an absolute URL"),
        ("https://auth.example.com/?a=1", "query"),
        ("https://auth.example.com/#x", "fragment"),
    ] {
        assert_problem(
            &server(&format!("external_url = {url:?}")),
            "server.external_url",
            fragment,
        );
    }
}

#[test]
fn tls_files_come_in_pairs_and_resolve_relative_paths() {
    assert_problem(
        &server("tls_cert = \"c.pem\""),
        "server.tls_key",
        "required",
    );
    assert_problem(
        &server("tls_key = \"k.pem\""),
        "server.tls_cert",
        "required",
    );
    assert_problem(
        &server("client_ca = \"ca.pem\""),
        "server.client_ca",
        "requires tls_cert",
    );
    let text = server("tls_cert = \"c.pem\"\ntls_key = \"/abs/k.pem\"\nclient_ca = \"ca.pem\"");
    let cfg = Config::from_toml(&text, Path::new("/etc/portcullis"), &default_env()).unwrap();
    let tls = cfg.server.tls.unwrap();
    assert_eq!(tls.cert, Path::new("/etc/portcullis/c.pem"));
    assert_eq!(tls.key, Path::new("/abs/k.pem"));
    assert_eq!(
        cfg.server.client_ca.unwrap(),
        Path::new("/etc/portcullis/ca.pem")
    );
}

#[test]
fn trusted_proxies() {
    let cfg = ok(&server(
        "trusted_proxies = [\"10.0.0.1\", \"::1\", \"10.1.2.3/8\", \"fd00::/8\"]",
    ));
    let got: Vec<String> = cfg
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, ["10.0.0.1/32", "::1/128", "10.0.0.0/8", "fd00::/8"]);
    let cfg = ok(&server("trusted_proxies = []"));
    assert!(cfg.server.trusted_proxies.is_empty());
    assert_problem(
        &server("trusted_proxies = [\"10.0.0.0/8\", \"lan\"]"),
        "server.trusted_proxies[1]",
        "not a CIDR",
    );
    assert_problem(
        &server("trusted_proxies = [\"10.0.0.0/33\"]"),
        "server.trusted_proxies[0]",
        "not a CIDR",
    );
}

#[test]
fn prefix() {
    assert_eq!(ok(&server("prefix = \"/sso\"")).server.prefix, "/sso");
    for bad in ["oauth2", "/oauth2/", "/", "/a?b", "/a/../b", "//a"] {
        assert_problem(&server(&format!("prefix = {bad:?}")), "server.prefix", "");
    }
}

#[test]
fn limits_and_timeouts() {
    assert_problem(
        &server("max_header_bytes = 100"),
        "server.max_header_bytes",
        "out of range",
    );
    assert_problem(
        &server("max_connections = 0"),
        "server.max_connections",
        "at least 1",
    );
    assert_problem(
        &server("max_connections_per_client = 0"),
        "server.max_connections_per_client",
        "at least 1",
    );
    assert_problem(
        &server("header_read_timeout = \"0s\""),
        "server.header_read_timeout",
        "longer than zero",
    );
    assert_problem(
        &server("idle_timeout = \"0ms\""),
        "server.idle_timeout",
        "longer than zero",
    );
    assert_problem(
        &server("log_format = \"xml\""),
        "server.log_format",
        "\"text\", \"json\"",
    );
    let cfg = ok(&server(
        "log_format = \"json\"\nshutdown_grace = \"1m30s\"\ndebug_endpoint = true",
    ));
    assert_eq!(cfg.server.log_format, LogFormat::Json);
    assert_eq!(cfg.server.shutdown_grace, Duration::from_secs(90));
    assert!(cfg.server.debug_endpoint);
}

// === [oidc] ===

#[test]
fn issuer() {
    let cfg = ok(&oidc("issuer = \"https://idp.example.com/realms/x/\""));
    assert_eq!(
        cfg.oidc.issuer, "https://idp.example.com/realms/x/",
        "kept exactly as written"
    );
    let cfg = ok(&oidc("issuer = \"https://idp.example.com/realms/x\""));
    assert_eq!(cfg.oidc.issuer, "https://idp.example.com/realms/x");
    assert_problem(
        &oidc("issuer = \"http://idp.example.com\""),
        "oidc.issuer",
        "plain-http issuer exposes tokens",
    );
    for loopback in [
        "http://localhost:8080/",
        "http://127.0.0.5:9000",
        "http://[::1]:9000/x",
    ] {
        ok(&oidc(&format!("issuer = {loopback:?}")));
    }
    assert_problem(
        &oidc("issuer = \"idp.example.com\""),
        "oidc.issuer",
        "not an absolute URL",
    );
    assert_problem(
        &oidc("issuer = \"https://idp.example.com/?x\""),
        "oidc.issuer",
        "query",
    );
    assert_problem(
        &doc("", "client_id = \"x\"\n", "", "")
            .replace("issuer = \"https://idp.example.com/\"\n", ""),
        "oidc.issuer",
        "required",
    );
}

#[test]
fn client_id() {
    assert_problem(&oidc("client_id = \"  \""), "oidc.client_id", "required");
    let text = doc("", "", "", "").replace("client_id = \"portcullis\"\n", "");
    assert_problem(&text, "oidc.client_id", "required");
}

#[test]
fn scopes_and_claims() {
    assert_problem(
        &oidc("scopes = [\"profile\", \"email\"]"),
        "oidc.scopes",
        "must include \"openid\"",
    );
    assert_problem(
        &oidc("scopes = [\"openid\", \"a b\"]"),
        "oidc.scopes[1]",
        "not a scope token",
    );
    assert_problem(
        &oidc("groups_claim = \"realm_access..roles\""),
        "oidc.groups_claim",
        "not a claim path",
    );
    assert_problem(
        &oidc("user_claim = \"\""),
        "oidc.user_claim",
        "not a claim path",
    );
    let cfg = ok(&oidc(
        "groups_claim = \"realm_access.roles\"\nemail_claim = \"mail\"",
    ));
    assert_eq!(cfg.oidc.groups_claim.segments, ["realm_access", "roles"]);
    assert_eq!(cfg.oidc.email_claim.dotted, "mail");
    assert_problem(
        &oidc("extra_audiences = [\"\"]"),
        "oidc.extra_audiences[0]",
        "empty",
    );
    assert_problem(
        &oidc("http_timeout = \"0s\""),
        "oidc.http_timeout",
        "longer than zero",
    );
}

#[test]
fn bearer_issuers() {
    let text = rest("[[oidc.bearer_issuers]]\nissuer = \"https://kubernetes.default.svc\"\naudiences = [\"portcullis\"]\njwks_url = \"https://10.0.0.1:6443/openid/v1/jwks\"");
    let cfg = ok(&text);
    let b = &cfg.oidc.bearer_issuers[0];
    assert_eq!(b.user_claim.dotted, "sub");
    assert_eq!(b.groups_claim.dotted, "groups");
    assert_eq!(
        b.jwks_url.as_ref().unwrap().as_str(),
        "https://10.0.0.1:6443/openid/v1/jwks"
    );
    assert_problem(
        &rest("[[oidc.bearer_issuers]]\naudiences = [\"a\"]"),
        "oidc.bearer_issuers[0].issuer",
        "required",
    );
    assert_problem(
        &rest("[[oidc.bearer_issuers]]\nissuer = \"https://k8s\""),
        "oidc.bearer_issuers[0].audiences",
        "at least one",
    );
    assert_problem(
        &rest("[[oidc.bearer_issuers]]\nissuer = \"kubernetes\"\naudiences = [\"a\"]"),
        "oidc.bearer_issuers[0].jwks_url",
        "required",
    );
    assert_problem(
        &rest("[[oidc.bearer_issuers]]\nissuer = \"https://k8s\"\naudiences = [\"a\"]\njwks_url = \"nope\""),
        "oidc.bearer_issuers[0].jwks_url",
        "not an absolute URL",
    );
    assert_problem(
        &rest(
            "[[oidc.bearer_issuers]]\nissuer = \"https://idp.example.com/\"\naudiences = [\"a\"]",
        ),
        "oidc.bearer_issuers[0].issuer",
        "main oidc.issuer",
    );
    assert!(b.typ.is_none());
    let typed = ok(&rest(
        "[[oidc.bearer_issuers]]\nissuer = \"https://k8s\"\naudiences = [\"a\"]\ntyp = \"at+jwt\"",
    ));
    assert_eq!(typed.oidc.bearer_issuers[0].typ.as_deref(), Some("at+jwt"));
    assert_problem(
        &rest(
            "[[oidc.bearer_issuers]]\nissuer = \"https://k8s\"\naudiences = [\"a\"]\ntyp = \" \"",
        ),
        "oidc.bearer_issuers[0].typ",
        "is empty",
    );
}

// === client secret sources ===

#[test]
fn client_secret_inline() {
    let cfg = ok(&oidc(&format!("client_secret = {CLIENT_SECRET:?}")));
    assert_eq!(cfg.oidc.client_secret.unwrap().expose(), CLIENT_SECRET);
}

#[test]
fn client_secret_file_is_relative_to_the_config_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client"), format!("{CLIENT_SECRET}\r\n")).unwrap();
    let text = oidc("client_secret_file = \"client\"");
    let cfg = Config::from_toml(&text, dir.path(), &default_env()).unwrap();
    assert_eq!(cfg.oidc.client_secret.unwrap().expose(), CLIENT_SECRET);
    // Only one newline is trimmed; inner whitespace stays.
    std::fs::write(dir.path().join("client"), "a b\n\n").unwrap();
    let cfg = Config::from_toml(&text, dir.path(), &default_env()).unwrap();
    assert_eq!(cfg.oidc.client_secret.unwrap().expose(), "a b\n");
}

#[test]
fn client_secret_from_env_only_when_no_key_is_set() {
    let mut e = default_env();
    e.insert("PORTCULLIS_OIDC_CLIENT_SECRET".into(), CLIENT_SECRET.into());
    let cfg = load_with(&oidc(""), &e).unwrap();
    assert_eq!(cfg.oidc.client_secret.unwrap().expose(), CLIENT_SECRET);
    // A key in the file as well is an error naming both places.
    let err = load_with(&oidc("client_secret = \"from-file-config\""), &e).unwrap_err();
    assert_eq!(
        err.problems(),
        [Problem {
            key: "oidc.client_secret".into(),
            message: "is given twice, in oidc.client_secret and in the environment variable PORTCULLIS_OIDC_CLIENT_SECRET; give it in one place only".into(),
        }]
    );
    // An empty variable counts as unset.
    e.insert("PORTCULLIS_OIDC_CLIENT_SECRET".into(), String::new());
    assert!(load_with(&oidc(""), &e)
        .unwrap()
        .oidc
        .client_secret
        .is_none());
    let cfg = load_with(&oidc("client_secret = \"from-file-config\""), &e).unwrap();
    assert_eq!(cfg.oidc.client_secret.unwrap().expose(), "from-file-config");
}

#[test]
fn client_secret_errors() {
    assert_problem(
        &oidc("client_secret = \"x\"\nclient_secret_file = \"/run/s\""),
        "oidc.client_secret",
        "is given twice, in oidc.client_secret and in oidc.client_secret_file",
    );
    assert_problem(&oidc("client_secret = \"\""), "oidc.client_secret", "empty");
    assert_problem(
        &oidc("client_secret_file = \"missing-file\""),
        "oidc.client_secret_file",
        "cannot read /nonexistent/missing-file",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let err = Config::from_toml(
        &oidc("client_secret_file = \"empty\""),
        dir.path(),
        &default_env(),
    )
    .unwrap_err();
    assert!(
        err.problems()
            .iter()
            .any(|p| p.key == "oidc.client_secret_file" && p.message.contains("empty")),
        "{err}"
    );
}

// === session secrets ===

#[test]
fn session_secret_sources() {
    let no_env = env(&[]);
    let cfg = load_with(&session(&format!("secret = {SESSION_SECRET:?}")), &no_env).unwrap();
    assert_eq!(cfg.session.secrets[0].expose(), SESSION_SECRET.as_bytes());

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/session"),
        format!("{SESSION_SECRET}\n"),
    )
    .unwrap();
    let text = session("secret_file = \"secrets/session\"");
    let cfg = Config::from_toml(&text, dir.path(), &no_env).unwrap();
    assert_eq!(cfg.session.secrets[0].expose(), SESSION_SECRET.as_bytes());

    let other = "another-secret-of-32-bytes-or-more!!";
    let cfg = load_with(
        &session(&format!("secrets = [{SESSION_SECRET:?}, {other:?}]")),
        &no_env,
    )
    .unwrap();
    assert_eq!(cfg.session.secrets.len(), 2);
    assert_eq!(cfg.session.secrets[1].expose(), other.as_bytes());

    let cfg = load_with(&session(""), &default_env()).unwrap();
    assert_eq!(cfg.session.secrets[0].expose(), SESSION_SECRET.as_bytes());

    // The list forms: whitespace-separated, the first signs.
    std::fs::write(
        dir.path().join("secrets/list"),
        format!("{other}\n\n  {SESSION_SECRET}\r\n"),
    )
    .unwrap();
    let text = session("secrets_file = \"secrets/list\"");
    let cfg = Config::from_toml(&text, dir.path(), &no_env).unwrap();
    let got: Vec<&[u8]> = cfg
        .session
        .secrets
        .iter()
        .map(|s| &s.expose()[..])
        .collect();
    assert_eq!(got, [other.as_bytes(), SESSION_SECRET.as_bytes()]);
    let list = env(&[(
        "PORTCULLIS_SESSION_SECRETS",
        &format!("{other} {SESSION_SECRET}"),
    )]);
    let cfg = load_with(&session(""), &list).unwrap();
    let got: Vec<&[u8]> = cfg
        .session
        .secrets
        .iter()
        .map(|s| &s.expose()[..])
        .collect();
    assert_eq!(got, [other.as_bytes(), SESSION_SECRET.as_bytes()]);
}

#[test]
fn session_secret_errors() {
    let no_env = env(&[]);
    let problems_of = |text: &str, e: &HashMap<String, String>| -> Vec<Problem> {
        load_with(text, e).unwrap_err().problems().to_vec()
    };
    let ps = problems_of(&session(""), &no_env);
    assert!(
        ps.iter()
            .any(|p| p.key == "session.secret" && p.message.contains("PORTCULLIS_SESSION_SECRET")),
        "{ps:?}"
    );
    let ps = problems_of(
        &session(&format!("secret = {SESSION_SECRET:?}\nsecret_file = \"x\"")),
        &no_env,
    );
    assert!(
        ps.iter().any(|p| p.key == "session.secret"
            && p.message
                == "is given twice, in session.secret and in session.secret_file; give it in one place only"),
        "{ps:?}"
    );
    let ps = problems_of(&session("secret = \"short-secret\""), &no_env);
    assert_eq!(ps, [Problem { key: "session.secret".into(), message: "is too short (12 bytes); at least 32 bytes are required (`portcullis gen-secret` prints one)".into() }]);
    let ps = problems_of(
        &session(&format!("secrets = [{SESSION_SECRET:?}, \"tiny\"]")),
        &no_env,
    );
    assert!(
        ps.iter()
            .any(|p| p.key == "session.secrets[1]" && p.message.contains("(4 bytes)")),
        "{ps:?}"
    );
    let ps = problems_of(&session("secrets = []"), &no_env);
    assert!(
        ps.iter()
            .any(|p| p.key == "session.secrets" && p.message.contains("empty")),
        "{ps:?}"
    );
    let ps = problems_of(
        &session(""),
        &env(&[("PORTCULLIS_SESSION_SECRET", "too-short")]),
    );
    assert!(
        ps.iter()
            .any(|p| p.key == "PORTCULLIS_SESSION_SECRET" && p.message.contains("(9 bytes)")),
        "{ps:?}"
    );
    let ps = problems_of(&session("secret_file = \"nope\""), &no_env);
    assert!(
        ps.iter()
            .any(|p| p.key == "session.secret_file" && p.message.contains("cannot read")),
        "{ps:?}"
    );
}

// === secrets in exactly one place ===

/// A secret-looking value valid for every secret: a session secret, a
/// client secret, an admin token and a Redis URL with a password.
const ANY_SECRET: &str = "redis://:HIDDENvalue0123456789abcdef@h:6379/0";

/// One way of giving a secret: its name in messages, and either a line of
/// its section or an environment variable.
struct Form {
    place: &'static str,
    line: Option<&'static str>,
    var: Option<&'static str>,
}

fn key(place: &'static str, line: &'static str) -> Form {
    Form {
        place,
        line: Some(line),
        var: None,
    }
}

fn var(place: &'static str, name: &'static str) -> Form {
    Form {
        place,
        line: None,
        var: Some(name),
    }
}

/// Every secret: the key its problems go under, the section its keys are
/// in, the lines it needs besides, and every form in the order messages list them.
fn secret_forms() -> Vec<(&'static str, &'static str, &'static str, Vec<Form>)> {
    vec![
        (
            "oidc.client_secret",
            "oidc",
            "",
            vec![
                key(
                    "oidc.client_secret",
                    "client_secret = \"redis://:HIDDENvalue0123456789abcdef@h:6379/0\"",
                ),
                key("oidc.client_secret_file", "client_secret_file = \"f\""),
                var(
                    "the environment variable PORTCULLIS_OIDC_CLIENT_SECRET",
                    "PORTCULLIS_OIDC_CLIENT_SECRET",
                ),
            ],
        ),
        (
            "session.secret",
            "session",
            "",
            vec![
                key(
                    "session.secret",
                    "secret = \"redis://:HIDDENvalue0123456789abcdef@h:6379/0\"",
                ),
                key("session.secret_file", "secret_file = \"f\""),
                key(
                    "session.secrets",
                    "secrets = [\"redis://:HIDDENvalue0123456789abcdef@h:6379/0\"]",
                ),
                key("session.secrets_file", "secrets_file = \"f\""),
                var(
                    "the environment variable PORTCULLIS_SESSION_SECRET",
                    "PORTCULLIS_SESSION_SECRET",
                ),
                var(
                    "the environment variable PORTCULLIS_SESSION_SECRETS",
                    "PORTCULLIS_SESSION_SECRETS",
                ),
            ],
        ),
        (
            "session.redis_url",
            "session",
            "store = \"redis\"",
            vec![
                key(
                    "session.redis_url",
                    "redis_url = \"redis://:HIDDENvalue0123456789abcdef@h:6379/0\"",
                ),
                key("session.redis_url_file", "redis_url_file = \"f\""),
                var(
                    "the environment variable PORTCULLIS_SESSION_REDIS_URL",
                    "PORTCULLIS_SESSION_REDIS_URL",
                ),
            ],
        ),
        (
            "server.admin_token_file",
            "server",
            "admin_listen = \"127.0.0.1:9180\"",
            vec![
                key("server.admin_token_file", "admin_token_file = \"f\""),
                var(
                    "the environment variable PORTCULLIS_SERVER_ADMIN_TOKEN",
                    "PORTCULLIS_SERVER_ADMIN_TOKEN",
                ),
            ],
        ),
    ]
}

/// Loads a config giving one secret in `forms`, every value [`ANY_SECRET`]
/// (the files `f` in `dir`).
fn load_forms(
    dir: &Path,
    problem_key: &str,
    section: &str,
    extra: &str,
    forms: &[&Form],
) -> Result<Config, ConfigError> {
    let lines: Vec<&str> = std::iter::once(extra)
        .chain(forms.iter().filter_map(|f| f.line))
        .collect();
    let lines = lines.join("\n");
    let text = match section {
        "oidc" => doc("", &lines, "", ""),
        "session" => doc("", "", &lines, ""),
        _ => doc(&lines, "", "", ""),
    };
    let mut e = if problem_key == "session.secret" {
        env(&[])
    } else {
        default_env()
    };
    for f in forms {
        if let Some(name) = f.var {
            e.insert(name.to_owned(), ANY_SECRET.to_owned());
        }
    }
    Config::from_toml(&text, dir, &e)
}

#[test]
fn every_secret_comes_from_each_of_its_places() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), format!("{ANY_SECRET}\n")).unwrap();
    for (problem_key, section, extra, forms) in secret_forms() {
        for form in &forms {
            let cfg = load_forms(dir.path(), problem_key, section, extra, &[form])
                .unwrap_or_else(|e| panic!("{}: {e}", form.place));
            let got = match problem_key {
                "oidc.client_secret" => cfg.oidc.client_secret.unwrap().expose().clone(),
                "session.secret" => {
                    String::from_utf8(cfg.session.secrets[0].expose().clone()).unwrap()
                }
                "session.redis_url" => cfg.session.redis_urls[0].expose().clone(),
                _ => cfg.server.admin_token.unwrap().expose().clone(),
            };
            assert_eq!(got, ANY_SECRET, "{}", form.place);
        }
    }
}

#[test]
fn every_secret_given_twice_is_an_error_naming_both_places() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), format!("{ANY_SECRET}\n")).unwrap();
    for (problem_key, section, extra, forms) in secret_forms() {
        for (i, a) in forms.iter().enumerate() {
            for b in &forms[i + 1..] {
                let err = load_forms(dir.path(), problem_key, section, extra, &[a, b])
                    .expect_err(b.place);
                assert_eq!(
                    err.problems(),
                    [Problem {
                        key: problem_key.into(),
                        message: format!(
                            "is given twice, in {} and in {}; give it in one place only",
                            a.place, b.place
                        ),
                    }],
                    "{} + {}",
                    a.place,
                    b.place
                );
                assert!(!format!("{err}").contains("HIDDEN"), "{err}");
            }
        }
        // All at once: one problem naming every place.
        if forms.len() > 2 {
            let all: Vec<&Form> = forms.iter().collect();
            let err = load_forms(dir.path(), problem_key, section, extra, &all).unwrap_err();
            let places: Vec<&str> = forms.iter().map(|f| f.place).collect();
            let (last, rest) = places.split_last().unwrap();
            assert_eq!(
                err.problems(),
                [Problem {
                    key: problem_key.into(),
                    message: format!(
                        "is given {} times, in {} and in {last}; give it in one place only",
                        forms.len(),
                        rest.join(", in ")
                    ),
                }]
            );
        }
    }
}

#[test]
fn session_secret_lists_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let no_env = env(&[]);
    let text = session("secrets_file = \"list\"");
    let problems_with = |contents: &str| -> Vec<Problem> {
        std::fs::write(dir.path().join("list"), contents).unwrap();
        Config::from_toml(&text, dir.path(), &no_env)
            .unwrap_err()
            .problems()
            .to_vec()
    };
    assert_eq!(
        problems_with(" \n\n"),
        [Problem {
            key: "session.secrets_file".into(),
            message: "holds no secret; list at least one, separated by whitespace (one a line)"
                .into()
        }]
    );
    assert_eq!(
        problems_with(&format!("{SESSION_SECRET}\nSHORTvalue\n")),
        [Problem {
            key: "session.secrets_file[1]".into(),
            message: "is too short (10 bytes); at least 32 bytes are required (`portcullis gen-secret` prints one)".into()
        }]
    );
    let ps = load_with(&session("secrets_file = \"nope\""), &no_env)
        .unwrap_err()
        .problems()
        .to_vec();
    assert!(
        ps.iter().any(|p| p.key == "session.secrets_file"
            && p.message.starts_with("cannot read /nonexistent/nope")),
        "{ps:?}"
    );
    let ps = load_with(
        &session(""),
        &env(&[(
            "PORTCULLIS_SESSION_SECRETS",
            &format!("{SESSION_SECRET} SHORTvalue"),
        )]),
    )
    .unwrap_err()
    .problems()
    .to_vec();
    assert_eq!(
        ps,
        [Problem {
            key: "PORTCULLIS_SESSION_SECRETS[1]".into(),
            message: "is too short (10 bytes); at least 32 bytes are required (`portcullis gen-secret` prints one)".into()
        }]
    );
}

#[test]
fn redis_url_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let redis = |line: &str| session(&format!("store = \"redis\"\n{line}"));
    // One URL: a single server; several: Redis Cluster seed nodes.
    std::fs::write(dir.path().join("url"), "redis://:pw@h:6379/0\n").unwrap();
    let text = redis("redis_url_file = \"url\"");
    let cfg = Config::from_toml(&text, dir.path(), &default_env()).unwrap();
    assert_eq!(cfg.session.redis_urls.len(), 1);
    assert_eq!(cfg.session.redis_urls[0].expose(), "redis://:pw@h:6379/0");
    std::fs::write(dir.path().join("url"), "redis://n1:7000\nredis://n2:7000\n").unwrap();
    let cfg = Config::from_toml(&text, dir.path(), &default_env()).unwrap();
    assert_eq!(cfg.session.redis_urls.len(), 2);
    // Checked like the inline form, under the file's key, never shown.
    std::fs::write(
        dir.path().join("url"),
        "redis://n1:7000\nredis+sentinel://:HIDDENpw@s:26379/m\n",
    )
    .unwrap();
    let err = Config::from_toml(&text, dir.path(), &default_env()).unwrap_err();
    assert!(
        err.problems()
            .iter()
            .any(|p| p.key == "session.redis_url_file[1]" && p.message.contains("Redis Cluster")),
        "{err}"
    );
    assert!(!err.to_string().contains("HIDDEN"), "{err}");
    std::fs::write(dir.path().join("url"), "\n").unwrap();
    let err = Config::from_toml(&text, dir.path(), &default_env()).unwrap_err();
    assert_eq!(
        err.problems(),
        [Problem {
            key: "session.redis_url_file".into(),
            message: "holds no Redis URL".into()
        }]
    );
    // The environment.
    let mut e = default_env();
    e.insert(
        "PORTCULLIS_SESSION_REDIS_URL".into(),
        "http://:HIDDENpw@h:1".into(),
    );
    let err = load_with(&redis(""), &e).unwrap_err();
    assert_eq!(
        err.problems(),
        [Problem {
            key: "PORTCULLIS_SESSION_REDIS_URL".into(),
            message: "has an unsupported scheme; use redis://, rediss:// or redis+sentinel://"
                .into()
        }]
    );
    // Set for a memory store: named where it was set.
    e.insert("PORTCULLIS_SESSION_REDIS_URL".into(), "redis://h:1".into());
    let err = load_with(&session(""), &e).unwrap_err();
    assert!(
        err.problems()[0].key == "PORTCULLIS_SESSION_REDIS_URL"
            && err.problems()[0]
                .message
                .contains("session.store is \"memory\""),
        "{err}"
    );
    // Required with store "redis": the message names every form.
    let err = load_with(&redis(""), &default_env()).unwrap_err();
    assert!(
        err.problems()[0].key == "session.redis_url"
            && err.problems()[0].message.contains("redis_url_file")
            && err.problems()[0]
                .message
                .contains("PORTCULLIS_SESSION_REDIS_URL"),
        "{err}"
    );
}

#[test]
fn admin_token_from_the_environment() {
    const TOKEN: &str = "HIDDEN-admin-token-0123456789";
    let with_token = |token: &str| {
        let mut e = default_env();
        e.insert("PORTCULLIS_SERVER_ADMIN_TOKEN".into(), token.into());
        e
    };
    // Enough for an admin listener on the network.
    let cfg = load_with(
        &server("admin_listen = \"0.0.0.0:9180\""),
        &with_token(&format!("{TOKEN}\n")),
    )
    .unwrap();
    assert_eq!(cfg.server.admin_token.unwrap().expose(), TOKEN);
    // Checked like the file's token, under the variable's name.
    let err = load_with(
        &server("admin_listen = \"0.0.0.0:9180\""),
        &with_token("HIDDENshort"),
    )
    .unwrap_err();
    assert_eq!(
        err.problems(),
        [Problem {
            key: "PORTCULLIS_SERVER_ADMIN_TOKEN".into(),
            message: "the variable holds a token of 11 bytes; use at least 16 (`portcullis gen-secret` prints one)".into()
        }]
    );
    // Without an admin listener it would do nothing.
    let err = load_with(&server(""), &with_token(TOKEN)).unwrap_err();
    assert_eq!(
        err.problems(),
        [Problem {
            key: "PORTCULLIS_SERVER_ADMIN_TOKEN".into(),
            message: "has no effect without server.admin_listen: the admin API is served only there; set admin_listen or unset the variable".into()
        }]
    );
    // The refusal of an open admin listener names both forms.
    let err = load_with(&server("admin_listen = \"0.0.0.0:9180\""), &default_env()).unwrap_err();
    let message = &err.problems()[0].message;
    assert!(
        message.contains("server.admin_token_file")
            && message.contains("PORTCULLIS_SERVER_ADMIN_TOKEN"),
        "{err}"
    );
}

#[test]
fn messages_never_contain_secrets() {
    let short_session = "SHORTsecretVALUE";
    let redis_pw = "REDISpassword77";
    let client = "CLIENTsecretVALUE";
    let texts = [
        session(&format!("secret = {short_session:?}")),
        session(&format!("secrets = [{SESSION_SECRET:?}, {short_session:?}]")),
        oidc(&format!("client_secret = {client:?}\nclient_secret_file = \"f\"")),
        session(&format!("store = \"redis\"\nredis_url = \"http://user:{redis_pw}@h:6379\"")),
        session(&format!("store = \"redis\"\nredis_url = \"redis://user:{redis_pw}@\"")),
        session(&format!("store = \"redis\"\nredis_url = [\"redis://a:1\", \"redis+sentinel://:{redis_pw}@s:26379/m\"]")),
        session(&format!("redis_url = \"redis://:{redis_pw}@h:6379\"")),
        rule(&format!("upstream = \"ftp://u:{redis_pw}@app\"")),
        rule(&format!("upstream = \"https://u:{redis_pw}@app\"")),
        session("secret = 987654321"),
        session("secrets = [\"a\", 987654321]"),
        session("redis_url = 987654321"),
        oidc("client_secret = [\"CLIENTsecretVALUE\"]"),
        session(&format!("secret = {short_session:?}\nlifetime = \"1x\"")),
    ];
    let envs = [
        env(&[]),
        env(&[("PORTCULLIS_SESSION_SECRET", short_session)]),
    ];
    for text in &texts {
        for e in &envs {
            let err = load_with(text, e).expect_err(text);
            let shown = format!("{err}\n{err:?}");
            for secret in [short_session, redis_pw, client, "987654321"] {
                assert!(
                    !shown.contains(secret),
                    "secret leaked:\n{shown}\n--- config ---\n{text}"
                );
            }
        }
    }
    // A valid config's Debug output is redacted too.
    let e = env(&[
        ("PORTCULLIS_OIDC_CLIENT_SECRET", client),
        ("PORTCULLIS_SESSION_SECRET", SESSION_SECRET),
    ]);
    let cfg = load_with(
        &session(&format!(
            "store = \"redis\"\nredis_url = \"redis://:{redis_pw}@h:6379\""
        )),
        &e,
    )
    .unwrap();
    let shown = format!("{cfg:?}");
    for secret in [client, SESSION_SECRET, redis_pw] {
        assert!(!shown.contains(secret), "secret in Debug: {shown}");
    }
}

// === [session] ===

#[test]
fn cookie_name_and_domain() {
    assert_problem(
        &session("cookie_name = \"my cookie\""),
        "session.cookie_name",
        "not a valid cookie name",
    );
    assert_problem(
        &session("cookie_name = \"\""),
        "session.cookie_name",
        "not a valid cookie name",
    );
    assert_problem(
        &session("cookie_name = \"__Host-s\"\ncookie_domain = \"example.com\""),
        "session.cookie_name",
        "__Host-",
    );
    assert_problem(
        &session("cookie_name = \"__Secure-s\"\ncookie_secure = false"),
        "session.cookie_name",
        "cookie_secure = true",
    );
    let cfg = ok(&session("cookie_domain = \".Example.COM\""));
    assert_eq!(cfg.session.cookie_domain.as_deref(), Some("example.com"));
    assert_problem(
        &session("cookie_domain = \"exa mple.com\""),
        "session.cookie_domain",
        "not a valid cookie domain",
    );
    assert_problem(
        &session("cookie_domain = \"example..com\""),
        "session.cookie_domain",
        "empty label",
    );
    let text = doc(
        "external_url = \"https://auth.other.org\"",
        "",
        "cookie_domain = \"example.com\"",
        "",
    );
    assert_problem(&text, "session.cookie_domain", "does not contain the host");
    ok(&doc(
        "external_url = \"https://auth.example.com\"",
        "",
        "cookie_domain = \"example.com\"",
        "",
    ));
    ok(&doc(
        "external_url = \"https://example.com\"",
        "",
        "cookie_domain = \"example.com\"",
        "",
    ));
}

#[test]
fn cookie_secure_matches_the_external_url() {
    let text = doc(
        "external_url = \"https://auth.example.com\"",
        "",
        "cookie_secure = false",
        "",
    );
    assert_problem(&text, "session.cookie_secure", "external_url is https");
    ok(&doc(
        "external_url = \"http://auth.example.com\"",
        "",
        "cookie_secure = false",
        "",
    ));
    let text = doc("external_url = \"http://auth.example.com\"", "", "", "");
    assert_problem(&text, "session.cookie_secure", "plain http");
    ok(&doc("external_url = \"http://localhost:4180\"", "", "", ""));
    ok(&session("cookie_secure = false"));
}

#[test]
fn lifetimes() {
    assert_problem(
        &session("lifetime = \"0s\""),
        "session.lifetime",
        "longer than zero",
    );
    assert_problem(
        &session("lifetime = \"1h\"\nidle_timeout = \"1h\""),
        "session.idle_timeout",
        "shorter than session.lifetime",
    );
    assert_problem(
        &session("idle_timeout = \"0s\""),
        "session.idle_timeout",
        "longer than zero",
    );
    assert_problem(
        &session("idle_timeout = \"500ms\""),
        "session.idle_timeout",
        "at least 1s",
    );
    let cfg = ok(&session(
        "lifetime = \"7d\"\nidle_timeout = \"2h\"\nrefresh = true",
    ));
    assert_eq!(cfg.session.lifetime, Duration::from_secs(7 * 86_400));
    assert_eq!(cfg.session.idle_timeout, Some(Duration::from_secs(7200)));
    assert!(cfg.session.refresh);
}

#[test]
fn redis_ca_is_read_at_load_time_and_only_for_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, ca.cert.pem()).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "nothing here\n").unwrap();
    let with = |url: &str, path: &std::path::Path| {
        session(&format!(
            "store = \"redis\"\nredis_url = {url:?}\nredis_ca = {:?}",
            path.display().to_string()
        ))
    };
    for url in [
        "rediss://:pw@redis.example.com:6380/0",
        "REDISS+SENTINEL://s1:26379/mymaster",
    ] {
        let cfg = ok(&with(url, &good));
        let got = cfg.session.redis_ca.expect("redis_ca kept");
        assert_eq!((got.path, got.certs.len()), (good.clone(), 1));
        assert!(got.pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    }
    assert_problem(
        &with("redis://redis.example.com:6379/0", &good),
        "session.redis_ca",
        "applies only to TLS",
    );
    assert_problem(
        &with("rediss://redis.example.com:6380/0", &empty),
        "session.redis_ca",
        "no CERTIFICATE block",
    );
    assert_problem(
        &with(
            "rediss://redis.example.com:6380/0",
            std::path::Path::new("/nonexistent/ca.pem"),
        ),
        "session.redis_ca",
        "cannot read /nonexistent/ca.pem",
    );
    assert_problem(
        &session(&format!("redis_ca = {:?}", good.display().to_string())),
        "session.redis_ca",
        "store is \"memory\"",
    );
    assert!(ok(&session("")).session.redis_ca.is_none());
}

#[test]
fn stores() {
    assert_problem(
        &session("store = \"disk\""),
        "session.store",
        "\"memory\", \"redis\"",
    );
    assert_problem(
        &session("store = \"redis\""),
        "session.redis_url",
        "required",
    );
    assert_problem(
        &session("redis_url = \"redis://h:6379\""),
        "session.redis_url",
        "store is \"memory\"",
    );
    for url in [
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@redis.example.com",
        "redis+sentinel://s1:26379,s2:26379/mymaster",
    ] {
        let cfg = ok(&session(&format!("store = \"redis\"\nredis_url = {url:?}")));
        assert_eq!(cfg.session.store, StoreKind::Redis);
        assert_eq!(cfg.session.redis_urls[0].expose(), url);
    }
    let cfg = ok(&session(
        "store = \"redis\"\nredis_url = [\"redis://a:7000\", \"redis://b:7000\"]",
    ));
    assert_eq!(cfg.session.redis_urls.len(), 2);
    assert_problem(
        &session("store = \"redis\"\nredis_url = \"http://h\""),
        "session.redis_url",
        "unsupported scheme",
    );
    assert_problem(
        &session("store = \"redis\"\nredis_url = \"h:6379\""),
        "session.redis_url",
        "not a URL",
    );
    assert_problem(
        &session("store = \"redis\"\nredis_url = []"),
        "session.redis_url",
        "empty list",
    );
    assert_problem(
        &session("store = \"redis\"\nredis_url = [\"redis://a:1\", \"redis+sentinel://s/m\"]"),
        "session.redis_url[1]",
        "sentinel",
    );
}

// === [headers] and [access] ===

#[test]
fn header_names_are_kept_once_across_loads() {
    // The names are cloned into every answer; they must be static text (a
    // clone then writes no shared count), and a reload must not add copies.
    let text = rest("[headers]\nuser = \"Remote-User\"\nemail = \"X-Mail-Of-Test\"");
    let (one, two) = (ok(&text), ok(&text));
    assert_eq!(one.headers.user, "remote-user");
    assert_eq!(one.headers.email.as_str(), "x-mail-of-test");
    assert_eq!(
        one.headers.email.as_str().as_ptr(),
        two.headers.email.as_str().as_ptr(),
        "the same text, not a second copy"
    );
    assert_eq!(one.headers.groups.as_str(), "x-auth-groups");
}

#[test]
fn headers() {
    let cfg = ok(&rest("[headers]\nuser = \"Remote-User\"\nstrip = [\"X-Forwarded-User\"]\npass_access_token = true"));
    assert_eq!(cfg.headers.user.as_str(), "remote-user");
    assert_eq!(cfg.headers.strip[0].as_str(), "x-forwarded-user");
    assert!(cfg.headers.pass_access_token);
    assert_problem(
        &rest("[headers]\nuser = \"X Auth\""),
        "headers.user",
        "not a valid header name",
    );
    assert_problem(
        &rest("[headers]\nemail = \"x_auth_user\""),
        "headers.email",
        "same header as headers.user",
    );
    assert_problem(
        &rest("[headers]\ngroups = \"X-Auth-Email\""),
        "headers.groups",
        "same header as headers.email",
    );
    assert_problem(
        &rest("[headers]\nuser = \"Authorization\""),
        "headers.user",
        "cannot carry the identity",
    );
    assert_problem(
        &rest("[headers]\nstrip = [\"ok\", \"bad:name\"]"),
        "headers.strip[1]",
        "not a valid header name",
    );
}

#[test]
fn header_preset_and_claims() {
    let cfg = ok(&rest(""));
    assert_eq!(cfg.headers.preset, crate::config::HeaderPreset::Portcullis);
    assert_eq!(cfg.headers.user.as_str(), "x-auth-user");
    assert_eq!(
        cfg.headers.preferred_username.as_str(),
        "x-auth-preferred-username"
    );
    assert_eq!(cfg.headers.access_token.as_str(), "x-auth-access-token");
    assert_eq!(cfg.oidc.capture.claims, vec![]);
    let cfg = ok(&rest(
        "[headers]\npreset = \"oauth2-proxy\"\ngroups = \"X-Groups\"\npreferred_username_claim = \"nick\"\n\
         [headers.claims]\n\"X-Auth-Name\" = \"name\"\n\"X-Auth-Tenant\" = \"org.id\"\n\"X-Auth-Org\" = \"org.id\"",
    ));
    let h = &cfg.headers;
    assert_eq!(h.preset, crate::config::HeaderPreset::OAuth2Proxy);
    assert_eq!(h.user.as_str(), "x-auth-request-user");
    assert_eq!(h.email.as_str(), "x-auth-request-email");
    assert_eq!(
        h.groups.as_str(),
        "x-groups",
        "an explicit name wins over the preset"
    );
    assert_eq!(
        h.preferred_username.as_str(),
        "x-auth-request-preferred-username"
    );
    assert_eq!(h.access_token.as_str(), "x-auth-request-access-token");
    let claims: Vec<_> = h
        .claims
        .iter()
        .map(|(n, p)| (n.as_str(), p.dotted.as_str()))
        .collect();
    assert_eq!(
        claims,
        [
            ("x-auth-name", "name"),
            ("x-auth-org", "org.id"),
            ("x-auth-tenant", "org.id")
        ]
    );
    // The identity keeps each path once, and the preferred-username claim.
    let capture = &cfg.oidc.capture;
    let paths: Vec<_> = capture.claims.iter().map(|p| p.dotted.as_str()).collect();
    assert_eq!(paths, ["name", "org.id"]);
    assert_eq!(capture.preferred_username.as_ref().unwrap().dotted, "nick");
    // Client copies of both presets' names are removed before proxying.
    let protected = h.protected();
    for name in [
        "x-auth-user",
        "x-auth-request-user",
        "x-auth-access-token",
        "x-auth-request-access-token",
        "x-auth-tenant",
        "x-groups",
    ] {
        assert!(protected.iter().any(|p| p == name), "{name}");
    }
    assert_problem(
        &rest("[headers]\npreset = \"authelia\""),
        "headers.preset",
        "not one of \"portcullis\", \"oauth2-proxy\"",
    );
    assert_problem(
        &rest("[headers.claims]\n\"X_Auth_User\" = \"name\""),
        "headers.claims.\"X_Auth_User\"",
        "same header as headers.user",
    );
    assert_problem(
        &rest("[headers.claims]\n\"Cookie\" = \"name\""),
        "headers.claims.\"Cookie\"",
        "cannot carry the identity",
    );
    assert_problem(
        &rest("[headers.claims]\n\"X-Auth-Name\" = \"a..b\""),
        "headers.claims.\"X-Auth-Name\"",
        "not a claim path",
    );
    assert_problem(
        &rest("[headers]\npreset = \"oauth2-proxy\"\npreferred_username = \"X-Auth-Request-Access-Token\""),
        "headers.preferred_username",
        "same header as the preset's access-token header",
    );
}

#[test]
fn access() {
    let cfg = ok(&rest("[access]\ndefault = \"authenticated\"\nallowed_redirect_domains = [\".Example.com\", \"app.example.org\"]"));
    assert_eq!(cfg.access.default, DefaultPolicy::Authenticated);
    assert_eq!(
        cfg.access.allowed_redirect_domains,
        [".example.com", "app.example.org"]
    );
    assert_problem(
        &rest("[access]\ndefault = \"allow\""),
        "access.default",
        "\"deny\", \"authenticated\"",
    );
    for (bad, fragment) in [
        ("https://example.com", "scheme"),
        ("example.com:443", "port"),
        ("example.com/x", "path"),
        ("*.example.com", ".example.com"),
        ("exa mple.com", "not a valid domain"),
        ("..example.com", "empty label"),
    ] {
        let text = rest(&format!("[access]\nallowed_redirect_domains = [{bad:?}]"));
        assert_problem(&text, "access.allowed_redirect_domains[0]", fragment);
    }
}

// === [[rule]] ===

#[test]
fn rule_hosts() {
    let cfg = ok(&rest(
        "[[rule]]\nhost = \"Grafana.Example.com\"\n[[rule]]\nhost = \"*.Example.com\"",
    ));
    assert_eq!(
        cfg.rules[0].host,
        Some(HostPattern::Exact("grafana.example.com".into()))
    );
    assert_eq!(
        cfg.rules[1].host,
        Some(HostPattern::Suffix(".example.com".into()))
    );
    for bad in [
        "*",
        "a.*.com",
        "*.example..com",
        "grafana.example.com:443",
        "*.*.com",
        "exa mple.com",
    ] {
        assert_problem(
            &rule(&format!("host = {bad:?}")),
            "rule[0].host",
            "is not a valid host pattern",
        );
    }
}

#[test]
fn problem_renders_key_value_and_reason() {
    let text = rest("[[rule]]\n[[rule]]\n[[rule]]\n[[rule]]\nhost = \"*.example..com\"");
    let p = problems(&text).remove(0);
    assert!(
        p.to_string()
            .starts_with("rule[3].host: \"*.example..com\" is not a valid host pattern"),
        "{p}"
    );
}

#[test]
fn rule_paths() {
    let cfg = ok(&rest(
        "[[rule]]\npath = \"/admin/\"\n[[rule]]\npath = \"/\"\n[[rule]]\npath = \"//a/./%7Eb\"",
    ));
    assert_eq!(cfg.rules[0].path, "/admin");
    assert_eq!(cfg.rules[1].path, "/");
    assert_eq!(cfg.rules[2].path, "/a/~b");
    for (bad, fragment) in [
        ("admin", "start with"),
        ("/a/../b", ".."),
        ("/a/%2e%2e/b", ".."),
        ("/a%2Fb", "encoded slash"),
        ("/a%5cb", "encoded slash"),
        ("/a\\\\b", "backslash"),
        ("/a?x=1", "query"),
    ] {
        assert_problem(
            &rule(&format!("path = \"{bad}\"")),
            "rule[0].path",
            fragment,
        );
    }
}

#[test]
fn rule_methods() {
    let cfg = ok(&rule(
        "methods = [\"get\", \"Post\", \"GET\", \"propfind\"]",
    ));
    let methods: Vec<String> = cfg.rules[0]
        .methods
        .as_ref()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(methods, ["GET", "POST", "PROPFIND"]);
    assert_problem(&rule("methods = []"), "rule[0].methods", "can never match");
    assert_problem(
        &rule("methods = [\"GET\", \"FETCH\"]"),
        "rule[0].methods[1]",
        "not an HTTP method",
    );
}

#[test]
fn rule_policies_and_subjects() {
    let cfg = ok(&rule("policy = \"public\"\nbearer = false"));
    assert_eq!(cfg.rules[0].policy, Policy::Public);
    assert!(!cfg.rules[0].bearer);
    assert_eq!(ok(&rule("policy = \"deny\"")).rules[0].policy, Policy::Deny);
    assert_problem(&rule("policy = \"allow\""), "rule[0].policy", "not one of");
    assert_problem(
        &rule("policy = \"public\"\ngroups = [\"admins\"]"),
        "rule[0].policy",
        "ignores groups",
    );
    assert_problem(
        &rule("policy = \"deny\"\nemails = [\"a@example.com\"]"),
        "rule[0].policy",
        "ignores groups",
    );
    let cfg = ok(&rule("groups = [\"admins\"]\nusers = [\"alice\"]\nemails = [\"Bob@Example.com\"]\nemail_domains = [\"@Example.org\"]"));
    let r = &cfg.rules[0];
    assert!(r.has_subjects());
    assert_eq!(r.emails, ["bob@example.com"]);
    assert_eq!(r.email_domains, ["example.org"]);
    assert_problem(
        &rule("emails = [\"bob\"]"),
        "rule[0].emails[0]",
        "not an e-mail address",
    );
    assert_problem(
        &rule("email_domains = [\"exa mple.org\"]"),
        "rule[0].email_domains[0]",
        "not a valid e-mail domain",
    );
    assert_problem(&rule("groups = [\"\"]"), "rule[0].groups[0]", "empty");
}

#[test]
fn rule_groups_all() {
    let cfg = ok(&rule("groups_all = [\"ops\", \"oncall\"]"));
    assert_eq!(cfg.rules[0].groups_all, ["ops", "oncall"]);
    assert!(!cfg.rules[0].has_subjects());
    assert_problem(
        &rule("policy = \"public\"\ngroups_all = [\"ops\"]"),
        "rule[0].policy",
        "ignores groups, groups_all",
    );
    assert_problem(
        &rule("groups_all = [\"ops\", \" \"]"),
        "rule[0].groups_all[1]",
        "empty",
    );
}

#[test]
fn rule_upstream_and_names() {
    let cfg = ok(&rule(
        "name = \"grafana\"\nupstream = \"http://127.0.0.1:3000\"",
    ));
    assert_eq!(cfg.rules[0].name, "grafana");
    assert_eq!(
        cfg.rules[0].upstream.as_ref().unwrap().as_str(),
        "http://127.0.0.1:3000/"
    );
    assert_problem(
        &rule("upstream = \"ftp://app\""),
        "rule[0].upstream",
        "http:// or https://",
    );
    assert_problem(
        &rule("upstream = \"127.0.0.1:3000\""),
        "rule[0].upstream",
        "",
    );
    assert_problem(&rule("name = \" \""), "rule[0].name", "empty");
    let text = rest("[[rule]]\nname = \"a\"\n[[rule]]\nname = \"a\"");
    assert_problem(&text, "rule[1].name", "already the name of rule[0]");
    let cfg = ok(&rest("[[rule]]\n[[rule]]\nname = \"x\"\n[[rule]]"));
    let names: Vec<&str> = cfg.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["rule[0]", "x", "rule[2]"]);
}

// === collecting and rendering ===

#[test]
fn all_problems_are_collected_and_listed_one_per_line() {
    let text = doc(
        "listen = \"bad\"",
        "issuer = \"http://idp.example.com\"",
        "lifetime = \"0s\"",
        "[[rule]]\nhost = \"*\"\nmethods = []",
    );
    let err = load_with(&text, &default_env()).unwrap_err();
    let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "oidc.issuer",
            "session.lifetime",
            "rule[0].host",
            "rule[0].methods"
        ]
    );
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], "invalid config (5 problems):");
    assert_eq!(lines.len(), 6);
    assert!(lines[1].starts_with("server.listen: \"bad\""), "{shown}");
    assert!(lines[4].starts_with("rule[0].host: \"*\""), "{shown}");
}

#[test]
fn load_reads_the_file_and_resolves_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("session.key"), SESSION_SECRET).unwrap();
    std::fs::write(dir.path().join("client.key"), format!("{CLIENT_SECRET}\n")).unwrap();
    let text = doc(
        "",
        "client_secret_file = \"client.key\"",
        "secret_file = \"session.key\"",
        "",
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = Config::load(&path, &env(&[])).unwrap();
    assert_eq!(cfg.oidc.client_secret.unwrap().expose(), CLIENT_SECRET);
    assert_eq!(cfg.session.secrets[0].expose(), SESSION_SECRET.as_bytes());

    let missing = dir.path().join("missing.toml");
    let err = Config::load(&missing, &env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("missing.toml"), "{err}");
}

#[test]
fn process_env_reads_the_environment() {
    assert!(ProcessEnv
        .var("PORTCULLIS_TEST_SURELY_UNSET_VARIABLE")
        .is_none());
    assert!(ProcessEnv.var("PATH").is_some() || ProcessEnv.var("HOME").is_some());
}

#[test]
fn connections_per_client_default_follows_a_small_max_connections() {
    let small = ok(&server("max_connections = 40"));
    assert_eq!(small.server.max_connections_per_client, 10);
    let tiny = ok(&server("max_connections = 2"));
    assert_eq!(tiny.server.max_connections_per_client, 1);
    let set = ok(&server("max_connections_per_client = 3"));
    assert_eq!(set.server.max_connections_per_client, 3);
}

#[test]
fn rule_networks() {
    let text = rest(
        "[access.networks]\nlan = [\"192.168.0.0/16\", \"fd00::/8\"]\noffice = [\"10.66.1.7\"]\n\n[[rule]]\nnetworks = [\"lan\", \"203.0.113.0/24\", \"2001:db8::1\", \"office\", \"::ffff:10.0.0.0/104\", \"192.168.3.4/16\"]",
    );
    let cfg = ok(&text);
    let nets: Vec<String> = cfg.rules[0]
        .networks
        .as_ref()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        nets,
        [
            "192.168.0.0/16",
            "fd00::/8",
            "203.0.113.0/24",
            "2001:db8::1/128",
            "10.66.1.7/32",
            "10.0.0.0/8"
        ]
    );
    assert!(ok(&rule("path = \"/\"")).rules[0].networks.is_none());
    assert_problem(
        &rule("networks = []"),
        "rule[0].networks",
        "can never match",
    );
    assert_problem(
        &rule("networks = [\"lan\"]"),
        "rule[0].networks[0]",
        "not a CIDR, an IP address, or a list under [access.networks]",
    );
    assert_problem(
        &rule("networks = [\"10.0.0.0/33\"]"),
        "rule[0].networks[0]",
        "not a CIDR",
    );
    assert_problem(
        &rest("[access.networks]\nlan = []"),
        "access.networks.lan",
        "is empty",
    );
    assert_problem(
        &rest("[access.networks]\nlan = [\"192.168.0.0/16\", \"nope.example\"]"),
        "access.networks.lan[1]",
        "not a CIDR",
    );
}

// === Basic auth ===

#[test]
fn basic_auth_reads_the_htpasswd_files_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "$2y$05$0b376LHGYrR0ADqlQxkUyeWqu2/bHi09ZEiC04JCaOGrCfzGKi1Gu";
    std::fs::write(dir.path().join("htpasswd"), format!("alice:{hash}\n")).unwrap();
    std::fs::write(dir.path().join("htgroups"), "ops: alice\n").unwrap();
    let text = rest("[access]\nhtpasswd_file = \"htpasswd\"\nhtpasswd_groups_file = \"htgroups\"\n[[rule]]\nbasic_auth = true\ngroups = [\"ops\"]");
    let cfg = Config::from_toml(&text, dir.path(), &default_env()).unwrap();
    assert!(cfg.rules[0].basic_auth);
    let users = cfg.access.htpasswd.unwrap();
    assert_eq!(users.get("alice").unwrap().identity.groups, vec!["ops"]);
    assert!(!ok(&rule("path = \"/\"")).rules[0].basic_auth);
}

#[test]
fn basic_auth_problems() {
    assert_problem(
        &rule("basic_auth = true"),
        "rule[0].basic_auth",
        "needs access.htpasswd_file",
    );
    assert_problem(
        &rest("[access]\nhtpasswd_groups_file = \"/g\""),
        "access.htpasswd_groups_file",
        "access.htpasswd_file is not set",
    );
    assert_problem(
        &rest("[access]\nhtpasswd_file = \"/nonexistent/htpasswd\""),
        "access.htpasswd_file",
        "cannot read /nonexistent/htpasswd",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("htpasswd"),
        "# users\nbob:$apr1$ahmAwEGD$U.1opusfy8dR9yB192vq.1\ncarol:plain\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("htgroups"), "ops alice\n").unwrap();
    let text = rest("[access]\nhtpasswd_file = \"htpasswd\"\nhtpasswd_groups_file = \"htgroups\"\n[[rule]]\npolicy = \"public\"\nbasic_auth = true");
    let ps = match Config::from_toml(&text, dir.path(), &default_env()) {
        Err(ConfigError::Invalid(p)) => p,
        other => panic!("expected problems, got {other:?}"),
    };
    let shown: Vec<String> = ps.iter().map(ToString::to_string).collect();
    let has = |key: &str, fragments: &[&str]| {
        ps.iter()
            .any(|p| p.key == key && fragments.iter().all(|f| p.message.contains(f)))
    };
    assert!(
        has("access.htpasswd_file", &["line 2", "\"bob\"", "MD5"]),
        "{shown:#?}"
    );
    assert!(
        has(
            "access.htpasswd_file",
            &["line 3", "\"carol\"", "plain-text"]
        ),
        "{shown:#?}"
    );
    assert!(
        has("access.htpasswd_groups_file", &["line 1"]),
        "{shown:#?}"
    );
    assert!(
        has("rule[0].basic_auth", &["policy = \"authenticated\""]),
        "{shown:#?}"
    );
    // The file's problems are enough: no "needs access.htpasswd_file" on top.
    assert!(!has("rule[0].basic_auth", &["needs"]), "{shown:#?}");
    assert!(
        !shown.iter().any(|s| s.contains("U.1opusfy8")),
        "{shown:#?}"
    );
}

// === reload ===

#[test]
fn reload_applies_per_request_keys_and_names_the_rest() {
    let running = ok(&doc(
        "listen = \"127.0.0.1:4180\"\ntrusted_proxies = [\"10.0.0.1\"]",
        "client_id = \"one\"\nclient_secret = \"s1\"",
        "cookie_name = \"_one\"",
        "[[rule]]\npolicy = \"public\"",
    ));
    // Nothing changed: nothing to restart.
    let same = reload::merge(&running, running.clone());
    assert!(same.restart_required.is_empty());

    let loaded = ok(&doc(
        "listen = \"127.0.0.1:4181\"\ntrusted_proxies = [\"10.0.0.2\"]\ndebug_endpoint = true\naccess_log = true\nprefix = \"/auth\"\nmax_connections_per_client = 7",
        "client_id = \"two\"\nclient_secret = \"s2\"\nrp_logout = true",
        "cookie_name = \"_two\"\nrefresh = true",
        "[headers]\nuser = \"X-User\"\n[[rule]]\npolicy = \"deny\"",
    ));
    let merged = reload::merge(&running, loaded);
    assert_eq!(
        merged.restart_required,
        [
            "server.listen",
            "oidc.client_id",
            "oidc.client_secret",
            "session.cookie_name"
        ]
    );
    let c = &merged.config;
    // Start-up keys keep their running values...
    assert_eq!(c.server.listen, running.server.listen);
    assert_eq!(c.oidc.client_id, "one");
    assert_eq!(c.oidc.client_secret.as_ref().unwrap().expose(), "s1");
    assert_eq!(c.session.cookie_name, "_one");
    // ...per-request keys and the other sections take the new ones.
    assert_eq!(
        c.server.trusted_proxies,
        ["10.0.0.2/32".parse::<IpNet>().unwrap()]
    );
    assert!(c.server.debug_endpoint && c.server.access_log);
    assert_eq!(c.server.prefix, "/auth");
    assert_eq!(c.server.max_connections_per_client, 7);
    assert!(c.oidc.rp_logout && c.session.refresh);
    assert_eq!(c.headers.user.as_str(), "x-user");
    assert_eq!(c.rules[0].policy, Policy::Deny);
    assert_eq!(reload::RELOADABLE.len(), 8);
}

/// New `[headers.claims]` names apply at once; new claim paths are what
/// logins capture, so they wait for a restart and are named.
#[test]
fn reload_keeps_the_captured_claim_paths() {
    let running = ok(&rest("[headers.claims]\n\"X-Auth-Name\" = \"name\""));
    let loaded = ok(&rest(
        "[headers.claims]\n\"X-Full-Name\" = \"name\"\n\"X-Auth-Tenant\" = \"org.id\"",
    ));
    let merged = reload::merge(&running, loaded);
    assert_eq!(merged.restart_required, ["headers.claims"]);
    assert_eq!(merged.config.oidc.capture, running.oidc.capture);
    let names: Vec<_> = merged
        .config
        .headers
        .claims
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, ["x-auth-tenant", "x-full-name"]);
}

#[test]
fn reload_notices_changed_secrets_and_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s"), SESSION_SECRET).unwrap();
    let text = session("secret_file = \"s\"");
    let no_env = env(&[]);
    let running = Config::from_toml(&text, dir.path(), &no_env).unwrap();
    // The same key, another value in the file: a change.
    std::fs::write(dir.path().join("s"), format!("{SESSION_SECRET}-rotated")).unwrap();
    let loaded = Config::from_toml(&text, dir.path(), &no_env).unwrap();
    let merged = reload::merge(&running, loaded);
    assert_eq!(merged.restart_required, ["session.secret"]);
    assert_eq!(
        merged.config.session.secrets[0].expose(),
        SESSION_SECRET.as_bytes()
    );
}

#[test]
fn pages_dir_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pages")).unwrap();
    std::fs::write(dir.path().join("pages/error.html"), "{{title}}").unwrap();
    let text = server("pages_dir = \"pages\"");
    let cfg = Config::from_toml(&text, dir.path(), &default_env()).unwrap();
    assert!(cfg.server.pages.unwrap().error.is_some());
    assert!(ok(&server("")).server.pages.is_none());
    std::fs::write(dir.path().join("pages/error.html"), "{{tilte}}").unwrap();
    let ps = match Config::from_toml(&text, dir.path(), &default_env()) {
        Err(ConfigError::Invalid(p)) => p,
        other => panic!("expected problems, got {other:?}"),
    };
    assert!(
        ps.iter().any(|p| p.key == "server.pages_dir"
            && p.message
                .contains("error.html: line 1: unknown placeholder {{tilte}}")),
        "{ps:?}"
    );
    assert_problem(
        &server("pages_dir = \"/nonexistent/pages\""),
        "server.pages_dir",
        "cannot read /nonexistent/pages",
    );
}

#[test]
fn assertion_key_from_the_environment_or_a_file_but_not_both() {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let text = doc(
        "external_url = \"https://auth.example.com\"",
        "",
        "",
        "[headers]\nassertion = true\n[[rule]]\npolicy = \"public\"\n",
    );
    let with_env = env(&[
        ("PORTCULLIS_SESSION_SECRET", SESSION_SECRET),
        ("PORTCULLIS_HEADERS_ASSERTION_KEY", pem.as_str()),
    ]);
    let c = load_with(&text, &with_env).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        c.headers.assertion.is_some(),
        "the key from the environment is used"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("assertion.pem");
    std::fs::write(&file, &pem).unwrap();
    let both = text.replace(
        "assertion = true\n",
        &format!("assertion = true\nassertion_key_file = {file:?}\n"),
    );
    assert!(
        load_with(&both, &default_env()).is_ok(),
        "the file alone works"
    );
    match load_with(&both, &with_env) {
        Err(ConfigError::Invalid(ps)) => assert!(
            ps.iter().any(|p| p.key == "headers.assertion_key_file"
                && p.message.contains("PORTCULLIS_HEADERS_ASSERTION_KEY")),
            "{ps:?}"
        ),
        other => panic!("a key given twice must be refused: {:?}", other.map(|_| ())),
    }
    let bad = env(&[
        ("PORTCULLIS_SESSION_SECRET", SESSION_SECRET),
        ("PORTCULLIS_HEADERS_ASSERTION_KEY", "not a key"),
    ]);
    match load_with(&text, &bad) {
        Err(ConfigError::Invalid(ps)) => {
            assert!(
                ps.iter()
                    .any(|p| p.key == "PORTCULLIS_HEADERS_ASSERTION_KEY"),
                "{ps:?}"
            );
            assert!(
                !ps.iter().any(|p| p.message.contains("not a key")),
                "the value is never echoed"
            );
        }
        other => panic!("a bad key must be refused: {:?}", other.map(|_| ())),
    }
}
