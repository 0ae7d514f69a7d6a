//! Rule compilation, precedence and matching, end to end from raw request
//! values (host header, request-target) through normalisation to a decision.

use http::Method;

use super::host::normalize_host;
use super::path::{normalize, split_target, PathError};
use super::*;

fn rule(name: &str, host: Option<&str>, path: &str) -> RuleConfig {
    let host = host.map(|h| match h.strip_prefix('*') {
        Some(suffix) => HostPattern::Suffix(suffix.to_owned()),
        None => HostPattern::Exact(h.to_owned()),
    });
    RuleConfig {
        name: name.to_owned(),
        host,
        path: path.to_owned(),
        methods: None,
        policy: Policy::Authenticated,
        groups: vec![],
        users: vec![],
        emails: vec![],
        email_domains: vec![],
        groups_all: vec![],
        networks: None,
        upstream: None,
        upstream_options: Default::default(),
        bearer: true,
        basic_auth: false,
        path_case: Default::default(),
    }
}

fn with_methods(mut r: RuleConfig, methods: &[Method]) -> RuleConfig {
    r.methods = Some(methods.to_vec());
    r
}

fn set(rules: &[RuleConfig]) -> RuleSet {
    RuleSet::compile(rules, DefaultPolicy::Deny).unwrap_or_else(|e| panic!("{e}"))
}

/// Name of the deciding rule, `"default"`, or the normalisation error.
fn decide(set: &RuleSet, host: &str, target: &str, method: &Method) -> Result<String, String> {
    let host = normalize_host(host).map_err(|e| format!("host: {e}"))?;
    let path = normalize(split_target(target)).map_err(|e| format!("path: {e}"))?;
    let facts = RequestFacts {
        host: &host,
        path: &path,
        method: Some(method),
        client: None,
    };
    Ok(match set.evaluate(&facts) {
        Match::Rule(r) => r.name.clone(),
        Match::Default(_) => "default".to_owned(),
    })
}

fn get(set: &RuleSet, host: &str, target: &str) -> String {
    decide(set, host, target, &Method::GET).unwrap_or_else(|e| panic!("{host} {target}: {e}"))
}

#[test]
fn first_match_in_file_order_across_host_kinds() {
    let s = set(&[
        rule("any-health", None, "/healthz"),
        rule("wild-api", Some("*.example.com"), "/api"),
        rule("exact-app", Some("app.example.com"), "/"),
        rule("wild-all", Some("*.example.com"), "/"),
        rule("any-all", None, "/"),
    ]);
    assert_eq!(get(&s, "app.example.com", "/healthz"), "any-health");
    assert_eq!(get(&s, "app.example.com", "/api/x"), "wild-api");
    assert_eq!(get(&s, "app.example.com", "/other"), "exact-app");
    assert_eq!(get(&s, "other.example.com", "/other"), "wild-all");
    assert_eq!(get(&s, "example.com", "/other"), "any-all");
    assert_eq!(get(&s, "example.org", "/api"), "any-all");
}

#[test]
fn exact_rule_after_wildcard_loses_on_overlap_only() {
    let s = set(&[
        rule("wild-admin", Some("*.example.com"), "/admin"),
        rule("exact", Some("app.example.com"), "/"),
    ]);
    assert_eq!(get(&s, "app.example.com", "/admin"), "wild-admin");
    assert_eq!(get(&s, "app.example.com", "/x"), "exact");
}

#[test]
fn default_policy_when_nothing_matches() {
    let rules = [rule("app", Some("app.example.com"), "/")];
    let s =
        RuleSet::compile(&rules, DefaultPolicy::Authenticated).unwrap_or_else(|e| panic!("{e}"));
    let facts = RequestFacts {
        host: "other.example.com",
        path: "/",
        method: Some(&Method::GET),
        client: None,
    };
    assert!(matches!(
        s.evaluate(&facts),
        Match::Default(DefaultPolicy::Authenticated)
    ));
    let empty = RuleSet::compile(&[], DefaultPolicy::Deny).unwrap_or_else(|e| panic!("{e}"));
    assert!(empty.is_empty());
    assert!(matches!(
        empty.evaluate(&facts),
        Match::Default(DefaultPolicy::Deny)
    ));
    assert_eq!(s.len(), 1);
    assert_eq!(s.default_policy(), DefaultPolicy::Authenticated);
}

