//! `[headers]`: the naming preset, the identity header names, the extra
//! claim headers and the signed identity assertion. Part of `validate`.

use std::collections::HashSet;

use http::HeaderName;

use super::secrets::Place;
use super::{interned, Checker, ASSERTION_KEY_ENV, RESERVED_HEADERS};
use crate::config::raw::RawHeaders;
use crate::config::{HeaderPreset, HeadersConfig};

/// The default names of one preset: user, email, groups, preferred
/// username, access token.
struct Names {
    user: &'static str,
    email: &'static str,
    groups: &'static str,
    preferred_username: &'static str,
    access_token: &'static str,
}

const PORTCULLIS: Names = Names {
    user: "x-auth-user",
    email: "x-auth-email",
    groups: "x-auth-groups",
    preferred_username: "x-auth-preferred-username",
    access_token: "x-auth-access-token",
};

const OAUTH2_PROXY: Names = Names {
    user: "x-auth-request-user",
    email: "x-auth-request-email",
    groups: "x-auth-request-groups",
    preferred_username: "x-auth-request-preferred-username",
    access_token: "x-auth-request-access-token",
};

/// Every name either preset uses, plus the assertion header: client copies
/// of all of them are removed before proxying, whichever preset is in use.
pub const PRESET_NAMES: [&str; 11] = [
    PORTCULLIS.user,
    PORTCULLIS.email,
    PORTCULLIS.groups,
    PORTCULLIS.preferred_username,
    PORTCULLIS.access_token,
    OAUTH2_PROXY.user,
    OAUTH2_PROXY.email,
    OAUTH2_PROXY.groups,
    OAUTH2_PROXY.preferred_username,
    OAUTH2_PROXY.access_token,
    "x-auth-assertion",
];

// === impl Checker: [headers] ===

