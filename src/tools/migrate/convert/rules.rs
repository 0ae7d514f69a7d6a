//! The access part of the conversion: who is admitted (`email_domains`,
//! `authenticated_emails_file`, `allowed_groups`), the upstreams, and the
//! `[[rule]]`s: public rules first (`trusted_ips`, `skip_auth_preflight`,
//! `skip_auth_routes` / `skip_auth_regex` where the regex is a plain
//! prefix), then one rule per upstream, most specific path first (rules
//! match in file order, oauth2-proxy routes by the longest path). Part of
//! `convert`.

use std::path::{Path, PathBuf};

use url::Url;

use super::{absolute, human, list, q, Convert, Section};
use crate::tools::migrate::MigrateError;

/// One `[[rule]]` being built.
#[derive(Debug, Clone, Default)]
pub(super) struct Rule {
    /// Comment lines above it.
    about: Vec<String>,
    name: String,
    path: String,
    methods: Option<Vec<String>>,
    policy: &'static str,
    networks: Vec<String>,
    groups: Vec<String>,
    groups_all: Vec<String>,
    emails: Vec<String>,
    email_domains: Vec<String>,
    basic_auth: bool,
    upstream: Option<String>,
    preserve_host: bool,
    insecure: bool,
    bearer_off: bool,
}

/// A public route before it is split by upstream.
#[derive(Debug, Clone)]
struct PublicRoute {
    about: Vec<String>,
    path: String,
    methods: Option<Vec<String>>,
    networks: Vec<String>,
}

/// An `http(s)://` upstream of oauth2-proxy.
#[derive(Debug, Clone)]
struct Upstream {
    /// `scheme://host[:port]`: oauth2-proxy passes the request path unchanged.
    origin: String,
    /// The portcullis rule path (the upstream URL's path without its trailing `/`).
    path: String,
    /// As written.
    written: String,
    /// How the rule differs from oauth2-proxy's routing, if it does.
    note: Option<String>,
}

/// Who the oauth2-proxy config admits, as portcullis rule conditions.
#[derive(Debug, Clone, Default)]
struct Conditions {
    groups: Vec<String>,
    groups_all: Vec<String>,
    emails: Vec<String>,
    email_domains: Vec<String>,
    /// `htpasswd_file` is set: rules accept Basic credentials.
    basic_auth: bool,
    /// Nobody can be admitted the way oauth2-proxy did: the rule denies.
    deny: Option<String>,
    /// Comment lines for the rules carrying these conditions.
    about: Vec<String>,
}
// === impl Convert: access ===