#[test]
fn segment_boundaries() {
    let s = set(&[
        rule("admin", None, "/admin"),
        rule("dir", None, "/dir/"),
        rule("deep", None, "/a/b"),
    ]);
    for (path, want) in [
        ("/admin", "admin"),
        ("/admin/", "admin"),
        ("/admin/x/y", "admin"),
        ("/administrator", "default"),
        ("/admin.php", "default"),
        ("/admin-x", "default"),
        ("/adm", "default"),
        ("/", "default"),
        ("/dir/", "dir"),
        ("/dir/x", "dir"),
        ("/dir", "default"),
        ("/a/b", "deep"),
        ("/a/b/c", "deep"),
        ("/a/bc", "default"),
        ("/a", "default"),
    ] {
        assert_eq!(get(&s, "h", path), want, "{path}");
    }
}

#[test]
fn root_matches_everything() {
    let s = set(&[rule("root", Some("h"), "/")]);
    for path in ["/", "/x", "/x/y/", "/%C3%A9", "/a;b"] {
        assert_eq!(get(&s, "h", path), "root", "{path}");
    }
}

#[test]
fn methods() {
    let s = set(&[
        with_methods(rule("read", None, "/api"), &[Method::GET, Method::HEAD]),
        with_methods(rule("write", None, "/api"), &[Method::POST]),
    ]);
    let d = |m: Method| decide(&s, "h", "/api/x", &m).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d(Method::GET), "read");
    assert_eq!(d(Method::HEAD), "read");
    assert_eq!(d(Method::POST), "write");
    assert_eq!(d(Method::DELETE), "default");
    assert_eq!(
        d(Method::from_bytes(b"PROPFIND").unwrap_or(Method::GET)),
        "default"
    );
}

/// A method the front proxy did not name satisfies no `methods` list, but
/// a rule without one still matches.
#[test]
fn unknown_method_matches_only_rules_without_methods() {
    let s = set(&[
        with_methods(rule("read", None, "/api"), &[Method::GET, Method::HEAD]),
        rule("any", None, "/api/any"),
    ]);
    let unknown = |path| {
        let facts = RequestFacts {
            host: "h",
            path,
            method: None,
            client: None,
        };
        match s.evaluate(&facts) {
            Match::Rule(r) => r.name.clone(),
            Match::Default(_) => "default".to_owned(),
        }
    };
    assert_eq!(unknown("/api/x"), "default");
    assert_eq!(unknown("/api/any/x"), "any");
}

