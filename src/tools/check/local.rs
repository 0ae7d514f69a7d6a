//! Checks the config alone decides: whether the scopes fit the rules
//! (`groups`, `offline_access`), the redirect URI portcullis will send (shown
//! for copying into the IdP), and whether `session.cookie_domain` and
//! `access.allowed_redirect_domains` cover every host the rules and
//! `external_url` name, and, when rules have `networks`, where the client
//! address comes from and whether a trusted proxy range overlaps a rule's
//! network, and which rules can never match. No I/O.

use crate::auth::redirect::RedirectPolicy;
use crate::auth::rules::RuleSet;
use crate::config::{Config, HostPattern, Policy};

use super::Finding;

/// Where the browser comes back after the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectUris {
    /// `external_url` is set: one URI for every app.
    One(String),
    /// Single-app mode: one URI per exact rule host, plus a pattern for
    /// wildcard or host-less rules.
    PerHost {
        /// `scheme://host/prefix/callback` for each exact host.
        uris: Vec<String>,
        /// Text describing the hosts that cannot be listed, if any.
        pattern: Option<String>,
    },
}

/// `groups scope` and `offline_access`: the scopes the rules and
/// `session.refresh` need.
pub fn scopes(config: &Config) -> Vec<Finding> {
    let o = &config.oidc;
    let has = |s: &str| o.scopes.iter().any(|x| x == s);
    let group_rules: Vec<&str> = config
        .rules
        .iter()
        .filter(|r| {
            r.policy == Policy::Authenticated && !(r.groups.is_empty() && r.groups_all.is_empty())
        })
        .map(|r| r.name.as_str())
        .collect();
    let mut out = Vec::new();
    if group_rules.is_empty() {
        out.push(Finding::ok("groups scope", "no rule uses groups"));
    } else if has("groups") {
        out.push(Finding::ok(
            "groups scope",
            format!("requested; rules using groups: {}", group_rules.join(", ")),
        ));
    } else if o.groups_claim.dotted == "groups" {
        out.push(Finding::warn(
            "groups scope",
            format!(
                "rules use groups ({}) but oidc.scopes does not request the `groups` scope, so most IdPs send no groups claim",
                group_rules.join(", ")
            ),
            "add \"groups\" to oidc.scopes (or, if your IdP puts groups elsewhere, point oidc.groups_claim at that claim)",
        ));
    } else {
        out.push(Finding::ok(
            "groups scope",
            format!(
                "not requested; groups are read from the `{}` claim",
                o.groups_claim.dotted
            ),
        ));
    }
    if !config.session.refresh {
        out.push(Finding::ok(
            "offline_access",
            "not needed (session.refresh = false)",
        ));
    } else if has("offline_access") {
        out.push(Finding::ok(
            "offline_access",
            "requested, so the IdP can issue refresh tokens",
        ));
    } else {
        out.push(Finding::warn(
            "offline_access",
            "session.refresh = true but oidc.scopes does not request `offline_access`; most IdPs then issue no refresh token and claims are never renewed",
            "add \"offline_access\" to oidc.scopes (and allow the refresh_token grant for this client at the IdP)",
        ));
    }
    out
}

/// The redirect URI(s) portcullis sends.
pub fn redirect_uris(config: &Config) -> RedirectUris {
    let prefix = &config.server.prefix;
    if let Some(u) = &config.server.external_url {
        return RedirectUris::One(format!(
            "{}{prefix}/callback",
            u.as_str().trim_end_matches('/')
        ));
    }
    let scheme = if config.session.cookie_secure {
        "https"
    } else {
        "http"
    };
    let mut uris = Vec::new();
    let mut wild = Vec::new();
    let mut any_host = false;
    for r in &config.rules {
        match &r.host {
            Some(HostPattern::Exact(h)) => {
                let u = format!("{scheme}://{h}{prefix}/callback");
                if !uris.contains(&u) {
                    uris.push(u);
                }
            }
            Some(HostPattern::Suffix(s)) => {
                let p = format!("{scheme}://*{s}{prefix}/callback");
                if !wild.contains(&p) {
                    wild.push(p);
                }
            }
            None => any_host = true,
        }
    }
    if any_host || (uris.is_empty() && wild.is_empty()) {
        wild.push(format!(
            "{scheme}://<each host the browser uses>{prefix}/callback"
        ));
    }
    let pattern = (!wild.is_empty()).then(|| wild.join(", "));
    RedirectUris::PerHost { uris, pattern }
}

