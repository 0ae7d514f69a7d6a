//! Access rules: compiles the `[[rule]]` list into a [`RuleSet`] and answers
//! "which rule decides this request" with [`RuleSet::evaluate`].
//!
//! Owns rule precedence, host and path matching, and the subject check
//! ([`CompiledRule::permits`]). It leaves to others: building
//! [`RequestFacts`] from HTTP (`forward_auth`, `proxy`, `debug`, using
//! [`host`] and [`path`] here to normalise), authentication (`session`,
//! `bearer`, `basic`), turning a [`Match`] into a decision (`pipeline`) and
//! a decision into a response (`forward_auth`, `proxy`). Compiled at start-up
//! and on SIGHUP ([`RuleSet::compile`], through `pipeline::Runtime`), and
//! evaluated once per request by `pipeline`, or by `proxy`, which also needs
//! the match for the upstream ([`RuleSet::evaluate`]). [`RuleSet::check`]
//! finds rules that can never match (empty lists, shadowed rules):
//! [`RuleSet::compile`] refuses them, so `serve` does not start, and
//! `portcullis check` reports each (`config` validation reports empty
//! `methods` and `networks` itself).
//!
//! # Semantics
//!
//! - **First match in file order.** A rule matches when its host, path and
//!   method all match; the matching rule with the lowest index decides, whatever
//!   kind of host pattern it has. When none matches, `access.default` decides.
//! - **Hosts.** Exact names are looked up in a map; `*.example.com` (stored as
//!   `.example.com`) matches every subdomain at any depth but not the apex, and is
//!   looked up once per `.` in the request host; host-less rules match any host.
//!   The request host must already be normalised ([`host::normalize_host`]).
//! - **Paths.** A rule path is a prefix on segment boundaries: `/admin` matches
//!   `/admin`, `/admin/` and `/admin/x`, not `/administrator`; `/` matches every
//!   path. Matching is case-sensitive. The request path must already be
//!   normalised ([`path::normalize`]).
//! - **Matrix parameters.** For matching, each request segment ends at its first
//!   `;`: `/admin;jsessionid=x/users` is matched as `/admin/users`. Servlet
//!   containers (Tomcat, Spring) strip such parameters before routing, so
//!   treating `;` literally would let `/admin;x` reach an upstream's `/admin`
//!   under another rule. Segments like `/..;/` are refused earlier, by
//!   [`path::normalize`]. The trade-off: for an upstream that treats `;` as an
//!   ordinary character, `/admin;x` is judged by the `/admin` rule rather than
//!   by whatever rule would cover a literal `admin;x` segment.
//! - **Methods.** Absent means any; otherwise the request method must be listed.
//! - **Networks.** Absent means any client; otherwise the client address
//!   ([`RequestFacts::client`], from `client_addr`) must be in one of
//!   the rule's networks. A request without a client address matches no rule
//!   with networks. Like host, path and method this is a matching condition:
//!   "the LAN may pass, everyone else signs in" is a `networks` rule with
//!   `policy = "public"` above the same host and path without it.
//!
//! # Dead rules
//!
//! [`RuleSet::check`] refuses a rule that can never match: an empty `methods`
//! list, a host or path that is not in normal form, or a rule fully shadowed by
//! an earlier one (the earlier host covers the later one, the earlier path is a
//! segment prefix of the later path, the earlier methods are a superset, and
//! the earlier rule has no networks or each later network lies inside one of
//! them; a rule with networks never shadows one without).
//!
//! # Hot path
//!
//! [`RuleSet::evaluate`] allocates nothing and builds no strings. Exact hosts
//! are one hash probe; wildcards are one probe per label of the request host
//! (`.b.example.com`, `.example.com`, `.com`) rather than a reversed-label trie:
//! the same answer with less code, since hosts have few labels. Networks are
//! a short list per rule, tried after host, path and method; rules without
//! them cost one length check, and callers compute the client address only
//! when [`RuleSet::has_networks`]. Within each
//! candidate list rules stay in file order and the scan stops at the best index
//! found so far. The reason each earlier rule did not match is logged only when
//! DEBUG is enabled.

pub mod host;
pub mod path;
#[cfg(test)]
mod tests;

use rustc_hash::FxHashMap;
use std::fmt;
use std::net::IpAddr;

use http::Method;
use ipnet::IpNet;
use tracing::Level;
use url::Url;