#[test]
fn path_tricks() {
    let s = set(&[
        rule("admin", Some("app.example.com"), "/admin"),
        rule("secret", Some("app.example.com"), "/api/secret"),
        rule("rest", Some("app.example.com"), "/"),
    ]);
    let bad = |e: PathError| Err(format!("path: {e}"));
    let cases: &[(&str, Result<&str, String>)] = &[
        ("/admin", Ok("admin")),
        ("/admin/../admin", Ok("admin")),
        ("/x/../admin", Ok("admin")),
        ("/ADMIN", Ok("rest")),
        ("/Admin/x", Ok("rest")),
        ("//admin", Ok("admin")),
        ("///admin//x", Ok("admin")),
        ("/./admin", Ok("admin")),
        ("/%61dmin", Ok("admin")),
        ("/%61%64%6D%69%6E/", Ok("admin")),
        ("/x/%2e%2e/admin", Ok("admin")),
        ("/x/%2E./admin", Ok("admin")),
        ("/admin?x=/public", Ok("admin")),
        ("/public?/admin", Ok("rest")),
        ("/admin#frag", Ok("admin")),
        ("https://app.example.com/admin?q", Ok("admin")),
        ("/admin;x", Ok("admin")),
        ("/admin;jsessionid=abc/users", Ok("admin")),
        ("/api;a=b/secret", Ok("secret")),
        ("/api/secret;x", Ok("secret")),
        ("/api/secret%3Bx", Ok("rest")),
        ("/admin%20", Ok("rest")),
        ("/%2e%2e/admin", bad(PathError::AboveRoot)),
        ("/a/../../etc", bad(PathError::AboveRoot)),
        ("/admin%2f..", bad(PathError::EncodedSlash)),
        ("/public%2F..%2Fadmin", bad(PathError::EncodedSlash)),
        ("/admin%5c", bad(PathError::EncodedBackslash)),
        ("/admin\\x", bad(PathError::Backslash)),
        ("/public\\..\\admin", bad(PathError::Backslash)),
        ("/%00", bad(PathError::Nul)),
        ("/admin%00.html", bad(PathError::Nul)),
        ("/adm%0Ain", bad(PathError::EncodedControlChar)),
        ("/adm\tin", bad(PathError::ControlChar)),
        ("/%zz", bad(PathError::MalformedPercent)),
        ("/%4", bad(PathError::MalformedPercent)),
        ("/public/..;/admin", bad(PathError::ParamSegment)),
        ("/;/admin", bad(PathError::ParamSegment)),
        ("/public/%252e%252e/admin", bad(PathError::DoubleEncoded)),
    ];
    for (target, want) in cases {
        let got = decide(&s, "app.example.com", target, &Method::GET);
        assert_eq!(got, want.clone().map(str::to_owned), "{target:?}");
    }
}

#[test]
fn host_tricks() {
    let s = set(&[
        rule("exact", Some("app.example.com"), "/"),
        rule("wild", Some("*.example.com"), "/"),
        rule("v6", Some("[::1]"), "/"),
        rule("ip", Some("10.0.0.1"), "/"),
    ]);
    for (host, want) in [
        ("app.example.com", "exact"),
        ("APP.Example.COM", "exact"),
        ("app.example.com:8443", "exact"),
        ("app.example.com.", "exact"),
        ("App.Example.Com.:443", "exact"),
        (" app.example.com ", "exact"),
        ("x.example.com", "wild"),
        ("a.b.c.example.com", "wild"),
        ("example.com", "default"),
        ("notexample.com", "default"),
        ("example.com.evil.org", "default"),
        ("app.example.com.evil.org", "default"),
        ("[::1]:8080", "v6"),
        ("[0:0::1]", "v6"),
        ("[::2]", "default"),
        ("10.0.0.1:80", "ip"),
    ] {
        assert_eq!(get(&s, host, "/"), want, "{host}");
    }
    for host in [
        "",
        "app.example.com/x",
        "evil@app.example.com",
        ".example.com",
        "%61pp.example.com",
        "ap p.example.com",
    ] {
        assert!(
            decide(&s, host, "/", &Method::GET).is_err(),
            "{host:?} accepted"
        );
    }
}

#[test]
fn deep_wildcards_and_more_specific_suffixes() {
    let s = set(&[
        rule("internal", Some("*.internal.example.com"), "/"),
        rule("wild", Some("*.example.com"), "/"),
    ]);
    assert_eq!(get(&s, "a.internal.example.com", "/"), "internal");
    assert_eq!(get(&s, "internal.example.com", "/"), "wild");
    assert_eq!(get(&s, "x.y.example.com", "/"), "wild");
}