impl Checker<'_> {
    pub(super) fn headers(&mut self, raw: RawHeaders) -> HeadersConfig {
        let (preset, names) = match raw.preset.as_str() {
            "portcullis" => (HeaderPreset::Portcullis, &PORTCULLIS),
            "oauth2-proxy" => (HeaderPreset::OAuth2Proxy, &OAUTH2_PROXY),
            other => {
                self.problem(
                    "headers.preset",
                    format!("{other:?} is not one of \"portcullis\", \"oauth2-proxy\""),
                );
                (HeaderPreset::Portcullis, &PORTCULLIS)
            }
        };
        let named = |c: &mut Self, key: &str, text: &Option<String>, default: &'static str| {
            let text = text.as_deref().unwrap_or(default);
            let name = c
                .identity_header(key, text)
                .unwrap_or(HeaderName::from_static(default));
            (key.to_owned(), name)
        };
        let user = named(self, "headers.user", &raw.user, names.user);
        let email = named(self, "headers.email", &raw.email, names.email);
        let groups = named(self, "headers.groups", &raw.groups, names.groups);
        let preferred = named(
            self,
            "headers.preferred_username",
            &raw.preferred_username,
            names.preferred_username,
        );
        let claims: Vec<(String, HeaderName, _)> = raw
            .claims
            .iter()
            .filter_map(|(header, path)| {
                let key = format!("headers.claims.{header:?}");
                let name = self.identity_header(&key, header)?;
                let path = self.claim(&key, path);
                Some((key, name, path))
            })
            .collect();
        let access_token = HeaderName::from_static(names.access_token);
        // Proxies treat `_` and `-` alike, so "X_Auth_User" collides with "X-Auth-User".
        let mut seen: Vec<(String, String)> = Vec::new();
        let fixed = [&user, &email, &groups, &preferred];
        let all = std::iter::once(("the preset's access-token header".to_owned(), &access_token))
            .chain(fixed.iter().map(|(k, n)| (k.clone(), n)))
            .chain(claims.iter().map(|(k, n, _)| (k.clone(), n)));
        for (key, name) in all {
            let norm = crate::base::http_util::canonical(name.as_str());
            if let Some((other, _)) = seen.iter().find(|(_, n)| *n == norm) {
                self.problem(
                    key.clone(),
                    format!(
                        "{:?} is the same header as {other}; every identity header must differ",
                        name.as_str()
                    ),
                );
            }
            seen.push((key, norm));
        }
        let preferred_username_claim = self.claim(
            "headers.preferred_username_claim",
            &raw.preferred_username_claim,
        );
        let assertion = self.assertion(raw.assertion, raw.assertion_key_file);
        let strip = raw
            .strip
            .iter()
            .enumerate()
            .filter_map(|(i, h)| self.header_name(&format!("headers.strip[{i}]"), h))
            .collect();
        HeadersConfig {
            preset,
            user: user.1,
            email: email.1,
            groups: groups.1,
            preferred_username: preferred.1,
            access_token,
            preferred_username_claim,
            claims: claims.into_iter().map(|(_, n, p)| (n, p)).collect(),
            strip,
            pass_access_token: raw.pass_access_token,
            pass_authorization: raw.pass_authorization,
            assertion,
        }
    }

    fn assertion(
        &mut self,
        on: bool,
        file: Option<std::path::PathBuf>,
    ) -> Option<std::sync::Arc<crate::config::assertion_keys::Keys>> {
        const KEY: &str = "headers.assertion_key_file";
        let env = self.env_secret(ASSERTION_KEY_ENV);
        let given = [
            file.as_ref().map(|_| Place::Key(KEY)),
            env.as_ref().map(|_| Place::Env(ASSERTION_KEY_ENV)),
        ];
        if self.sole_place(KEY, &given).is_err() {
            return None;
        }
        match (on, file, env) {
            (false, None, None) => None,
            (false, ..) => {
                self.problem(
                    KEY,
                    format!("(or {ASSERTION_KEY_ENV}) is set but headers.assertion is false; set assertion = true or remove the key"),
                );
                None
            }
            (true, None, None) => {
                self.problem(
                    KEY,
                    format!("is required with headers.assertion = true: a PEM file with a P-256 private key (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out assertion.pem), or the PEM text in {ASSERTION_KEY_ENV}"),
                );
                None
            }
            (true, Some(path), _) => {
                let path = self.resolve(path);
                match crate::config::assertion_keys::Keys::load(&path) {
                    Ok(keys) => Some(std::sync::Arc::new(keys)),
                    Err(e) => {
                        self.problem(KEY, format!("{}: {e}", path.display()));
                        None
                    }
                }
            }
            (true, None, Some(pem)) => {
                match crate::config::assertion_keys::Keys::from_pem(pem.as_bytes()) {
                    Ok(keys) => Some(std::sync::Arc::new(keys)),
                    Err(e) => {
                        self.problem(ASSERTION_KEY_ENV, e.to_string());
                        None
                    }
                }
            }
        }
    }

    pub(super) fn header_name(&mut self, key: &str, text: &str) -> Option<HeaderName> {
        let name = HeaderName::from_bytes(text.as_bytes()).ok();
        if name.is_none() {
            self.problem(key, format!("{text:?} is not a valid header name"));
        }
        name.map(interned)
    }

    fn identity_header(&mut self, key: &str, text: &str) -> Option<HeaderName> {
        let name = self.header_name(key, text)?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            self.problem(
                key,
                format!("{text:?} has a meaning of its own in HTTP and cannot carry the identity"),
            );
        }
        Some(name)
    }
}

// === impl HeadersConfig ===

impl HeadersConfig {
    /// The claims an identity must keep for these headers.
    pub fn capture(&self) -> crate::base::identity::Capture {
        let mut claims: Vec<_> = self.claims.iter().map(|(_, p)| p.clone()).collect();
        claims.sort_by(|a, b| a.dotted.cmp(&b.dotted));
        claims.dedup_by(|a, b| a.dotted == b.dotted);
        crate::base::identity::Capture {
            preferred_username: Some(self.preferred_username_claim.clone()),
            claims,
        }
    }

    /// Canonical spellings (see `http_util::canonical`) of every
    /// header a client may not send: the names in use, those of both
    /// presets and the assertion header.
    pub fn protected(&self) -> Vec<String> {
        let mut out: HashSet<String> = PRESET_NAMES.iter().map(|n| (*n).to_owned()).collect();
        for n in [
            &self.user,
            &self.email,
            &self.groups,
            &self.preferred_username,
        ]
        .into_iter()
        .chain(self.claims.iter().map(|(n, _)| n))
        {
            out.insert(crate::base::http_util::canonical(n.as_str()));
        }
        let mut out: Vec<String> = out.into_iter().collect();
        out.sort();
        out
    }
}