use crate::base::identity::Identity;
use crate::config::{DefaultPolicy, HostPattern, PathCase, Policy, RuleConfig};

/// What rules look at, built once per request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Normalised host: lower-case, no port, no trailing dot ([`host::normalize_host`]).
    pub host: &'a str,
    /// Normalised path, without query or fragment ([`path::normalize`]).
    pub path: &'a str,
    /// The original request's method; `None` when the front proxy did not
    /// say (a forward-auth check without `X-Forwarded-Method` or
    /// `X-Original-Method`). An unknown method satisfies no `methods` list.
    pub method: Option<&'a Method>,
    /// The client address (see `client_addr`, IPv4-mapped addresses as
    /// IPv4); `None` when unknown or not computed because no rule has
    /// `networks`. `None` matches no rule with networks.
    pub client: Option<IpAddr>,
}

/// The outcome of [`RuleSet::evaluate`].
#[derive(Debug, Clone, Copy)]
pub enum Match<'a> {
    /// This rule, the first in file order to match, decides.
    Rule(&'a CompiledRule),
    /// No rule matched; `access.default` decides.
    Default(DefaultPolicy),
}

/// The compiled `[[rule]]` list: immutable, shared by every request.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Every rule, indexed by its position in the file.
    rules: Vec<CompiledRule>,
    /// Exact host → indices of its rules, ascending. Fx rather than SipHash:
    /// the keys come from the config and lookups never insert, so hostile
    /// hosts cannot build collision chains.
    exact: FxHashMap<Box<str>, Vec<usize>>,
    /// Wildcard suffix (`.example.com`) → indices of its rules, ascending.
    suffix: FxHashMap<Box<str>, Vec<usize>>,
    /// Indices of host-less rules, ascending.
    any_host: Vec<usize>,
    /// `access.default`.
    default: DefaultPolicy,
    /// True when some rule has `networks`.
    has_networks: bool,
    /// True when some rule has `basic_auth` (its failure counters need the client address).
    has_basic_auth: bool,
}

/// One rule, ready for matching and authorisation.
///
/// The fields callers need are public for reading; a `CompiledRule` is only
/// ever handed out by shared reference from an immutable [`RuleSet`].
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// Zero-based position in the file.
    pub index: usize,
    /// `name`, or `rule[N]`; for logs.
    pub name: String,
    /// What the rule decides.
    pub policy: Policy,
    /// Reverse-proxy mode: where allowed requests go.
    pub upstream: Option<Url>,
    /// Whether bearer JWTs are accepted on this rule.
    pub bearer: bool,
    /// Whether `Authorization: Basic` is checked against `access.htpasswd_file`.
    pub basic_auth: bool,
    host: Option<HostPattern>,
    /// Normalised prefix, starts with `/`; lower-case when `fold`.
    path: Box<str>,
    /// `path_case = "insensitive"`: compare ASCII letters without case.
    fold: bool,
    /// `None` = any method; never empty.
    methods: Option<Box<[Method]>>,
    groups: Vec<String>,
    users: Vec<String>,
    /// Lower-cased at compile time.
    emails: Vec<String>,
    /// Lower-cased at compile time, without `@`.
    email_domains: Vec<String>,
    /// Every one of these groups is required as well (`groups_all`).
    groups_all: Vec<String>,
    /// The client address must be in one of these; empty = any address.
    networks: Box<[IpNet]>,
}

/// Names a rule in messages: `rule[3] ("admin")`, or `rule[3]` when it has no
/// name of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// Zero-based position in the file.
    pub index: usize,
    /// The rule's `name` (`rule[N]` when none was given).
    pub name: String,
}