#[test]
fn shadowed_rules_are_refused() {
    let cases: Vec<(Vec<RuleConfig>, &str)> = vec![
        (
            vec![rule("all", None, "/"), rule("x", None, "/x")],
            "rule[1] (\"x\") can never match: rule[0] (\"all\") matches every request it would",
        ),
        (
            vec![
                rule("wild", Some("*.example.com"), "/"),
                rule("app", Some("app.example.com"), "/"),
            ],
            "rule[1] (\"app\") can never match: rule[0] (\"wild\")",
        ),
        (
            vec![
                rule("wild", Some("*.example.com"), "/"),
                rule("deeper", Some("*.a.example.com"), "/x"),
            ],
            "rule[1] (\"deeper\")",
        ),
        (
            vec![
                rule("a", Some("h"), "/api"),
                rule("b", Some("h"), "/api/v1"),
            ],
            "rule[1] (\"b\")",
        ),
        (
            vec![rule("a", Some("h"), "/api"), rule("b", Some("h"), "/api")],
            "rule[1] (\"b\")",
        ),
        (
            vec![
                with_methods(rule("a", None, "/api"), &[Method::GET, Method::POST]),
                with_methods(rule("b", None, "/api/x"), &[Method::POST]),
            ],
            "rule[1] (\"b\")",
        ),
        (
            vec![rule("rule[0]", None, "/"), rule("rule[1]", None, "/x")],
            "rule[1] can never match: rule[0] matches",
        ),
    ];
    for (rules, want) in cases {
        let err = RuleSet::compile(&rules, DefaultPolicy::Deny)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with(want),
            "{err:?} does not start with {want:?}"
        );
        assert!(matches!(
            RuleSet::check(&rules)[..],
            [RulesError::Shadowed { .. }]
        ));
    }
}

#[test]
fn overlapping_but_reachable_rules_are_accepted() {
    let rules = [
        rule("app-admin", Some("app.example.com"), "/admin"),
        rule("wild", Some("*.example.com"), "/"),
        rule("apex", Some("example.com"), "/"),
        rule("admin", None, "/admin"),
        with_methods(rule("get", None, "/x"), &[Method::GET]),
        rule("x", None, "/x"),
        rule("xy", None, "/xy"),
        rule("all", None, "/"),
    ];
    assert!(
        RuleSet::check(&rules).is_empty(),
        "{:?}",
        RuleSet::check(&rules)
    );
}

#[test]
fn dead_rules_of_other_kinds() {
    let mut empty_methods = rule("m", None, "/");
    empty_methods.methods = Some(vec![]);
    let cases = [
        (
            empty_methods,
            "rule[0] (\"m\") can never match: its methods list is empty",
        ),
        (
            rule("p", None, "/a/../b"),
            "rule[0] (\"p\") can never match: path \"/a/../b\" is not in normal form; write \"/b\"",
        ),
        (rule("p", None, "/%7euser"), "write \"/~user\""),
        (
            rule("p", None, "/a%2fb"),
            "path \"/a%2fb\" is not a valid request path",
        ),
        (rule("p", None, "admin"), "is not a valid request path"),
        (rule("p", None, "/a;b"), "contains ';'"),
        (
            rule("h", Some("App.example.com"), "/"),
            "host \"App.example.com\" is not a normalised host name",
        ),
        (
            rule("h", Some("app.example.com:443"), "/"),
            "is not a normalised host name",
        ),
        (
            rule("h", Some("*example.com"), "/"),
            "host \"*example.com\"",
        ),
    ];
    for (r, want) in cases {
        let err = RuleSet::compile(&[r], DefaultPolicy::Deny)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(want), "{err:?} does not contain {want:?}");
    }
}

#[test]
fn check_lists_every_problem() {
    let mut m = rule("m", None, "/m");
    m.methods = Some(vec![]);
    let rules = [
        rule("a", None, "/a"),
        m,
        rule("b", None, "/a/b"),
        rule("c", None, "/c/./"),
    ];
    let problems = RuleSet::check(&rules);
    assert_eq!(problems.len(), 3, "{problems:?}");
}

fn id(user: &str, email: &str, groups: &[&str]) -> Identity {
    Identity {
        user: user.into(),
        email: email.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Identity::default()
    }
}

fn compiled(r: RuleConfig) -> CompiledRule {
    CompiledRule::compile(0, &r)
}