impl Convert<'_> {
    /// Conditions, upstreams and rules, in that order.
    pub(super) fn access_rules(&mut self) -> Result<(), MigrateError> {
        let conditions = self.conditions()?;
        let upstreams = self.upstreams();
        self.rules(&conditions, &upstreams);
        Ok(())
    }

    /// Who is admitted: `email_domains`, `authenticated_emails_file`, `allowed_groups`.
    fn conditions(&mut self) -> Result<Conditions, MigrateError> {
        let o = self.opts;
        let domains = o.list("email_domains");
        let file = o.non_empty("authenticated_emails_file").map(PathBuf::from);
        let htpasswd = o.non_empty("htpasswd_file").is_some();
        if domains.is_empty() && file.is_none() && !htpasswd {
            return Err(MigrateError::NoEmailCheck);
        }
        self.take("email_domains");
        self.take("authenticated_emails_file");
        let mut c = Conditions::default();
        let htpasswd_users = self.htpasswd(&mut c)?;
        let groups = o.list("allowed_groups");
        self.take("allowed_groups");
        if domains.iter().any(|d| d == "*") {
            if file.is_some() {
                self.not_converted(
                    Section::Access,
                    "authenticated_emails_file",
                    "email_domains = [\"*\"] admits every address anyway",
                );
            }
            c.about.push("email_domains = [\"*\"]: any signed-in user (oauth2-proxy also required an e-mail address; portcullis does not)".to_owned());
            if !groups.is_empty() {
                c.about
                    .push("allowed_groups: a member of any of these groups".to_owned());
            }
            c.groups = groups;
            return Ok(c);
        }
        for d in &domains {
            if d.starts_with('.') || d.starts_with("*.") {
                c.about.push(format!("not converted: email_domains entry {d:?} (portcullis matches e-mail domains exactly; list the subdomains)"));
                self.warn(format!(
                    "email_domains entry {d:?} was dropped: list the subdomains it stood for"
                ));
            } else {
                c.email_domains
                    .push(d.trim_start_matches('@').to_ascii_lowercase());
            }
        }
        if let Some(path) = &file {
            c.emails = read_emails(path)?;
            c.about.push(format!(
                "authenticated_emails_file {}: its {} address(es) as of this conversion; portcullis reloads rules on SIGHUP, not when the file changes",
                path.display(),
                c.emails.len()
            ));
        }
        if !c.email_domains.is_empty() {
            c.about
                .push("email_domains: an address at one of these domains".to_owned());
        }
        if !htpasswd_users.is_empty() {
            // Not `users = [...]`: an IdP user whose user claim had one of
            // these names would pass too.
            c.about.push(format!("htpasswd_file: its users ({}) have no e-mail address, so the e-mail condition keeps them out (oauth2-proxy let them in): give them a group with access.htpasswd_groups_file and admit that group here", htpasswd_users.join(", ")));
            self.warn("htpasswd users do not pass the e-mail condition of the converted rules: admit them through a group (access.htpasswd_groups_file)");
        }
        if c.emails.is_empty() && c.email_domains.is_empty() {
            c.deny = Some("oauth2-proxy admitted only addresses this conversion cannot express (see above); nobody passes until the rule is edited".to_owned());
            self.warn("no e-mail condition could be converted: the converted rules deny everyone until edited");
        }
        match groups.len() {
            0 => {}
            1 => {
                c.about
                    .push("allowed_groups: and a member of this group".to_owned());
                c.groups_all = groups;
            }
            _ => {
                c.about.push("allowed_groups: oauth2-proxy wanted any one of these groups and the e-mail check; portcullis rules cannot require both \"one of several groups\" and \"one of several addresses\", so this rule requires every group (stricter): split it by group or relax it by hand".to_owned());
                self.warn("allowed_groups with e-mail restrictions became groups_all (every group required): review the rules");
                c.groups_all = groups;
            }
        }
        Ok(c)
    }

    /// `htpasswd_file` → `access.htpasswd_file` and `basic_auth` on the
    /// rules; returns its user names.
    fn htpasswd(&mut self, c: &mut Conditions) -> Result<Vec<String>, MigrateError> {
        self.not_converted_if_set(
            Section::Access,
            "display_htpasswd_form",
            "portcullis shows no password form; htpasswd users send Authorization: Basic",
        );
        let Some(path) = self.opts.non_empty("htpasswd_file").map(PathBuf::from) else {
            self.not_converted_if_set(
                Section::Access,
                "htpasswd_user_groups",
                "there is no htpasswd_file",
            );
            return Ok(Vec::new());
        };
        let text = std::fs::read_to_string(&path).map_err(|source| MigrateError::Read {
            path: path.clone(),
            source,
        })?;
        let mut users = Vec::new();
        let mut refused = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let Some((user, hash)) = line.split_once(':') else {
                continue;
            };
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                refused.push(user.to_owned());
            }
            users.push(user.to_owned());
        }
        self.take("htpasswd_file");
        self.comment(Section::Access, "htpasswd_file: its users send Authorization: Basic on the rules below (basic_auth = true); oauth2-proxy's password form has no counterpart");
        self.kv(
            Section::Access,
            "htpasswd_file",
            q(&absolute(&path.display().to_string())),
        );
        if !refused.is_empty() {
            let msg = format!("htpasswd_file: the entries of {} are not bcrypt (oauth2-proxy also read SHA-1); portcullis refuses them at start-up: set them again with htpasswd -B", refused.join(", "));
            self.comment(Section::Access, &msg);
            self.warn(msg);
        }
        let groups = self.opts.list("htpasswd_user_groups");
        if !groups.is_empty() {
            self.not_converted(
                Section::Access,
                "htpasswd_user_groups",
                &format!(
                    "give the users their groups with access.htpasswd_groups_file, a file of lines such as \"{}: {}\"",
                    groups[0],
                    users.join(" ")
                ),
            );
        }
        c.basic_auth = true;
        Ok(users)
    }

    /// The `http(s)://` upstreams, most specific path first.
    fn upstreams(&mut self) -> Vec<Upstream> {
        let mut out: Vec<Upstream> = Vec::new();
        let all = self.opts.list("upstreams");
        self.take("upstreams");
        for written in all {
            match Url::parse(&written) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                    let raw_path = url.path();
                    let path = raw_path.trim_end_matches('/');
                    let path = if path.is_empty() { "/" } else { path };
                    let note = (raw_path != "/" && !raw_path.ends_with('/')).then(|| {
                        format!("oauth2-proxy sent only {raw_path} itself there; this rule also covers the paths below it")
                    });
                    if out.iter().any(|u| u.path == path) {
                        self.comment(Section::Proxy, format!("not converted: upstream {written} (a second upstream for path {path})"));
                        continue;
                    }
                    out.push(Upstream {
                        origin: url.origin().ascii_serialization(),
                        path: path.to_owned(),
                        written,
                        note,
                    });
                }
                _ => self.comment(Section::Proxy, format!("not converted: upstream {written} (portcullis proxies to http:// and https:// upstreams only; serve files and static answers from an app)")),
            }
        }
        out.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.path.cmp(&b.path)));
        let o = self.opts;
        if let Some(t) = o.duration("upstream_timeout") {
            self.take("upstream_timeout");
            if !t.is_zero() {
                self.kv(Section::Proxy, "response_header_timeout", q(&human(t)));
            }
        }
        self.not_converted_if_set(
            Section::Proxy,
            "flush_interval",
            "portcullis streams bodies as they arrive, without buffering",
        );
        if o.bool("proxy_websockets") == Some(true) {
            self.same(
                Section::Proxy,
                "proxy_websockets",
                "portcullis always proxies WebSocket upgrades",
            );
        }
        self.not_converted_if_set(
            Section::Proxy,
            "proxy_websockets",
            "portcullis always proxies WebSocket upgrades",
        );
        self.not_converted_if_set(
            Section::Proxy,
            "disable_keep_alives",
            "portcullis pools upstream connections",
        );
        for cfg in ["pass_host_header", "ssl_upstream_insecure_skip_verify"] {
            if out.is_empty() {
                self.not_converted_if_set(
                    Section::Proxy,
                    cfg,
                    "there is no http(s) upstream to apply it to",
                );
            }
        }
        if o.bool("pass_host_header") == Some(false) {
            self.same(
                Section::Proxy,
                "pass_host_header",
                "upstreams receive their own host name, portcullis's default (no preserve_host)",
            );
        }
        self.take("pass_host_header");
        self.take("ssl_upstream_insecure_skip_verify");
        out
    }

    fn rules(&mut self, cond: &Conditions, upstreams: &[Upstream]) {
        let o = self.opts;
        let preserve_host = o.bool("pass_host_header").unwrap_or(true);
        let insecure = o.bool("ssl_upstream_insecure_skip_verify").unwrap_or(false);
        let bearer = o.bool("skip_jwt_bearer_tokens").unwrap_or(false);
        self.take("skip_jwt_bearer_tokens");
        let mut public: Vec<PublicRoute> = Vec::new();
        let ips = o.list("trusted_ips");
        if !ips.is_empty() {
            self.take("trusted_ips");
            public.push(PublicRoute {
                about: vec![format!(
                    "trusted_ips: these client addresses need no login{}",
                    if o.bool("reverse_proxy") == Some(true) {
                        " (the address X-Forwarded-For names when a trusted proxy sends it)"
                    } else {
                        ""
                    }
                )],
                path: "/".to_owned(),
                methods: None,
                networks: ips,
            });
        }
        if o.bool("skip_auth_preflight") == Some(true) {
            public.push(PublicRoute {
                about: vec!["skip_auth_preflight: CORS preflight requests need no login".to_owned()],
                path: "/".to_owned(),
                methods: Some(vec!["OPTIONS".to_owned()]),
                networks: Vec::new(),
            });
        }
        self.take("skip_auth_preflight");
        for (cfg, with_method) in [("skip_auth_routes", true), ("skip_auth_regex", false)] {
            for route in o.list(cfg) {
                self.take(cfg);
                match skip_route(&route, with_method) {
                    Ok(mut r) => {
                        r.about.insert(0, format!("{cfg}: {route:?}"));
                        public.push(r);
                    }
                    Err(why) => {
                        self.comment(Section::Access, format!("not converted: {cfg} entry {route:?} ({why}; write a public [[rule]] by hand)"));
                        self.warn(format!("{cfg} entry {route:?} was not converted: those requests now need a login"));
                    }
                }
            }
        }
        for r in public {
            for (n, (p, up)) in regions(&r.path, upstreams).into_iter().enumerate() {
                self.rules.push(Rule {
                    about: if n == 0 { r.about.clone() } else { Vec::new() },
                    name: String::new(),
                    path: p,
                    methods: r.methods.clone(),
                    policy: "public",
                    networks: r.networks.clone(),
                    upstream: up.map(|u| u.origin.clone()),
                    preserve_host: up.is_some() && preserve_host,
                    insecure: up.is_some() && insecure,
                    ..Rule::default()
                });
            }
        }
        let mut auth: Vec<(String, Option<&Upstream>)> = upstreams
            .iter()
            .map(|u| (u.path.clone(), Some(u)))
            .collect();
        if !upstreams.iter().any(|u| u.path == "/") {
            auth.push(("/".to_owned(), None));
        }
        for (n, (path, up)) in auth.into_iter().enumerate() {
            let mut about = Vec::new();
            if let Some(u) = up {
                about.push(format!("upstream {}", u.written));
                about.extend(u.note.clone());
            } else if !upstreams.is_empty() {
                about.push("every other path (forward-auth checks included)".to_owned());
            } else {
                about.push("every request (forward-auth checks)".to_owned());
            }
            if n == 0 {
                about.extend(cond.about.iter().cloned());
                if !bearer {
                    about.push("skip_jwt_bearer_tokens is off: bearer tokens are not accepted (portcullis accepts them by default)".to_owned());
                }
            }
            let mut rule = Rule {
                about,
                name: String::new(),
                path,
                policy: "authenticated",
                groups: cond.groups.clone(),
                groups_all: cond.groups_all.clone(),
                emails: cond.emails.clone(),
                basic_auth: cond.basic_auth,
                email_domains: cond.email_domains.clone(),
                upstream: up.map(|u| u.origin.clone()),
                preserve_host: up.is_some() && preserve_host,
                insecure: up.is_some() && insecure,
                bearer_off: !bearer,
                ..Rule::default()
            };
            if let Some(why) = &cond.deny {
                rule.about.push(why.clone());
                rule = Rule {
                    policy: "deny",
                    groups: vec![],
                    groups_all: vec![],
                    emails: vec![],
                    email_domains: vec![],
                    basic_auth: false,
                    bearer_off: false,
                    ..rule
                };
            }
            self.rules.push(rule);
        }
        if bearer {
            self.comment(Section::Oidc, "skip_jwt_bearer_tokens: portcullis accepts bearer JWTs for client_id and extra_audiences (and the bearer_issuers below) on every rule");
        }
        self.not_converted_if_set(Section::Access, "bearer_token_login_fallback", "portcullis answers a request with an invalid bearer token 401 like any request without credentials");
        self.not_converted_if_set(Section::Access, "api_routes", "portcullis answers 401 instead of a login redirect to every client that does not accept text/html");
        self.not_converted_if_set(Section::Access, "allowed_roles", "client roles are no groups claim; set oidc.groups_claim to the roles claim path (e.g. \"resource_access.CLIENT.roles\") and use groups");
    }
}

