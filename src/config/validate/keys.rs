//! Turning TOML text into a [`RawConfig`] with errors an operator can act on.
//!
//! Syntax and type errors carry their line and column and, where the text
//! shows it, the key path. Unknown keys are all listed at once, each with its
//! full path (`rule[2].hots`) and, when it looks like a typo, the closest
//! known key. The lists of known keys come from the raw types' serde derives
//! ([`keys_of`]), so they cannot drift. Messages are built from the parser's
//! short message, never from its source excerpt, so no value written in the
//! file (secrets included) is echoed unless the parser itself names it, and
//! the secret fields' deserializers never do.

use std::collections::HashMap;

use super::ConfigError;
use crate::config::raw::{
    keys_of, RawAccess, RawBearerIssuer, RawConfig, RawHeaders, RawOidc, RawProxy, RawRule,
    RawServer, RawSession,
};

/// A key the schema does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UnknownKey {
    /// Full path as written, e.g. `rule[2].hots`.
    pub path: String,
    /// What to say after the path.
    pub hint: String,
}

/// Parses the text; see the module docs for the errors.
pub(super) fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    let doc: toml::Table = text.parse().map_err(|e| parse_error(text, &e))?;
    let unknown = unknown_keys(&doc);
    match toml::from_str::<RawConfig>(text) {
        Ok(raw) if unknown.is_empty() => Ok(raw),
        result => {
            let serde_error = result.err();
            if unknown.is_empty() {
                // Unreachable: Ok was handled above.
                return Err(serde_error.map_or_else(
                    || ConfigError::Parse {
                        line: None,
                        column: None,
                        message: "invalid config".into(),
                    },
                    |e| parse_error(text, &e),
                ));
            }
            // The parser stops at the first unknown key; its location is the
            // useful one when there is exactly one.
            let (line, column) = match &serde_error {
                Some(e) if unknown.len() == 1 && e.message().starts_with("unknown field") => {
                    location(text, e)
                }
                _ => (None, None),
            };
            let message = unknown
                .iter()
                .map(|u| format!("unknown key {}{}", u.path, u.hint))
                .collect::<Vec<_>>()
                .join("\n");
            Err(ConfigError::Parse {
                line,
                column,
                message,
            })
        }
    }
}

fn parse_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let (line, column) = location(text, error);
    let mut short = error.message().trim().replace('\n', "; ");
    let key = error.span().and_then(|s| key_path_at(text, s.start));
    if let Some(key) = &key {
        if short.contains("invalid type: map, expected a sequence") && !key.contains('[') {
            short.push_str(&format!(
                "; write [[{key}]] (double brackets) for each entry"
            ));
        }
    }
    let message = match key {
        Some(key) => format!("{key}: {short}"),
        None => short,
    };
    ConfigError::Parse {
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of the error's start.
fn location(text: &str, error: &toml::de::Error) -> (Option<usize>, Option<usize>) {
    let Some(before) = error.span().and_then(|s| text.get(..s.start)) else {
        return (None, None);
    };
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (Some(line), Some(column))
}

/// Best-effort key path of the value at `offset`, read from the text: the
/// last `[table]` / `[[array]]` header before it and the last `key =` line.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    // Up to the end of the offending line, so a header on it counts.
    let end = text
        .get(offset..)?
        .find('\n')
        .map_or(text.len(), |n| offset + n);
    let before = text.get(..end)?;
    let mut table = String::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut key: Option<&str> = None;
    for line in before.split('\n') {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            let n = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
            key = None;
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_owned();
            key = None;
        } else if let Some((k, _)) = t.split_once('=') {
            let k = k.trim();
            if !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            {
                key = Some(k);
            }
        }
    }
    match (table.is_empty(), key) {
        (true, None) => None,
        (true, Some(k)) => Some(k.to_owned()),
        (false, None) => Some(table),
        (false, Some(k)) => Some(format!("{table}.{k}")),
    }
}

/// The known keys of the table at a schema path (arrays of tables without index).
fn schema(path: &str) -> Option<&'static [&'static str]> {
    Some(match path {
        "" => keys_of::<RawConfig>(),
        "server" => keys_of::<RawServer>(),
        "oidc" => keys_of::<RawOidc>(),
        "oidc.bearer_issuers" => keys_of::<RawBearerIssuer>(),
        "session" => keys_of::<RawSession>(),
        "headers" => keys_of::<RawHeaders>(),
        "access" => keys_of::<RawAccess>(),
        "proxy" => keys_of::<RawProxy>(),
        "rule" => keys_of::<RawRule>(),
        _ => return None,
    })
}

/// Every table that has a schema, for "did you mean server.listen?" hints.
const SECTIONS: [&str; 8] = [
    "server",
    "oidc",
    "oidc.bearer_issuers",
    "session",
    "headers",
    "access",
    "proxy",
    "rule",
];

/// Every key of `doc` that the schema does not know, in the document's key order.
pub(super) fn unknown_keys(doc: &toml::Table) -> Vec<UnknownKey> {
    let mut out = Vec::new();
    walk(doc, "", "", &mut out);
    out
}

fn walk(table: &toml::Table, schema_path: &str, shown_path: &str, out: &mut Vec<UnknownKey>) {
    let Some(known) = schema(schema_path) else {
        return;
    };
    for (key, value) in table {
        let shown = join(shown_path, key);
        if !known.contains(&key.as_str()) {
            out.push(UnknownKey {
                path: shown,
                hint: hint(key, schema_path, known),
            });
            continue;
        }
        let child = join(schema_path, key);
        match value {
            toml::Value::Table(t) => walk(t, &child, &shown, out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        walk(t, &child, &format!("{shown}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// ` — did you mean cookie_secure?`, ` — did you mean server.listen?`, or the known keys.
fn hint(key: &str, schema_path: &str, known: &[&str]) -> String {
    if let Some(best) = closest(key, known) {
        return format!(" — did you mean {best}?");
    }
    let elsewhere = SECTIONS
        .iter()
        .filter(|s| **s != schema_path)
        .find(|s| schema(s).is_some_and(|keys| keys.contains(&key)));
    if let Some(section) = elsewhere {
        return format!(" — did you mean {section}.{key}? (it belongs in [{section}])");
    }
    format!(" (known keys here: {})", known.join(", "))
}

/// The known key nearest to `key` by edit distance, when near enough to be a typo.
pub(crate) fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("cookie_secur", "cookie_secure"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let known = ["cookie_name", "cookie_secure", "lifetime"];
        assert_eq!(closest("cookie_secur", &known), Some("cookie_secure"));
        assert_eq!(closest("Lifetime", &known), Some("lifetime"));
        assert_eq!(closest("zzz", &known), None);
    }

    #[test]
    fn key_paths_from_text() {
        let text = "[server]\nlisten = 1\n[[rule]]\n[[rule]]\npath = 2\n";
        assert_eq!(
            key_path_at(text, text.find("1").unwrap()).as_deref(),
            Some("server.listen")
        );
        assert_eq!(
            key_path_at(text, text.find("2").unwrap()).as_deref(),
            Some("rule[1].path")
        );
    }

    #[test]
    fn schema_is_read_from_the_raw_types() {
        assert!(schema("session").unwrap().contains(&"cookie_secure"));
        assert!(schema("").unwrap().contains(&"rule"));
        assert!(schema("oidc.bearer_issuers").unwrap().contains(&"jwks_url"));
    }
}