#[test]
fn permits() {
    let open = compiled(rule("open", None, "/"));
    assert!(open.permits(&id("anyone", "", &[])));
    assert!(!open.has_subjects());
    assert!(!open.needs_groups());

    let mut r = rule("r", None, "/");
    r.groups = vec!["Admins".into()];
    r.users = vec!["alice".into()];
    r.emails = vec!["Boss@Example.com".into()];
    r.email_domains = vec!["Corp.Example".into()];
    let r = compiled(r);
    assert!(r.has_subjects());
    assert!(r.needs_groups());
    assert_eq!(r.required_groups(), ["Admins".to_string()]);
    assert!(r.permits(&id("alice", "", &[])));
    assert!(!r.permits(&id("Alice", "", &[])));
    assert!(r.permits(&id("x", "", &["staff", "Admins"])));
    assert!(!r.permits(&id("x", "", &["admins"])));
    assert!(r.permits(&id("x", "boss@example.COM", &[])));
    assert!(r.permits(&id("x", "someone@corp.example", &[])));
    // More than one `@`, or none before it: no address at any domain.
    assert!(!r.permits(&id("x", "a@b@CORP.EXAMPLE", &[])));
    assert!(!r.permits(&id("x", "a@corp.example@corp.example", &[])));
    assert!(!r.permits(&id("x", "@@corp.example", &[])));
    assert!(!r.permits(&id("x", "someone@corp.example.evil", &[])));
    assert!(!r.permits(&id("x", "someone@sub.corp.example", &[])));
    assert!(!r.permits(&id("x", "corp.example", &[])));
    assert!(!r.permits(&id("x", "@corp.example", &[])));
    assert!(!r.permits(&id("", "", &[""])));
    assert!(!r.permits(&id("bob", "bob@example.com", &["staff"])));

    let mut public = rule("p", None, "/");
    public.policy = Policy::Public;
    public.groups = vec!["g".into()];
    assert!(compiled(public).permits(&Identity::default()));
    let mut deny = rule("d", None, "/");
    deny.policy = Policy::Deny;
    let deny = compiled(deny);
    assert!(!deny.permits(&id("alice", "", &["admins"])));
    assert!(!deny.needs_groups());
}

#[test]
fn groups_all_requires_every_group_besides_the_subjects() {
    let mut r = rule("ops", None, "/");
    r.groups_all = vec!["ops".into(), "oncall".into()];
    let r = compiled(r);
    assert!(r.needs_groups());
    assert!(!r.has_subjects());
    assert!(r.permits(&id("x", "", &["oncall", "staff", "ops"])));
    assert!(!r.permits(&id("x", "", &["ops"])));
    assert!(!r.permits(&id("x", "", &["OPS", "oncall"])));
    assert!(!r.permits(&id("x", "", &[])));
    let who = id("x", "", &["ops"]);
    assert_eq!(r.missing_groups(&who).collect::<Vec<_>>(), ["oncall"]);
    assert_eq!(
        r.required_all_groups(),
        ["ops".to_string(), "oncall".to_string()]
    );

    // With any-of subjects, both parts must hold.
    let mut r = rule("both", None, "/");
    r.users = vec!["alice".into()];
    r.groups = vec!["staff".into()];
    r.groups_all = vec!["ops".into()];
    let r = compiled(r);
    assert!(r.permits(&id("alice", "", &["ops"])));
    assert!(r.permits(&id("bob", "", &["staff", "ops"])));
    assert!(!r.permits(&id("alice", "", &["staff"])));
    assert!(!r.permits(&id("bob", "", &["ops"])));
    assert!(!r.names_subject(&id("bob", "", &["ops"])));
    assert_eq!(r.missing_groups(&id("bob", "", &["ops"])).count(), 0);
}

#[test]
fn accessors() {
    let mut r = rule("grafana", Some("grafana.example.com"), "/");
    r.upstream = url::Url::parse("http://127.0.0.1:3000").ok();
    r.bearer = false;
    r.methods = Some(vec![Method::GET]);
    let s = set(&[rule("first", Some("x"), "/"), r]);
    let c = &s.rules()[1];
    assert_eq!(c.index, 1);
    assert_eq!(c.name, "grafana");
    assert_eq!(c.policy, Policy::Authenticated);
    assert_eq!(
        c.upstream.as_ref().map(url::Url::as_str),
        Some("http://127.0.0.1:3000/")
    );
    assert!(!c.bearer);
    assert_eq!(c.path(), "/");
    assert_eq!(c.methods(), Some(&[Method::GET][..]));
    assert_eq!(
        c.host(),
        Some(&HostPattern::Exact("grafana.example.com".into()))
    );
}