// === helpers ===

/// The addresses of an authenticated-emails file: the first comma-separated
/// field of each line, trimmed and lower-cased; `#` lines are comments.
fn read_emails(path: &Path) -> Result<Vec<String>, MigrateError> {
    let text = std::fs::read_to_string(path).map_err(|source| MigrateError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        let addr = line
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_ascii_lowercase();
        if !addr.is_empty() && !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// One `skip_auth_routes` (`METHOD=regex`, `METHOD!=regex`, `regex`) or
/// `skip_auth_regex` entry, when the regex is a plain prefix.
fn skip_route(route: &str, with_method: bool) -> Result<PublicRoute, String> {
    let (method, regex) = match route.split_once('=') {
        Some((m, r)) if with_method => (Some(m), r),
        _ => (None, route),
    };
    let methods = match method {
        Some(m) if m.ends_with('!') => {
            return Err("a negated method (!=) has no counterpart".to_owned())
        }
        Some("") | None => None,
        Some(m) if m.chars().all(|c| c.is_ascii_alphabetic()) => Some(vec![m.to_ascii_uppercase()]),
        Some(m) => return Err(format!("{m:?} is not an HTTP method")),
    };
    let (path, note) = regex_prefix(regex)?;
    Ok(PublicRoute {
        about: note.into_iter().collect(),
        path,
        methods,
        networks: Vec::new(),
    })
}

/// `^/api/`, `^/api/.*`, `^/static` → a rule path, when the regex is a plain prefix.
pub(in crate::tools::migrate) fn regex_prefix(
    regex: &str,
) -> Result<(String, Option<String>), String> {
    let Some(body) = regex.strip_prefix('^') else {
        return Err("not anchored with ^, it matches anywhere in the path".to_owned());
    };
    let body = body
        .strip_suffix(".*$")
        .or_else(|| body.strip_suffix(".*"))
        .unwrap_or(body);
    if body.ends_with('$') && !body.ends_with("\\$") {
        return Err("it matches one exact path; portcullis rules match a path and everything below it, which would make more public".to_owned());
    }
    let mut literal = String::new();
    let mut loose_dot = false;
    let mut chars = body.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            // An unescaped dot matches any character, a dot among them: the
            // literal reading makes fewer paths public, never more.
            '.' if !matches!(chars.peek(), Some('*' | '+' | '?' | '{')) => {
                loose_dot = true;
                literal.push('.');
            }
            '\\' => match chars.next() {
                Some(e) if !e.is_ascii_alphanumeric() => literal.push(e),
                _ => {
                    return Err("it uses regular-expression classes, not a plain prefix".to_owned())
                }
            },
            '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => {
                return Err("it uses regular-expression syntax beyond a plain prefix".to_owned())
            }
            c => literal.push(c),
        }
    }
    if !literal.starts_with('/') {
        return Err("it does not start with /".to_owned());
    }
    if literal.contains("//")
        || literal.contains("/./")
        || literal.contains("/../")
        || literal.ends_with("/.")
        || literal.ends_with("/..")
        || literal.contains('%')
    {
        return Err("it is not a normalised path".to_owned());
    }
    let (path, note) = plain_prefix(&literal);
    let note = match (note, loose_dot) {
        (Some(n), true) => Some(format!("{n}; each unescaped . is read as a literal dot")),
        (None, true) => Some("each unescaped . is read as a literal dot".to_owned()),
        (n, false) => n,
    };
    Ok((path, note))
}

