//! Who a request belongs to, as far as rules and identity headers care.
//!
//! Built by `oidc` (from ID-token and userinfo claims), by bearer token
//! validation and from the htpasswd groups file (`basic`); read by `rules`
//! (authorisation) and by whatever answers an allowed request (identity
//! headers on the forward-auth answer and on the proxied request). It owns claim-path extraction so every source
//! of claims maps to an identity the same way.

use http::HeaderValue;
use serde_json::Value;

/// Longest value, in bytes, an extra claim header (`[headers.claims]`)
/// carries; a longer claim is left out (the header is sent empty).
pub const MAX_CLAIM_VALUE: usize = 1024;

/// The subject of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// From `user_claim` (falls back to `sub`).
    pub user: String,
    /// From `email_claim`; empty when unknown.
    pub email: String,
    /// From `groups_claim`; empty when the claim is absent.
    pub groups: Vec<String>,
    /// From `headers.preferred_username_claim`; empty when absent.
    pub preferred_username: String,
    /// The `[headers.claims]` values as `(claim path, value)`, sorted by
    /// path; claims that are absent, not text, or longer than
    /// [`MAX_CLAIM_VALUE`] are not listed.
    pub claims: Vec<(String, String)>,
}

/// A dotted path into a JSON claims object, e.g. `realm_access.roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    /// The path as written, for messages.
    pub dotted: String,
    /// The segments, non-empty.
    pub segments: Vec<String>,
}

/// Which claims an identity keeps beyond user, e-mail and groups: what the
/// `[headers]` section sends to the app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// `headers.preferred_username_claim`.
    pub preferred_username: Option<ClaimPath>,
    /// The claim paths of `[headers.claims]`, sorted and without duplicates.
    pub claims: Vec<ClaimPath>,
}

/// Identity header values rendered once, when the identity is created, so that
/// answering a request copies ready values instead of formatting strings.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// Value of the user header.
    pub user: HeaderValue,
    /// Value of the email header.
    pub email: HeaderValue,
    /// Value of the groups header (comma-separated).
    pub groups: HeaderValue,
    /// Value of the preferred-username header.
    pub preferred_username: HeaderValue,
    /// Values of the extra claim headers, by claim path (as in [`Identity::claims`]).
    pub claims: Vec<(Box<str>, HeaderValue)>,
}

/// What one claims object (an ID token, a userinfo answer, a bearer JWT)
/// says about the e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailClaim {
    /// No e-mail claim (or an empty one).
    Absent,
    /// An address whose `email_verified` claim is `true`.
    Verified(String),
    /// An address whose `email_verified` claim is absent, `false` or anything
    /// else but `true`: anyone may have typed it in at the IdP.
    Unverified(String),
}

// === impl EmailClaim ===

impl EmailClaim {
    /// Reads the e-mail claim `claim` and the top-level `email_verified`
    /// claim of the same claims object. `email_verified` counts only as the
    /// JSON value `true` (or the string `"true"`, which some IdPs send).
    pub fn of(claim: &ClaimPath, claims: &Value) -> EmailClaim {
        let Some(address) = claim.string(claims).filter(|a| !a.is_empty()) else {
            return EmailClaim::Absent;
        };
        let verified = match claims.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        if verified {
            EmailClaim::Verified(address)
        } else {
            EmailClaim::Unverified(address)
        }
    }

    /// True when there is no address at all.
    pub fn is_absent(&self) -> bool {
        matches!(self, EmailClaim::Absent)
    }

    /// The address rules and the email header may use: a verified one, or
    /// any one when `allow_unverified` (`oidc.allow_unverified_email`);
    /// otherwise empty.
    pub fn usable(&self, allow_unverified: bool) -> String {
        match self {
            EmailClaim::Verified(a) => a.clone(),
            EmailClaim::Unverified(a) if allow_unverified => a.clone(),
            _ => String::new(),
        }
    }

    /// The address that was dropped for being unverified, if any.
    pub fn dropped(&self, allow_unverified: bool) -> Option<&str> {
        match self {
            EmailClaim::Unverified(a) if !allow_unverified => Some(a),
            _ => None,
        }
    }
}

// === impl Capture ===

impl Capture {
    /// Reads the captured claims of one claims object (ID token merged with
    /// userinfo, or a bearer JWT) into `id`. Returns the claim paths left
    /// out for being longer than [`MAX_CLAIM_VALUE`], for the caller to log.
    pub fn apply(&self, claims: &Value, id: &mut Identity) -> Vec<String> {
        if let Some(path) = &self.preferred_username {
            id.preferred_username = path.string(claims).unwrap_or_default();
        }
        let mut too_long = Vec::new();
        id.claims.clear();
        for path in &self.claims {
            match claim_text(path, claims) {
                Some(v) if v.len() > MAX_CLAIM_VALUE => too_long.push(path.dotted.clone()),
                Some(v) => id.claims.push((path.dotted.clone(), v)),
                None => {}
            }
        }
        too_long
    }