/// Bounded property check: the indexed evaluation agrees with a plain linear
/// scan in file order over pseudo-random rule sets and requests.
#[test]
fn evaluate_agrees_with_linear_scan() {
    let hosts = [
        None,
        Some("a.example.com"),
        Some("*.example.com"),
        Some("*.b.example.com"),
        Some("b.example.com"),
        Some("other.org"),
    ];
    let paths = ["/", "/x", "/x/y", "/xy", "/z/"];
    let methods = [
        None,
        Some(vec![Method::GET]),
        Some(vec![Method::POST, Method::PUT]),
    ];
    let req_hosts = [
        "a.example.com",
        "b.example.com",
        "c.b.example.com",
        "example.com",
        "other.org",
        "x.other.org",
    ];
    let req_paths = ["/", "/x", "/x/", "/x/y/z", "/xy", "/z", "/z/q", "/x;p/y"];
    let req_methods = [Method::GET, Method::POST, Method::DELETE];
    let mut seed: u64 = 42;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n
    };
    let mut compiled_sets = 0;
    for _ in 0..2_000 {
        let mut rules = Vec::new();
        for i in 0..(1 + next(8)) {
            let mut r = rule(
                &format!("r{i}"),
                hosts[next(hosts.len())],
                paths[next(paths.len())],
            );
            r.methods = methods[next(methods.len())].clone();
            rules.push(r);
        }
        let Ok(s) = RuleSet::compile(&rules, DefaultPolicy::Deny) else {
            continue;
        };
        compiled_sets += 1;
        for h in req_hosts {
            for p in req_paths {
                for m in &req_methods {
                    let facts = RequestFacts {
                        host: h,
                        path: p,
                        method: Some(m),
                        client: None,
                    };
                    let want = s.rules().iter().find(|r| {
                        r.matches_host(h) && r.matches_path_and_method(&facts, p.contains(';'))
                    });
                    let got = match s.evaluate(&facts) {
                        Match::Rule(r) => Some(r.index),
                        Match::Default(_) => None,
                    };
                    assert_eq!(got, want.map(|r| r.index), "{h} {p} {m} in {rules:#?}");
                }
            }
        }
    }
    assert!(compiled_sets > 200, "only {compiled_sets} sets compiled");
}