/// `redirect_uri`: shows the URI(s) to register and checks they are well formed.
pub fn redirect_uri(config: &Config) -> Finding {
    match redirect_uris(config) {
        RedirectUris::One(uri) => Finding::ok(
            "redirect_uri",
            format!("portcullis sends {uri}; register exactly this redirect URI at the IdP"),
        ),
        RedirectUris::PerHost { uris, pattern } => {
            let mut all = uris.join(", ");
            if let Some(p) = pattern {
                if !all.is_empty() {
                    all.push_str(", ");
                }
                all.push_str(&p);
            }
            Finding::ok(
                "redirect_uri",
                format!("single-app mode (no server.external_url): each app host sends its own redirect URI: {all}; register every one at the IdP, or set server.external_url for one shared URI"),
            )
        }
    }
}

/// `external_url`'s host, lower-case.
fn auth_host(config: &Config) -> Option<String> {
    let url = config.server.external_url.as_ref()?;
    url.host_str().map(str::to_ascii_lowercase)
}

/// The hosts browsers visit: `external_url`'s and every rule host, in
/// order, without duplicates. Wildcards appear as `.example.com`.
fn hosts(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |h: String| {
        if !out.contains(&h) {
            out.push(h);
        }
    };
    if let Some(h) = config
        .server
        .external_url
        .as_ref()
        .and_then(|u| u.host_str())
    {
        add(h.to_ascii_lowercase());
    }
    for r in &config.rules {
        match &r.host {
            Some(HostPattern::Exact(h)) => add(h.clone()),
            Some(HostPattern::Suffix(s)) => add(s.clone()),
            None => {}
        }
    }
    out
}

/// True when `host` (or every host under a `.suffix`) is `domain` or below it.
fn is_under(host: &str, domain: &str) -> bool {
    let h = host.trim_start_matches('.');
    h == domain || h.ends_with(&format!(".{domain}"))
}