/// A rule that can never match. Each names the rule and, for shadowing, the
/// earlier rule responsible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// `methods = []`: no request has no method. Remove the key to match any method.
    #[error(
        "{rule} can never match: its methods list is empty (remove `methods` to match any method)"
    )]
    EmptyMethods {
        /// The dead rule.
        rule: RuleRef,
    },
    /// `networks = []`: no client address is in no network. Remove the key to match any client.
    #[error("{rule} can never match: its networks list is empty (remove `networks` to match any client address)")]
    EmptyNetworks {
        /// The dead rule.
        rule: RuleRef,
    },
    /// An earlier rule matches every request this one would, so this one is dead;
    /// usually the more specific rule has to move above the general one.
    #[error("{rule} can never match: {by} matches every request it would (move it above {by})")]
    Shadowed {
        /// The dead rule.
        rule: RuleRef,
        /// The earlier rule that takes its requests.
        by: RuleRef,
    },
    /// The rule path is refused by path normalisation, so no request path can equal it.
    #[error("{rule} can never match: path {path:?} is not a valid request path")]
    InvalidPath {
        /// The dead rule.
        rule: RuleRef,
        /// The path as configured.
        path: String,
        /// Why normalisation refuses it.
        #[source]
        source: path::PathError,
    },
    /// The rule path is not in normal form (dot-segments, `//`, encoded
    /// unreserved characters, lower-case hex), while request paths always are.
    #[error("{rule} can never match: path {path:?} is not in normal form; write {normal:?}")]
    PathNotNormal {
        /// The dead rule.
        rule: RuleRef,
        /// The path as configured.
        path: String,
        /// What it normalises to.
        normal: String,
    },
    /// The rule path contains `;`, which request matching ignores from there to the end of each segment.
    #[error("{rule} can never match: path {path:?} contains ';', and matching ignores ';' parameters in request paths")]
    PathHasParams {
        /// The dead rule.
        rule: RuleRef,
        /// The path as configured.
        path: String,
    },
    /// The rule host is not a normalised host name (upper case, port, bad characters).
    #[error("{rule} can never match: host {host:?} is not a normalised host name")]
    HostNotNormal {
        /// The dead rule.
        rule: RuleRef,
        /// The host pattern as configured (wildcards as `*.example.com`).
        host: String,
    },
}

// === impl RuleSet ===

impl RuleSet {
    /// Compiles the rules (in file order) and the default policy. Fails on the
    /// first rule that can never match; use [`RuleSet::check`] to list them all.
    pub fn compile(rules: &[RuleConfig], default: DefaultPolicy) -> Result<RuleSet, RulesError> {
        if let Some(problem) = Self::check(rules).into_iter().next() {
            return Err(problem);
        }
        let mut set = RuleSet {
            rules: Vec::with_capacity(rules.len()),
            exact: FxHashMap::default(),
            suffix: FxHashMap::default(),
            any_host: Vec::new(),
            default,
            has_networks: rules.iter().any(|r| r.networks.is_some()),
            has_basic_auth: rules.iter().any(|r| r.basic_auth),
        };
        for (index, cfg) in rules.iter().enumerate() {
            let rule = CompiledRule::compile(index, cfg);
            let list = match &rule.host {
                Some(HostPattern::Exact(h)) => set.exact.entry(h.as_str().into()).or_default(),
                Some(HostPattern::Suffix(s)) => set.suffix.entry(s.as_str().into()).or_default(),
                None => &mut set.any_host,
            };
            list.push(index);
            set.rules.push(rule);
        }
        Ok(set)
    }

