//! Who a request belongs to, as far as rules and identity headers care.
//!
//! Built by `oidc` (from ID-token and userinfo claims) and, later, by bearer
//! token validation; read by `rules` (authorisation) and by `forward_auth` /
//! `proxy` (identity headers). It owns claim-path extraction so every source
//! of claims maps to an identity the same way.

use http::HeaderValue;
use serde_json::Value;

use crate::config::ClaimPath;

/// The subject of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// From `user_claim` (falls back to `sub`).
    pub user: String,
    /// From `email_claim`; empty when unknown.
    pub email: String,
    /// From `groups_claim`; empty when the claim is absent.
    pub groups: Vec<String>,
}

/// Identity header values rendered once, when the identity is created, so that
/// answering a request copies three ready values instead of formatting strings.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// Value of the user header.
    pub user: HeaderValue,
    /// Value of the email header.
    pub email: HeaderValue,
    /// Value of the groups header (comma-separated).
    pub groups: HeaderValue,
}

// === impl Identity ===

impl Identity {
    /// Renders the header values. Characters a header cannot carry (control
    /// characters, non-visible bytes) are replaced with `?`, and commas inside a
    /// group name with `%2C`, so a hostile claim cannot split or forge headers.
    pub fn headers(&self) -> IdentityHeaders {
        let groups: Vec<String> = self.groups.iter().map(|g| g.replace(',', "%2C")).collect();
        IdentityHeaders {
            user: header_value(&self.user),
            email: header_value(&self.email),
            groups: header_value(&groups.join(",")),
        }
    }
}

fn header_value(s: &str) -> HeaderValue {
    match HeaderValue::from_str(s) {
        Ok(v) => v,
        Err(_) => {
            let cleaned: String = s
                .chars()
                .map(|c| {
                    if c == ' ' || c.is_ascii_graphic() {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            HeaderValue::from_str(&cleaned).unwrap_or(HeaderValue::from_static(""))
        }
    }
}

// === impl IdentityHeaders ===

impl IdentityHeaders {
    /// Copies of the three values in new buffers. A `clone` would share each
    /// value's reference count, which every worker thread answering for the
    /// same busy session would then contend for; three small copies cost less.
    pub fn copied(&self) -> Self {
        let copy = |v: &HeaderValue| {
            HeaderValue::from_bytes(v.as_bytes()).unwrap_or(HeaderValue::from_static(""))
        };
        IdentityHeaders {
            user: copy(&self.user),
            email: copy(&self.email),
            groups: copy(&self.groups),
        }
    }

    /// All three values empty: what public routes answer with.
    pub fn empty() -> Self {
        IdentityHeaders {
            user: HeaderValue::from_static(""),
            email: HeaderValue::from_static(""),
            groups: HeaderValue::from_static(""),
        }
    }
}

// === impl ClaimPath ===

impl ClaimPath {
    /// Parses a dotted path such as `realm_access.roles`; `None` when a segment is empty.
    pub fn parse(dotted: &str) -> Option<ClaimPath> {
        let segments: Vec<String> = dotted.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return None;
        }
        Some(ClaimPath {
            dotted: dotted.to_owned(),
            segments,
        })
    }

    /// Looks the path up in a claims object. A key containing dots that exists
    /// verbatim (e.g. `https://example.com/groups`) is found too.
    pub fn lookup<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        if let Some(v) = claims.get(&self.dotted) {
            return Some(v);
        }
        let mut cur = claims;
        for seg in &self.segments {
            cur = cur.get(seg)?;
        }
        Some(cur)
    }

    /// The claim as a string (numbers and booleans are rendered).
    pub fn string(&self, claims: &Value) -> Option<String> {
        match self.lookup(claims)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The claim as a list of strings: an array of strings, or one string
    /// (split on commas when it holds several, as some IdPs send them).
    pub fn strings(&self, claims: &Value) -> Option<Vec<String>> {
        match self.lookup(claims)? {
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect(),
            ),
            Value::String(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths() {
        let claims = json!({"realm_access": {"roles": ["a", "b"]}, "https://x.io/g": ["z"]});
        let p = ClaimPath::parse("realm_access.roles").unwrap();
        assert_eq!(p.strings(&claims).unwrap(), vec!["a", "b"]);
        let p = ClaimPath::parse("https://x.io/g").unwrap();
        assert_eq!(p.strings(&claims).unwrap(), vec!["z"]);
        assert!(ClaimPath::parse("a..b").is_none());
        assert!(ClaimPath::parse("missing")
            .unwrap()
            .lookup(&claims)
            .is_none());
    }

    #[test]
    fn hostile_values_cannot_split_headers() {
        let id = Identity {
            user: "eve\r\nX-Auth-User: admin".into(),
            email: String::new(),
            groups: vec!["a,admins".into(), "b".into()],
        };
        let h = id.headers();
        assert_eq!(h.user.to_str().unwrap(), "eve??X-Auth-User: admin");
        assert_eq!(h.groups.to_str().unwrap(), "a%2Cadmins,b");
    }
}