/// The longest domain (at least two labels) every host is under, if any.
fn common_parent(hosts: &[String]) -> Option<String> {
    let first: Vec<&str> = hosts.first()?.trim_start_matches('.').rsplit('.').collect();
    let mut n = first.len();
    for h in &hosts[1..] {
        let labels: Vec<&str> = h.trim_start_matches('.').rsplit('.').collect();
        n = n.min(
            first
                .iter()
                .zip(&labels)
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    (n >= 2).then(|| {
        let mut parts: Vec<&str> = first[..n].to_vec();
        parts.reverse();
        parts.join(".")
    })
}

fn shown(host: &str) -> String {
    if host.starts_with('.') {
        format!("*{host}")
    } else {
        host.to_owned()
    }
}

/// `cookie_domain`: the session cookie reaches every host that needs it.
pub fn cookie_domain(config: &Config) -> Finding {
    let hosts = hosts(config);
    match &config.session.cookie_domain {
        Some(d) => {
            let d = d.trim_start_matches('.').to_ascii_lowercase();
            let outside: Vec<String> = hosts
                .iter()
                .filter(|h| !is_under(h, &d))
                .map(|h| shown(h))
                .collect();
            if outside.is_empty() {
                let list: Vec<String> = hosts.iter().map(|h| shown(h)).collect();
                let covers = if list.is_empty() {
                    "every subdomain".to_owned()
                } else {
                    list.join(", ")
                };
                Finding::ok(
                    "cookie_domain",
                    format!("session.cookie_domain = {d:?} covers {covers}"),
                )
            } else {
                let mut all = hosts.clone();
                all.push(d.clone());
                let fix = match common_parent(&all) {
                    Some(p) => format!("set session.cookie_domain = \"{p}\", a parent of every host"),
                    None => "keep every host under one parent domain and set session.cookie_domain to it, or run a separate gateway per domain".to_owned(),
                };
                Finding::fail(
                    "cookie_domain",
                    format!(
                        "{} not under session.cookie_domain {d:?}: browsers never send the session cookie there, so users on those hosts are sent to log in again and again",
                        describe_list(&outside)
                    ),
                    fix,
                )
            }
        }
        None => {
            let Some(auth) = auth_host(config) else {
                return Finding::ok(
                    "cookie_domain",
                    "not set: host-only session cookies, one login per app host (single-app mode)",
                );
            };
            let others: Vec<String> = hosts
                .iter()
                .filter(|h| **h != auth)
                .map(|h| shown(h))
                .collect();
            if others.is_empty() {
                return Finding::ok(
                    "cookie_domain",
                    format!("not set: the session cookie is host-only on {auth}, the only host"),
                );
            }
            let fix = match common_parent(&hosts) {
                Some(p) => format!("set session.cookie_domain = \"{p}\""),
                None => "put portcullis and the apps under one parent domain and set session.cookie_domain to it".to_owned(),
            };
            Finding::fail(
                "cookie_domain",
                format!(
                    "session.cookie_domain is not set, so the session cookie is host-only on {auth} (server.external_url) and {} {} it: users loop through the login",
                    others.join(", "),
                    if others.len() == 1 { "never receives" } else { "never receive" }
                ),
                fix,
            )
        }
    }
}

fn describe_list(hosts: &[String]) -> String {
    if hosts.len() == 1 {
        format!("{} is", hosts[0])
    } else {
        format!("{} are", hosts.join(", "))
    }
}

/// `redirect_domains`: after a login on `external_url`, the browser may
/// return to every app host.
pub fn redirect_domains(config: &Config) -> Finding {
    let Some(auth) = auth_host(config) else {
        return Finding::ok(
            "redirect_domains",
            "single-app mode: after login the browser returns to the host it came from, which is always allowed",
        );
    };
    let policy = RedirectPolicy::new(&config.access.allowed_redirect_domains);
    let missing: Vec<String> = hosts(config)
        .into_iter()
        .filter(|h| *h != auth)
        .filter(|h| {
            let sample = if h.starts_with('.') {
                format!("x{h}")
            } else {
                h.clone()
            };
            !policy.is_allowed_host(&sample)
        })
        .collect();
    if missing.is_empty() {
        return Finding::ok(
            "redirect_domains",
            "access.allowed_redirect_domains covers every app host",
        );
    }
    let shown_list: Vec<String> = missing.iter().map(|h| shown(h)).collect();
    let mut with_auth = missing.clone();
    with_auth.push(auth.clone());
    let suggestion = match common_parent(&with_auth) {
        Some(p) => format!("\".{p}\""),
        None => missing
            .iter()
            .map(|h| format!("{h:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    Finding::warn(
        "redirect_domains",
        format!(
            "{} not in access.allowed_redirect_domains: after logging in on {auth}, browsers cannot return there and land on / instead",
            describe_list(&shown_list)
        ),
        format!("add {suggestion} to access.allowed_redirect_domains"),
    )
}

/// True for `localhost`, `127.x.x.x` and `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `networks`: `None` when no rule has networks. Otherwise the rules and
/// their networks, and a warning for every `trusted_proxies` range that
/// overlaps one: a client there counts as a proxy, so its own
/// `X-Forwarded-For` names its address.
pub fn networks(config: &Config) -> Option<Finding> {
    let rules: Vec<(&str, &[ipnet::IpNet])> = config
        .rules
        .iter()
        .filter_map(|r| Some((r.name.as_str(), r.networks.as_deref()?)))
        .collect();
    if rules.is_empty() {
        return None;
    }
    let trusted = &config.server.trusted_proxies;
    let overlaps =
        |a: &ipnet::IpNet, b: &ipnet::IpNet| a.contains(&b.network()) || b.contains(&a.network());
    let clash = rules.iter().find_map(|(name, nets)| {
        nets.iter().find_map(|n| {
            trusted
                .iter()
                .find(|t| overlaps(t, n))
                .map(|t| (*name, n, t))
        })
    });
    if let Some((name, net, proxy)) = clash {
        return Some(Finding::warn(
            "networks",
            format!("rule {name:?} admits {net}, which overlaps server.trusted_proxies entry {proxy}: a client there counts as a proxy, and its own X-Forwarded-For names its address"),
            "list only the front proxies' own addresses in server.trusted_proxies",
        ));
    }
    let list = |nets: &[ipnet::IpNet]| {
        nets.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let described: Vec<String> = rules
        .iter()
        .map(|(name, nets)| format!("{name} ({})", list(nets)))
        .collect();
    Some(Finding::ok(
        "networks",
        format!(
            "rules with networks: {}; the client address is the peer, or behind {} the nearest X-Forwarded-For entry outside them",
            described.join("; "),
            list(trusted)
        ),
    ))
}

/// Rules that can never match, one failure each, as `serve` refuses them
/// ([`RuleSet::compile`]): the first matching rule decides, so a rule an
/// earlier one covers (same or wider host, path, methods, networks) is
/// dead, and whatever it was meant to require would never be asked for.
/// Nothing when every rule can match.
pub fn dead_rules(config: &Config) -> Vec<Finding> {
    RuleSet::check(&config.rules)
        .into_iter()
        .map(|problem| {
            Finding::fail(
                "rules",
                problem.to_string(),
                "put the more specific rule first (the first matching [[rule]] decides), or remove the dead one",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::check::Status;
    use std::collections::HashMap;
    use std::path::Path;

    fn config(server: &str, session: &str, access: &str, rules: &str) -> Config {
        let text = format!(
            "[server]\n{server}\n[oidc]\nissuer = \"https://idp.example.com/\"\nclient_id = \"c\"\n[session]\n{session}\n[access]\n{access}\n{rules}\n"
        );
        let env: HashMap<String, String> = [(
            "PORTCULLIS_SESSION_SECRET".to_owned(),
            "0123456789abcdef0123456789abcdef-x".to_owned(),
        )]
        .into();
        Config::from_toml(&text, Path::new("/"), &env).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Domain-wide SSO on auth.example.com.
    fn sso(session: &str, access: &str, rules: &str) -> Config {
        config(
            "external_url = \"https://auth.example.com\"",
            session,
            access,
            rules,
        )
    }

    #[test]
    fn a_rule_behind_a_wider_one_fails_as_serve_refuses_it() {
        assert!(dead_rules(&config("", "", "", RULES)).is_empty());
        let shadowed = "[[rule]]\nname = \"everyone\"\nhost = \"grafana.example.com\"\n[[rule]]\nname = \"admin\"\nhost = \"grafana.example.com\"\npath = \"/admin\"\ngroups = [\"admins\"]\n";
        let found = dead_rules(&config("", "", "", shadowed));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].status, Status::Fail);
        assert!(found[0].detail.contains("can never match"), "{}", found[0]);
        assert!(found[0].detail.contains("admin"), "{}", found[0]);
        assert!(found[0].detail.contains("everyone"), "{}", found[0]);
    }

    #[test]
    fn networks_finding() {
        assert!(networks(&config("", "", "", RULES)).is_none());
        let lan = "[access.networks]\nlan = [\"192.168.0.0/16\"]\n[[rule]]\nname = \"wiki\"\nnetworks = [\"lan\"]\npolicy = \"public\"\n";
        let f = networks(&config("", "", "", lan)).unwrap();
        assert_eq!(f.status, Status::Ok, "{f}");
        assert!(f.detail.contains("wiki (192.168.0.0/16)"), "{f}");
        assert!(f.detail.contains("behind 127.0.0.1/32, ::1/128"), "{f}");
        let wide = "trusted_proxies = [\"192.168.0.0/24\"]";
        let f = networks(&config(wide, "", "", lan)).unwrap();
        assert_eq!(f.status, Status::Warn, "{f}");
        assert!(
            f.detail
                .contains("overlaps server.trusted_proxies entry 192.168.0.0/24"),
            "{f}"
        );
    }

    const RULES: &str = "[[rule]]\nhost = \"grafana.example.com\"\ngroups = [\"admins\"]\n[[rule]]\nhost = \"*.apps.example.com\"\n";

    #[test]
    fn domain_wide_sso_without_cookie_domain_fails_with_the_parent() {
        let c = sso("", "", RULES);
        let f = cookie_domain(&c);
        assert_eq!(f.status, Status::Fail, "{f}");
        assert!(
            f.detail.contains("grafana.example.com, *.apps.example.com"),
            "{f}"
        );
        assert_eq!(
            f.fix.as_deref(),
            Some("set session.cookie_domain = \"example.com\"")
        );
    }

    #[test]
    fn cookie_domain_must_cover_every_host() {
        let rules = format!("{RULES}[[rule]]\nhost = \"wiki.other.org\"\n");
        let c = sso("cookie_domain = \"example.com\"", "", &rules);
        let f = cookie_domain(&c);
        assert_eq!(f.status, Status::Fail, "{f}");
        assert!(f.detail.starts_with("wiki.other.org is not under"), "{f}");
        let c = sso("cookie_domain = \".example.com\"", "", RULES);
        assert_eq!(cookie_domain(&c).status, Status::Ok);
    }

    #[test]
    fn redirect_domains_cover_app_hosts() {
        let c = sso(
            "cookie_domain = \"example.com\"",
            "allowed_redirect_domains = [\"grafana.example.com\"]",
            RULES,
        );
        let f = redirect_domains(&c);
        assert_eq!(f.status, Status::Warn, "{f}");
        assert!(f.detail.starts_with("*.apps.example.com is not in"), "{f}");
        assert_eq!(
            f.fix.as_deref(),
            Some("add \".example.com\" to access.allowed_redirect_domains")
        );
        let c = sso(
            "cookie_domain = \"example.com\"",
            "allowed_redirect_domains = [\".example.com\"]",
            RULES,
        );
        assert_eq!(redirect_domains(&c).status, Status::Ok);
    }

    #[test]
    fn redirect_uri_is_shown() {
        let c = config(
            "external_url = \"https://auth.example.com/\"",
            "",
            "",
            RULES,
        );
        assert_eq!(
            redirect_uris(&c),
            RedirectUris::One("https://auth.example.com/oauth2/callback".into())
        );
        let c = config("", "", "", RULES);
        let f = redirect_uri(&c);
        assert!(
            f.detail.contains("https://grafana.example.com/oauth2/callback, https://*.apps.example.com/oauth2/callback"),
            "{f}"
        );
    }

    #[test]
    fn groups_and_offline_access_scopes() {
        let c = config("", "refresh = true", "", RULES);
        let f = scopes(&c);
        assert_eq!(f[0].status, Status::Ok, "{}", f[0]);
        assert_eq!(f[1].status, Status::Warn, "{}", f[1]);
        let text = "[server]\n[oidc]\nissuer = \"https://i/\"\nclient_id = \"c\"\nscopes = [\"openid\", \"email\"]\n[session]\n";
        let env: HashMap<String, String> = [(
            "PORTCULLIS_SESSION_SECRET".to_owned(),
            "0123456789abcdef0123456789abcdef-x".to_owned(),
        )]
        .into();
        let c = Config::from_toml(&format!("{text}{RULES}"), Path::new("/"), &env).unwrap();
        assert_eq!(scopes(&c)[0].status, Status::Warn);
    }

    #[test]
    fn common_parent_needs_two_labels() {
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            common_parent(&h(&["a.example.com", ".b.example.com"])),
            Some("example.com".into())
        );
        assert_eq!(common_parent(&h(&["a.example.com", "b.other.com"])), None);
    }
}