    /// Every rule that can never match, in file order (empty when all is well).
    /// `config` validation reports these alongside its own problems.
    pub fn check(rules: &[RuleConfig]) -> Vec<RulesError> {
        let mut problems = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            if let Some(problem) = check_alone(index, rule) {
                problems.push(problem);
                continue;
            }
            let shadow = rules[..index]
                .iter()
                .enumerate()
                .find(|(_, earlier)| covers(earlier, rule));
            if let Some((by, earlier)) = shadow {
                problems.push(RulesError::Shadowed {
                    rule: RuleRef::new(index, rule),
                    by: RuleRef::new(by, earlier),
                });
            }
        }
        problems
    }

    /// Finds the rule that decides a request: the lowest-indexed rule whose host,
    /// path and method match, or the default policy. Allocates nothing.
    pub fn evaluate<'a>(&'a self, facts: &RequestFacts<'_>) -> Match<'a> {
        let params = facts.path.contains(';');
        let mut best = usize::MAX;
        if let Some(list) = self.exact.get(facts.host) {
            best = self.first_match(list, facts, params, best);
        }
        if !self.suffix.is_empty() {
            for (dot, _) in facts.host.match_indices('.').filter(|&(dot, _)| dot > 0) {
                if let Some(list) = self.suffix.get(&facts.host[dot..]) {
                    best = self.first_match(list, facts, params, best);
                }
            }
        }
        best = self.first_match(&self.any_host, facts, params, best);
        if tracing::event_enabled!(Level::DEBUG) {
            self.explain(facts, best);
        }
        match self.rules.get(best) {
            Some(rule) => Match::Rule(rule),
            None => Match::Default(self.default),
        }
    }

    /// True when some rule has `networks`, so requests need
    /// [`RequestFacts::client`]; otherwise callers skip computing it.
    pub fn has_networks(&self) -> bool {
        self.has_networks
    }

    /// True when some rule has `basic_auth`, whose failed attempts are
    /// counted per [`RequestFacts::client`].
    pub fn has_basic_auth(&self) -> bool {
        self.has_basic_auth
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules (every request gets the default policy).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// `access.default`: the decision when no rule matches.
    pub fn default_policy(&self) -> DefaultPolicy {
        self.default
    }

    /// The lowest index in `list` (ascending) below `best` whose rule matches
    /// path and method, else `best`.
    fn first_match(
        &self,
        list: &[usize],
        facts: &RequestFacts<'_>,
        params: bool,
        best: usize,
    ) -> usize {
        list.iter()
            .take_while(|&&i| i < best)
            .find(|&&i| {
                let rule = &self.rules[i];
                rule.matches_path_and_method(facts, params) && rule.matches_client(facts.client)
            })
            .map_or(best, |&i| i)
    }

    /// Logs, at DEBUG, why each rule before the deciding one did not match.
    #[cold]
    fn explain(&self, facts: &RequestFacts<'_>, best: usize) {
        let params = facts.path.contains(';');
        for rule in self.rules.iter().take_while(|r| r.index < best) {
            let reason = if !rule.matches_host(facts.host) {
                "host"
            } else if !path_matches(&rule.path, facts.path, params, rule.fold) {
                "path"
            } else if !rule.matches_path_and_method(facts, params) {
                "method"
            } else {
                "network"
            };
            tracing::debug!(
                rule.index = rule.index,
                rule.name = %rule.name,
                http.host = %facts.host,
                http.path = %facts.path,
                http.method = facts.method.map_or("(unknown)", Method::as_str),
                client.ip = ?facts.client,
                mismatch = reason,
                "rule did not match"
            );
        }
    }
}

/// Problems a rule has on its own, without looking at earlier rules.
fn check_alone(index: usize, rule: &RuleConfig) -> Option<RulesError> {
    let r = || RuleRef::new(index, rule);
    if rule.methods.as_ref().is_some_and(Vec::is_empty) {
        return Some(RulesError::EmptyMethods { rule: r() });
    }
    if rule.networks.as_ref().is_some_and(Vec::is_empty) {
        return Some(RulesError::EmptyNetworks { rule: r() });
    }
    if let Some(pattern) = &rule.host {
        if !is_normal_pattern(pattern) {
            let host = match pattern {
                HostPattern::Exact(h) => h.clone(),
                HostPattern::Suffix(s) => format!("*{s}"),
            };
            return Some(RulesError::HostNotNormal { rule: r(), host });
        }
    }
    let path = rule.path.clone();
    match path::normalize(&rule.path) {
        Err(source) => Some(RulesError::InvalidPath {
            rule: r(),
            path,
            source,
        }),
        Ok(normal) if normal != rule.path => Some(RulesError::PathNotNormal {
            rule: r(),
            path,
            normal: normal.into_owned(),
        }),
        Ok(_) if rule.path.contains(';') => Some(RulesError::PathHasParams { rule: r(), path }),
        Ok(_) => None,
    }
}

/// True when `pattern` is already lower-case, port-less and valid.
fn is_normal_pattern(pattern: &HostPattern) -> bool {
    let name = match pattern {
        HostPattern::Exact(h) => h.as_str(),
        HostPattern::Suffix(s) => match s.strip_prefix('.') {
            Some(name) => name,
            None => return false,
        },
    };
    matches!(host::normalize_host(name), Ok(n) if n == name)
}

/// True when every request `later` matches is also matched by `earlier`.
fn covers(earlier: &RuleConfig, later: &RuleConfig) -> bool {
    host_covers(earlier.host.as_ref(), later.host.as_ref())
        && path_covers(earlier, later)
        && methods_cover(earlier.methods.as_deref(), later.methods.as_deref())
        && networks_cover(earlier.networks.as_deref(), later.networks.as_deref())
}

