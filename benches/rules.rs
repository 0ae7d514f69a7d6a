//! Rule evaluation and path normalisation on the request hot path.
//!
//! A 200-rule config (exact hosts, wildcard hosts, host-less path prefixes) is
//! matched by [`RuleSet::evaluate`] and, beside it, by a naive baseline that
//! scans the rules linearly, lower-cases and builds strings per request, as a
//! first implementation would. Requests cover a hit on each host kind and a
//! miss that falls through to the default. Path normalisation is measured on an
//! already-normal path (the borrowed fast path) and on a tricky one.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use portcullis::auth::rules::host::normalize_host;
use portcullis::auth::rules::path::normalize;
use portcullis::auth::rules::{Match, RequestFacts, RuleSet};
use portcullis::config::{DefaultPolicy, HostPattern, Policy, RuleConfig};

/// 60 exact hosts with an `/admin` and a `/` rule each, 30 wildcard domains with
/// an `/api` and a `/` rule each, then 20 host-less prefixes: 200 rules.
fn config() -> Vec<RuleConfig> {
    let mut rules = Vec::new();
    let mut push = |host: Option<HostPattern>, path: String, methods: Option<Vec<Method>>| {
        rules.push(RuleConfig {
            name: format!("rule[{}]", rules.len()),
            host,
            path,
            methods,
            policy: Policy::Authenticated,
            groups: vec!["admins".into()],
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
        });
    };
    for i in 0..60 {
        let host = || Some(HostPattern::Exact(format!("app{i}.example.com")));
        push(
            host(),
            "/admin".into(),
            Some(vec![Method::GET, Method::POST]),
        );
        push(host(), "/".into(), None);
    }
    for i in 0..30 {
        let host = || Some(HostPattern::Suffix(format!(".team{i}.corp.example")));
        push(host(), "/api".into(), None);
        push(host(), "/".into(), None);
    }
    for i in 0..20 {
        push(None, format!("/static{i}"), None);
    }
    rules
}

/// The baseline: what a straightforward implementation does per request.
struct Naive {
    rules: Vec<RuleConfig>,
}

impl Naive {
    fn evaluate(&self, raw_host: &str, path: &str, method: &str) -> Option<usize> {
        let host = raw_host
            .split(':')
            .next()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_lowercase();
        let path_dir = format!("{path}/");
        self.rules.iter().position(|r| {
            let host_ok = match &r.host {
                None => true,
                Some(HostPattern::Exact(h)) => h.to_lowercase() == host,
                Some(HostPattern::Suffix(s)) => host.ends_with(&s.to_lowercase()),
            };
            let path_ok =
                r.path == "/" || path == r.path || path_dir.starts_with(&format!("{}/", r.path));
            let method_ok = r.methods.as_ref().is_none_or(|ms| {
                ms.iter()
                    .any(|m| m.as_str().to_uppercase() == method.to_uppercase())
            });
            host_ok && path_ok && method_ok
        })
    }
}

const REQUESTS: [(&str, &str, &str); 4] = [
    ("exact_hit", "app59.example.com", "/admin/users"),
    ("wildcard_hit", "x.team29.corp.example", "/api/v1/items"),
    ("hostless_hit", "unknown.example.net", "/static19/app.js"),
    ("miss", "nobody.example.org", "/nothing/here"),
];

fn rules(c: &mut Criterion) {
    let cfg = config();
    assert_eq!(cfg.len(), 200);
    let set = match RuleSet::compile(&cfg, DefaultPolicy::Deny) {
        Ok(set) => set,
        Err(e) => panic!("bench config does not compile: {e}"),
    };
    let naive = Naive { rules: cfg };
    let method = Method::GET;
    let mut group = c.benchmark_group("rules_200");
    for (name, host, path) in REQUESTS {
        let facts = RequestFacts {
            host,
            path,
            method: Some(&method),
            client: None,
        };
        let indexed = match set.evaluate(&facts) {
            Match::Rule(r) => Some(r.index),
            Match::Default(_) => None,
        };
        assert_eq!(indexed, naive.evaluate(host, path, "GET"), "{name}");
        group.bench_function(format!("{name}/ruleset"), |b| {
            b.iter(|| matches!(black_box(&set).evaluate(black_box(&facts)), Match::Rule(_)))
        });
        group.bench_function(format!("{name}/naive"), |b| {
            b.iter(|| {
                black_box(&naive).evaluate(black_box(host), black_box(path), black_box("GET"))
            })
        });
    }
    group.finish();
}

fn normalisation(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    group.bench_function("path/normal", |b| {
        b.iter(|| normalize(black_box("/api/v1/users/42/profile")).map(|p| p.len()))
    });
    group.bench_function("path/tricky", |b| {
        b.iter(|| {
            normalize(black_box(
                "/api//v1/./users/%61dmin/../42/%7eprofile;x/caf%c3%a9",
            ))
            .map(|p| p.len())
        })
    });
    group.bench_function("host/normal", |b| {
        b.iter(|| normalize_host(black_box("grafana.example.com")).map(|h| h.len()))
    });
    group.bench_function("host/port_and_case", |b| {
        b.iter(|| normalize_host(black_box("Grafana.Example.com.:8443")).map(|h| h.len()))
    });
    group.finish();
}

criterion_group!(benches, rules, normalisation);
criterion_main!(benches);
