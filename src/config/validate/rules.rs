//! `[[rule]]`: host patterns, paths, methods, policies and subjects, one
//! rule at a time, plus the check that names are unique. Part of `validate`.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;

use super::{syntax, Checker};
use crate::config::raw::RawRule;
use crate::config::{PathCase, Policy, RuleConfig};

// === impl Checker: [[rule]] ===

impl Checker<'_> {
    pub(super) fn rule(
        &mut self,
        i: usize,
        raw: RawRule,
        named: &BTreeMap<String, Vec<IpNet>>,
    ) -> RuleConfig {
        let key = |field: &str| format!("rule[{i}].{field}");
        let upstream = raw
            .upstream
            .as_deref()
            .and_then(|u| match syntax::http_url(u) {
                Ok(url) => Some(url),
                Err(reason) => {
                    self.problem(key("upstream"), reason);
                    None
                }
            });
        let upstream_options = self.upstream_options(i, &raw, upstream.as_ref());
        let name = match raw.name {
            Some(name) if name.trim().is_empty() => {
                self.problem(key("name"), "is empty; remove it to use the default name");
                name
            }
            Some(name) => name,
            None => format!("rule[{i}]"),
        };
        let host = raw.host.and_then(|h| match syntax::host_pattern(&h) {
            Ok(pattern) => Some(pattern),
            Err(reason) => {
                self.problem(
                    key("host"),
                    format!("{h:?} is not a valid host pattern: {reason}"),
                );
                None
            }
        });
        let path = syntax::rule_path(&raw.path).unwrap_or_else(|reason| {
            self.problem(key("path"), format!("{:?} {reason}", raw.path));
            "/".to_owned()
        });
        let methods = raw.methods.map(|list| self.methods(&key("methods"), &list));
        let policy = match raw.policy.as_str() {
            "public" => Policy::Public,
            "authenticated" => Policy::Authenticated,
            "deny" => Policy::Deny,
            other => {
                self.problem(
                    key("policy"),
                    format!("{other:?} is not one of \"public\", \"authenticated\", \"deny\""),
                );
                Policy::Authenticated
            }
        };
        let path_case = match raw.path_case.as_str() {
            "sensitive" => PathCase::Sensitive,
            "insensitive" => PathCase::Insensitive,
            other => {
                self.problem(
                    key("path_case"),
                    format!("{other:?} is not one of \"sensitive\", \"insensitive\""),
                );
                PathCase::Sensitive
            }
        };
        let emails = raw
            .emails
            .iter()
            .enumerate()
            .map(|(n, e)| self.email(&format!("{}[{n}]", key("emails")), e))
            .collect();
        let email_domains = raw
            .email_domains
            .iter()
            .enumerate()
            .map(|(n, d)| {
                let bare = d.strip_prefix('@').unwrap_or(d);
                self.domain(
                    &format!("{}[{n}]", key("email_domains")),
                    bare,
                    "e-mail domain",
                )
            })
            .collect();
        let rule = RuleConfig {
            name,
            host,
            path,
            methods,
            policy,
            groups: self.non_empty_strings(&key("groups"), raw.groups),
            groups_all: self.non_empty_strings(&key("groups_all"), raw.groups_all),
            networks: raw
                .networks
                .map(|list| self.rule_networks(&key("networks"), &list, named)),
            users: self.non_empty_strings(&key("users"), raw.users),
            emails,
            email_domains,
            upstream,
            upstream_options,
            bearer: raw.bearer,
            basic_auth: raw.basic_auth,
            path_case,
        };
        if rule.basic_auth && rule.policy != Policy::Authenticated {
            self.problem(
                key("basic_auth"),
                format!("{:?} never asks for credentials; remove basic_auth or use policy = \"authenticated\"", raw.policy),
            );
        }
        if rule.policy != Policy::Authenticated && rule.has_conditions_on_user() {
            self.problem(
                key("policy"),
                format!("{:?} ignores groups, groups_all, users, emails and email_domains; remove them or use policy = \"authenticated\"", raw.policy),
            );
        }
        rule
    }

    /// Each entry a CIDR, an address, or an `[access.networks]` name
    /// (expanded); duplicates kept once.
    fn rule_networks(
        &mut self,
        key: &str,
        list: &[String],
        named: &BTreeMap<String, Vec<IpNet>>,
    ) -> Vec<IpNet> {
        if list.is_empty() {
            self.problem(
                key,
                "networks = [] can never match; remove the key to match any client address",
            );
        }
        let mut out: Vec<IpNet> = Vec::new();
        for (n, text) in list.iter().enumerate() {
            let nets = match named.get(text) {
                Some(nets) => nets.clone(),
                None if text.contains(['.', ':']) => self
                    .network(&format!("{key}[{n}]"), text)
                    .into_iter()
                    .collect(),
                None => {
                    self.problem(
                        format!("{key}[{n}]"),
                        format!("{text:?} is not a CIDR, an IP address, or a list under [access.networks]"),
                    );
                    Vec::new()
                }
            };
            for net in nets {
                if !out.contains(&net) {
                    out.push(net);
                }
            }
        }
        out
    }

    fn methods(&mut self, key: &str, list: &[String]) -> Vec<http::Method> {
        if list.is_empty() {
            self.problem(
                key,
                "methods = [] can never match; remove the key to match any method",
            );
        }
        let mut out: Vec<http::Method> = Vec::new();
        for (n, text) in list.iter().enumerate() {
            match syntax::method(text) {
                Some(m) if !out.contains(&m) => out.push(m),
                Some(_) => {}
                None => self.problem(
                    format!("{key}[{n}]"),
                    format!("{text:?} is not an HTTP method"),
                ),
            }
        }
        out
    }

    fn email(&mut self, key: &str, text: &str) -> String {
        let lower = text.to_ascii_lowercase();
        match lower.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.contains('@') => {
                if let Err(reason) = syntax::domain(domain) {
                    self.problem(
                        key,
                        format!("{text:?} is not a valid e-mail address: its domain: {reason}"),
                    );
                }
            }
            _ => self.problem(key, format!("{text:?} is not an e-mail address")),
        }
        lower
    }

    pub(super) fn unique_rule_names(&mut self, rules: &[RuleConfig]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            if let Some(first) = seen.insert(&rule.name, i) {
                self.problem(
                    format!("rule[{i}].name"),
                    format!("{:?} is already the name of rule[{first}]", rule.name),
                );
                seen.insert(&rule.name, first);
            }
        }
    }
}