/// True when every client address `later` admits is in one of `earlier`'s
/// networks. A rule with networks never covers one without.
fn networks_cover(earlier: Option<&[IpNet]>, later: Option<&[IpNet]>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => l.iter().all(|ln| e.iter().any(|en| en.contains(ln))),
    }
}

fn host_covers(earlier: Option<&HostPattern>, later: Option<&HostPattern>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) if e == l => true,
        (Some(HostPattern::Suffix(e)), Some(HostPattern::Exact(l))) => {
            l.ends_with(e.as_str()) && l.len() > e.len()
        }
        (Some(HostPattern::Suffix(e)), Some(HostPattern::Suffix(l))) => l.ends_with(e.as_str()),
        (Some(HostPattern::Exact(_)), Some(_)) => false,
    }
}

/// True when `earlier`'s path is a segment prefix of `later`'s (so it matches
/// every path `later` does). A case-sensitive rule covers a case-insensitive
/// one only through `/`: `/Admin` reaches the later rule but not `/admin`.
fn path_covers(earlier: &RuleConfig, later: &RuleConfig) -> bool {
    let fold = earlier.path_case == PathCase::Insensitive;
    path_matches(&earlier.path, &later.path, false, fold)
        && (fold || later.path_case == PathCase::Sensitive || earlier.path == "/")
}

fn methods_cover(earlier: Option<&[Method]>, later: Option<&[Method]>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => l.iter().all(|m| e.contains(m)),
    }
}