#[test]
fn evaluate_logs_explanations_without_panicking() {
    // Run with DEBUG enabled so the explanation branch executes.
    struct Everything;
    impl tracing::Subscriber for Everything {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    let s = set(&[
        rule("a", Some("a"), "/"),
        rule("b", None, "/b"),
        with_methods(rule("c", None, "/c"), &[Method::POST]),
        rule("d", None, "/"),
    ]);
    tracing::subscriber::with_default(Everything, || {
        assert_eq!(get(&s, "x", "/c"), "d");
    });
}

fn insensitive(mut r: RuleConfig) -> RuleConfig {
    r.path_case = PathCase::Insensitive;
    r
}

#[test]
fn case_insensitive_rule_matches_any_spelling_of_its_prefix() {
    let s = set(&[
        insensitive(rule("admin", None, "/Admin")),
        rule("api", None, "/api"),
        rule("all", None, "/"),
    ]);
    for target in [
        "/admin",
        "/ADMIN",
        "/aDmIn/x",
        "/Admin;jsessionid=1/x",
        "/%41dmin",
    ] {
        assert_eq!(get(&s, "app.example.com", target), "admin", "{target}");
    }
    for target in ["/administrator", "/admin2/x", "/x/admin"] {
        assert_eq!(get(&s, "app.example.com", target), "all", "{target}");
    }
    // A rule left case-sensitive (the default) still tells them apart.
    assert_eq!(get(&s, "app.example.com", "/api/x"), "api");
    assert_eq!(get(&s, "app.example.com", "/API/x"), "all");
    assert_eq!(get(&s, "app.example.com", "/Api;v=1/x"), "all");
}

#[test]
fn shadowing_takes_path_case_into_account() {
    // An insensitive rule covers a later rule for any spelling of its path.
    let rules = [
        insensitive(rule("rule[0]", None, "/ADMIN")),
        rule("rule[1]", None, "/admin/x"),
    ];
    assert!(matches!(
        RuleSet::check(&rules)[..],
        [RulesError::Shadowed { .. }]
    ));
    // A sensitive /admin does not cover an insensitive /admin: /ADMIN reaches it.
    let rules = [
        rule("rule[0]", None, "/admin"),
        insensitive(rule("rule[1]", None, "/admin")),
    ];
    assert!(
        RuleSet::check(&rules).is_empty(),
        "{:?}",
        RuleSet::check(&rules)
    );
    // ...but `/` covers everything.
    let rules = [
        rule("rule[0]", None, "/"),
        insensitive(rule("rule[1]", None, "/admin")),
    ];
    assert_eq!(RuleSet::check(&rules).len(), 1);
}

// === networks ===

fn with_networks(mut r: RuleConfig, nets: &[&str]) -> RuleConfig {
    r.networks = Some(nets.iter().map(|n| n.parse().unwrap()).collect());
    r
}

/// The deciding rule's name for a GET of `path` on host `h` from `client`.
fn decide_from(set: &RuleSet, path: &str, client: Option<&str>) -> String {
    let facts = RequestFacts {
        host: "h",
        path,
        method: Some(&Method::GET),
        client: client.map(|c| c.parse().unwrap()),
    };
    match set.evaluate(&facts) {
        Match::Rule(r) => r.name.clone(),
        Match::Default(_) => "default".into(),
    }
}

#[test]
fn networks_are_a_matching_condition() {
    let mut lan = with_networks(
        rule("lan", Some("h"), "/"),
        &["192.168.0.0/16", "fd00::/8", "10.1.2.3/32"],
    );
    lan.policy = Policy::Public;
    let s = set(&[lan, rule("elsewhere", Some("h"), "/")]);
    assert!(s.has_networks());
    for client in ["192.168.1.1", "fd00::5", "10.1.2.3"] {
        assert_eq!(decide_from(&s, "/x", Some(client)), "lan", "{client}");
    }
    for client in ["192.169.0.1", "10.1.2.4", "fe80::1", "2001:db8::1"] {
        assert_eq!(decide_from(&s, "/x", Some(client)), "elsewhere", "{client}");
    }
    // No client address: never a rule with networks.
    assert_eq!(decide_from(&s, "/x", None), "elsewhere");
    assert_eq!(
        s.rules()[0]
            .network_of("192.168.7.7".parse().unwrap())
            .map(ToString::to_string)
            .as_deref(),
        Some("192.168.0.0/16")
    );
    assert!(!set(&[rule("plain", Some("h"), "/")]).has_networks());
}

#[test]
fn networks_in_shadowing() {
    let lan = || with_networks(rule("lan", Some("h"), "/"), &["192.168.0.0/16"]);
    // A rule with networks never covers one without.
    assert!(RuleSet::check(&[lan(), rule("all", Some("h"), "/")]).is_empty());
    // One without covers a later one with networks.
    let problems = RuleSet::check(&[rule("all", Some("h"), "/"), lan()]);
    assert!(
        matches!(&problems[..], [RulesError::Shadowed { .. }]),
        "{problems:?}"
    );
    // Networks inside the earlier rule's: covered; wider or elsewhere: not.
    let inner = with_networks(rule("inner", Some("h"), "/x"), &["192.168.1.0/24"]);
    assert_eq!(RuleSet::check(&[lan(), inner]).len(), 1);
    let wider = with_networks(rule("wider", Some("h"), "/x"), &["192.0.0.0/8"]);
    assert!(RuleSet::check(&[lan(), wider]).is_empty());
    let v6 = with_networks(rule("v6", Some("h"), "/x"), &["fd00::/8"]);
    assert!(RuleSet::check(&[lan(), v6]).is_empty());
    // An empty list is a dead rule.
    let problems = RuleSet::check(&[with_networks(rule("none", None, "/"), &[])]);
    assert!(
        problems[0].to_string().contains("networks list is empty"),
        "{problems:?}"
    );
}