/// A literal path prefix → the rule path and how its matching differs.
fn plain_prefix(literal: &str) -> (String, Option<String>) {
    if literal == "/" {
        return ("/".to_owned(), None);
    }
    if let Some(dir) = literal.strip_suffix('/') {
        (
            dir.to_owned(),
            Some(format!(
                "{dir} itself is public too (portcullis matches {dir} and everything below it)"
            )),
        )
    } else {
        (
            literal.to_owned(),
            Some(format!("matched on path segments: {literal} and {literal}/... are public, {literal}-other is not")),
        )
    }
}

/// The routing regions inside `path`: each upstream whose path lies at or
/// below it, then `path` itself with the upstream covering it (when no
/// upstream sits exactly there). Most specific first; no upstreams: `path` alone.
fn regions<'u>(path: &str, upstreams: &'u [Upstream]) -> Vec<(String, Option<&'u Upstream>)> {
    if upstreams.is_empty() {
        return vec![(path.to_owned(), None)];
    }
    let mut out: Vec<(String, Option<&Upstream>)> = upstreams
        .iter()
        .filter(|u| under(&u.path, path))
        .map(|u| (u.path.clone(), Some(u)))
        .collect();
    if !out.iter().any(|(p, _)| p == path) {
        let cover = upstreams.iter().find(|u| under(path, &u.path));
        out.push((path.to_owned(), cover));
    }
    out
}