    /// True when no claim is captured beyond user, e-mail and groups.
    pub fn is_empty(&self) -> bool {
        self.preferred_username.is_none() && self.claims.is_empty()
    }
}

/// A claim as header text: strings as they are, numbers and booleans
/// rendered, a list of those joined with commas (commas inside an item as
/// `%2C`, as in the groups header); objects and `null` are no text.
fn claim_text(path: &ClaimPath, claims: &Value) -> Option<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match path.lookup(claims)? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(scalar)
                .map(|s| s.replace(',', "%2C"))
                .collect::<Vec<_>>()
                .join(","),
        ),
        v => scalar(v),
    }
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
            preferred_username: header_value(&self.preferred_username),
            claims: self
                .claims
                .iter()
                .map(|(path, v)| (path.as_str().into(), header_value(v)))
                .collect(),
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

/// A copy of a value in a new buffer. A `clone` would share the value's
/// reference count, which every worker thread answering for the same busy
/// session would then contend for; small copies cost less.
pub(crate) fn copy(v: &HeaderValue) -> HeaderValue {
    HeaderValue::from_bytes(v.as_bytes()).unwrap_or(HeaderValue::from_static(""))
}

impl IdentityHeaders {
    /// Copies of the values in new buffers (see [`copy`]).
    pub fn copied(&self) -> Self {
        IdentityHeaders {
            user: copy(&self.user),
            email: copy(&self.email),
            groups: copy(&self.groups),
            preferred_username: copy(&self.preferred_username),
            claims: self
                .claims
                .iter()
                .map(|(p, v)| (p.clone(), copy(v)))
                .collect(),
        }
    }

    /// Every value empty: what public routes answer with.
    pub fn empty() -> Self {
        IdentityHeaders {
            user: HeaderValue::from_static(""),
            email: HeaderValue::from_static(""),
            groups: HeaderValue::from_static(""),
            preferred_username: HeaderValue::from_static(""),
            claims: Vec::new(),
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
    fn only_a_verified_email_is_an_email() {
        let path = ClaimPath::parse("email").unwrap();
        let of = |claims: Value| EmailClaim::of(&path, &claims);
        let verified = of(json!({"email": "a@x.io", "email_verified": true}));
        assert_eq!(verified, EmailClaim::Verified("a@x.io".into()));
        assert_eq!(verified.usable(false), "a@x.io");
        assert_eq!(verified.dropped(false), None);
        // Cognito-style string.
        assert_eq!(
            of(json!({"email": "a@x.io", "email_verified": "true"})).usable(false),
            "a@x.io"
        );
        for claims in [
            json!({"email": "ceo@x.io"}),
            json!({"email": "ceo@x.io", "email_verified": false}),
            json!({"email": "ceo@x.io", "email_verified": "false"}),
            json!({"email": "ceo@x.io", "email_verified": 1}),
            json!({"email": "ceo@x.io", "email_verified": "TRUE "}),
            json!({"email": "ceo@x.io", "email_verified": null}),
            json!({"email": "ceo@x.io", "email_verified": [true]}),
            json!({"email": "ceo@x.io", "user": {"email_verified": true}}),
        ] {
            let e = of(claims.clone());
            assert_eq!(e, EmailClaim::Unverified("ceo@x.io".into()), "{claims}");
            assert_eq!(e.usable(false), "", "{claims}");
            assert_eq!(e.dropped(false), Some("ceo@x.io"), "{claims}");
            assert_eq!(e.usable(true), "ceo@x.io", "{claims}");
            assert_eq!(e.dropped(true), None, "{claims}");
        }
        for claims in [json!({}), json!({"email": ""}), json!({"email": {"a": 1}})] {
            let e = of(claims.clone());
            assert!(e.is_absent(), "{claims}");
            assert_eq!(e.usable(true), "");
        }
    }

    #[test]
    fn hostile_values_cannot_split_headers() {
        let id = Identity {
            user: "eve\r\nX-Auth-User: admin".into(),
            groups: vec!["a,admins".into(), "b".into()],
            claims: vec![("name".into(), "x\r\nSet-Cookie: a=b".into())],
            ..Identity::default()
        };
        let h = id.headers();
        assert_eq!(h.user.to_str().unwrap(), "eve??X-Auth-User: admin");
        assert_eq!(h.groups.to_str().unwrap(), "a%2Cadmins,b");
        assert_eq!(h.claims[0].1.to_str().unwrap(), "x??Set-Cookie: a=b");
    }
}