/// Segment-boundary prefix match. `params` says whether `path` contains `;`,
/// in which case each request segment is compared up to its first `;`.
/// `fold` compares ASCII letters without regard to case (`path_case =
/// "insensitive"`; the prefix is stored lower-case then).
fn path_matches(prefix: &str, path: &str, params: bool, fold: bool) -> bool {
    if prefix == "/" {
        return true;
    }
    if !params {
        let head = path.as_bytes().get(..prefix.len());
        let same = match head {
            Some(head) if fold => head.eq_ignore_ascii_case(prefix.as_bytes()),
            Some(head) => head == prefix.as_bytes(),
            None => false,
        };
        return same
            && (prefix.ends_with('/')
                || matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')));
    }
    let (prefix, dir) = match prefix.strip_suffix('/') {
        Some(p) => (p, true),
        None => (prefix, false),
    };
    let mut rest = path;
    for want in prefix.get(1..).unwrap_or("").split('/') {
        let Some(r) = rest.strip_prefix('/') else {
            return false;
        };
        let end = r.find('/').unwrap_or(r.len());
        let segment = &r[..end];
        let name = segment.find(';').map_or(segment, |semi| &segment[..semi]);
        let same = if fold {
            name.eq_ignore_ascii_case(want)
        } else {
            name == want
        };
        if !same {
            return false;
        }
        rest = &r[end..];
    }
    !dir || rest.starts_with('/')
}

// === impl CompiledRule ===

impl CompiledRule {
    fn compile(index: usize, cfg: &RuleConfig) -> CompiledRule {
        CompiledRule {
            index,
            name: cfg.name.clone(),
            host: cfg.host.clone(),
            path: match cfg.path_case {
                PathCase::Sensitive => cfg.path.as_str().into(),
                PathCase::Insensitive => cfg.path.to_ascii_lowercase().into(),
            },
            fold: cfg.path_case == PathCase::Insensitive,
            methods: cfg.methods.as_ref().map(|m| m.clone().into_boxed_slice()),
            policy: cfg.policy,
            groups: cfg.groups.clone(),
            users: cfg.users.clone(),
            emails: cfg.emails.iter().map(|e| e.to_ascii_lowercase()).collect(),
            email_domains: cfg
                .email_domains
                .iter()
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            groups_all: cfg.groups_all.clone(),
            networks: cfg.networks.clone().unwrap_or_default().into_boxed_slice(),
            upstream: cfg.upstream.clone(),
            bearer: cfg.bearer,
            basic_auth: cfg.basic_auth,
        }
    }

    /// The host pattern; `None` = any host.
    pub fn host(&self) -> Option<&HostPattern> {
        self.host.as_ref()
    }

    /// The path prefix.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The methods; `None` = any.
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }

    /// The client networks; empty = any address.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// The first of the rule's networks holding `client`; `None` when none
    /// does, or the rule has no networks. For explanations.
    pub fn network_of(&self, client: IpAddr) -> Option<&IpNet> {
        self.networks.iter().find(|n| n.contains(&client))
    }

    /// The groups any one of which grants access (for the 403 page and the
    /// empty-groups-claim diagnostic).
    pub fn required_groups(&self) -> &[String] {
        &self.groups
    }

    /// The groups every one of which is required as well (`groups_all`).
    pub fn required_all_groups(&self) -> &[String] {
        &self.groups_all
    }

    /// The `groups_all` entries `id` is not in, in config order (for the
    /// 403 page and explanations; empty when it is in all of them).
    pub fn missing_groups<'a>(&'a self, id: &'a Identity) -> impl Iterator<Item = &'a str> + 'a {
        self.groups_all
            .iter()
            .filter(|g| !id.groups.contains(g))
            .map(String::as_str)
    }

    /// True when the rule admits signed-in users by group, so an identity
    /// without groups may be a sign of a missing groups claim.
    pub fn needs_groups(&self) -> bool {
        self.policy == Policy::Authenticated
            && !(self.groups.is_empty() && self.groups_all.is_empty())
    }

    /// True when the rule names any subject (groups, users, emails, domains).
    pub fn has_subjects(&self) -> bool {
        !(self.groups.is_empty()
            && self.users.is_empty()
            && self.emails.is_empty()
            && self.email_domains.is_empty())
    }

    /// Whether `id` may pass. `Public`: always. `Deny`: never. `Authenticated`:
    /// when the rule names no subject, any identity; otherwise the user is listed
    /// (exact), or one of its groups is (exact, case-sensitive), or its e-mail is
    /// (ASCII case-insensitive), or the part of its e-mail after the last `@` is a
    /// listed domain (ASCII case-insensitive). Empty values never match. And,
    /// with `groups_all`, the identity is in every one of those groups (exact).
    /// Allocates nothing.
    pub fn permits(&self, id: &Identity) -> bool {
        match self.policy {
            Policy::Public => true,
            Policy::Deny => false,
            Policy::Authenticated => {
                (!self.has_subjects() || self.names(id)) && self.missing_groups(id).next().is_none()
            }
        }
    }

    /// True when `id` satisfies the any-of subjects (or the rule names none);
    /// `groups_all` aside. For explanations.
    pub fn names_subject(&self, id: &Identity) -> bool {
        !self.has_subjects() || self.names(id)
    }

    fn names(&self, id: &Identity) -> bool {
        let user = !id.user.is_empty() && self.users.contains(&id.user);
        let group = || {
            id.groups
                .iter()
                .filter(|g| !g.is_empty())
                .any(|g| self.groups.contains(g))
        };
        let email = || {
            !id.email.is_empty()
                && self
                    .emails
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(&id.email))
        };
        // Exactly one `@` with something on both sides: `a@b@corp.example`
        // or `@corp.example` is no address at any domain.
        let domain = || match id.email.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                self.email_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain))
            }
            _ => false,
        };
        user || group() || email() || domain()
    }

    /// Host part of matching, for explanations and tests (evaluation uses the maps).
    fn matches_host(&self, host: &str) -> bool {
        match &self.host {
            None => true,
            Some(HostPattern::Exact(h)) => h == host,
            Some(HostPattern::Suffix(s)) => host.ends_with(s.as_str()) && host.len() > s.len(),
        }
    }

    /// The network condition: no networks, or the client is in one.
    #[inline]
    fn matches_client(&self, client: Option<IpAddr>) -> bool {
        self.networks.is_empty()
            || client.is_some_and(|ip| self.networks.iter().any(|n| n.contains(&ip)))
    }

    fn matches_path_and_method(&self, facts: &RequestFacts<'_>, params: bool) -> bool {
        path_matches(&self.path, facts.path, params, self.fold)
            && self
                .methods
                .as_deref()
                .is_none_or(|m| facts.method.is_some_and(|method| m.contains(method)))
    }
}

// === impl RuleRef ===

impl RuleRef {
    fn new(index: usize, rule: &RuleConfig) -> RuleRef {
        RuleRef {
            index,
            name: rule.name.clone(),
        }
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.index;
        if self.name == format!("rule[{index}]") {
            write!(f, "rule[{index}]")
        } else {
            write!(f, "rule[{index}] ({:?})", self.name)
        }
    }
}