/// Whether `path` is `prefix` or below it, on segment boundaries.
fn under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

pub(super) fn render_rule(i: usize, r: &Rule) -> String {
    let mut s = String::new();
    for a in &r.about {
        s.push_str(&format!("# {a}\n"));
    }
    s.push_str("[[rule]]\n");
    let name = if r.name.is_empty() {
        format!("oauth2-proxy-{i}")
    } else {
        r.name.clone()
    };
    s.push_str(&format!("name = {}\n", q(&name)));
    s.push_str(&format!("path = {}\n", q(&r.path)));
    if let Some(m) = &r.methods {
        s.push_str(&format!("methods = {}\n", list(m)));
    }
    s.push_str(&format!("policy = {}\n", q(r.policy)));
    for (key, values) in [
        ("networks", &r.networks),
        ("groups", &r.groups),
        ("groups_all", &r.groups_all),
        ("emails", &r.emails),
        ("email_domains", &r.email_domains),
    ] {
        if !values.is_empty() {
            s.push_str(&format!("{key} = {}\n", list(values)));
        }
    }
    if let Some(u) = &r.upstream {
        s.push_str(&format!("upstream = {}\n", q(u)));
        if r.preserve_host {
            s.push_str("preserve_host = true   # pass_host_header (oauth2-proxy's default)\n");
        }
        if r.insecure {
            s.push_str(
                "upstream_insecure_skip_verify = true   # ssl_upstream_insecure_skip_verify\n",
            );
        }
    }
    if r.basic_auth {
        s.push_str("basic_auth = true\n");
    }
    if r.bearer_off {
        s.push_str("bearer = false\n");
    }
    s
}
