//! Operator templates for the built-in pages (`server.pages_dir`): the 403
//! page (`403.html`), every other error page (`error.html`) and the page
//! shown after signing out without an `rd` target (`signed_out.html`). Each
//! file is optional; without one the built-in page is used (a 403 falls back
//! to `error.html` first).
//!
//! The syntax is plain text with `{{name}}` placeholders (spaces inside the
//! braces allowed); every value is HTML-escaped, and nothing else is
//! interpreted: no conditions, loops, includes or code. A placeholder the
//! page does not know, an unclosed `{{`, an unreadable file, or an `.html`
//! file that is none of the three is a start-up (and reload) error naming
//! the file and line. Read by config validation (the validated config holds
//! them); rendered by `pages`.

use std::fmt::Write as _;
use std::path::Path;

use crate::base::http_util::html_escape;

/// The templates of one `pages_dir`.
#[derive(Debug, Default)]
pub struct Templates {
    /// `403.html`.
    pub forbidden: Option<Template>,
    /// `error.html`.
    pub error: Option<Template>,
    /// `signed_out.html`.
    pub signed_out: Option<Template>,
}

/// One parsed page.
#[derive(Debug)]
pub struct Template {
    segments: Vec<Segment>,
}

#[derive(Debug)]
enum Segment {
    Text(String),
    Value(Placeholder),
}

/// A value a page can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// The HTTP status code (`403`).
    Status,
    /// The page's title (`Access denied`).
    Title,
    /// The explanation.
    Message,
    /// The request's `X-Request-Id`, for support requests.
    RequestId,
    /// The page's link target (retry, sign out, continue); may be empty.
    LinkHref,
    /// The page's link text; may be empty.
    LinkText,
    /// 403: the signed-in user.
    User,
    /// 403: the rule that refused the request.
    Rule,
}

/// The values of one rendering; absent ones render empty.
#[derive(Debug, Default)]
pub struct Values<'a> {
    /// The status code.
    pub status: u16,
    /// The title.
    pub title: &'a str,
    /// The message.
    pub message: &'a str,
    /// `X-Request-Id` of the request.
    pub request_id: &'a str,
    /// The link: target and text.
    pub link: Option<(&'a str, &'a str)>,
    /// The signed-in user (403).
    pub user: &'a str,
    /// The rule's name (403).
    pub rule: &'a str,
}

/// The pages, their files and the placeholders each may use.
const PAGES: [(&str, &[Placeholder]); 3] = {
    use Placeholder::*;
    [
        (
            "403.html",
            &[
                Status, Title, Message, RequestId, LinkHref, LinkText, User, Rule,
            ],
        ),
        (
            "error.html",
            &[Status, Title, Message, RequestId, LinkHref, LinkText],
        ),
        (
            "signed_out.html",
            &[Status, Title, Message, RequestId, LinkHref, LinkText],
        ),
    ]
};

// === impl Templates ===

impl Templates {
    /// Reads and checks every page in `dir`; every problem is returned.
    pub fn load(dir: &Path) -> Result<Templates, Vec<String>> {
        let mut problems = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".html") && !PAGES.iter().any(|(f, _)| *f == name) {
                        problems.push(format!(
                            "{}: {name} is not a page portcullis shows (403.html, error.html, signed_out.html)",
                            dir.display()
                        ));
                    }
                }
            }
            Err(e) => return Err(vec![format!("cannot read {}: {e}", dir.display())]),
        }
        let mut read = |(file, allowed): (&str, &[Placeholder])| {
            let path = dir.join(file);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => {
                    problems.push(format!("cannot read {}: {e}", path.display()));
                    return None;
                }
            };
            match Template::parse(&text, allowed) {
                Ok(t) => Some(t),
                Err(errors) => {
                    problems.extend(
                        errors
                            .into_iter()
                            .map(|e| format!("{}: {e}", path.display())),
                    );
                    None
                }
            }
        };
        let templates = Templates {
            forbidden: read(PAGES[0]),
            error: read(PAGES[1]),
            signed_out: read(PAGES[2]),
        };
        if problems.is_empty() {
            Ok(templates)
        } else {
            Err(problems)
        }
    }
}

// === impl Template ===

impl Template {
    /// Parses `text`, allowing the placeholders in `allowed`.
    pub fn parse(text: &str, allowed: &[Placeholder]) -> Result<Template, Vec<String>> {
        let mut segments = Vec::new();
        let mut problems = Vec::new();
        let mut rest = text;
        let mut consumed = 0;
        while let Some(open) = rest.find("{{") {
            let line = 1 + text[..consumed + open].matches('\n').count();
            if open > 0 {
                segments.push(Segment::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                problems.push(format!("line {line}: `{{{{` is never closed with `}}}}`"));
                rest = "";
                break;
            };
            let name = after[..close].trim();
            match Placeholder::named(name) {
                Some(p) if allowed.contains(&p) => segments.push(Segment::Value(p)),
                _ => problems.push(format!(
                    "line {line}: unknown placeholder {{{{{name}}}}}; this page knows {}",
                    allowed
                        .iter()
                        .map(|p| format!("{{{{{}}}}}", p.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
            let used = open + 2 + close + 2;
            consumed += used;
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_owned()));
        }
        if problems.is_empty() {
            Ok(Template { segments })
        } else {
            Err(problems)
        }
    }

    /// The page with every placeholder replaced by its escaped value.
    pub fn render(&self, v: &Values<'_>) -> String {
        let mut out = String::with_capacity(self.segments.len() * 64);
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Value(Placeholder::Status) => {
                    let _ = write!(out, "{}", v.status);
                }
                Segment::Value(p) => {
                    let text = match p {
                        Placeholder::Title => v.title,
                        Placeholder::Message => v.message,
                        Placeholder::RequestId => v.request_id,
                        Placeholder::LinkHref => v.link.map_or("", |l| l.0),
                        Placeholder::LinkText => v.link.map_or("", |l| l.1),
                        Placeholder::User => v.user,
                        Placeholder::Rule => v.rule,
                        Placeholder::Status => "",
                    };
                    out.push_str(&html_escape(text));
                }
            }
        }
        out
    }
}

// === impl Placeholder ===

impl Placeholder {
    const ALL: [Placeholder; 8] = [
        Placeholder::Status,
        Placeholder::Title,
        Placeholder::Message,
        Placeholder::RequestId,
        Placeholder::LinkHref,
        Placeholder::LinkText,
        Placeholder::User,
        Placeholder::Rule,
    ];

    /// The name written between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Status => "status",
            Placeholder::Title => "title",
            Placeholder::Message => "message",
            Placeholder::RequestId => "request_id",
            Placeholder::LinkHref => "link_href",
            Placeholder::LinkText => "link_text",
            Placeholder::User => "user",
            Placeholder::Rule => "rule",
        }
    }

    fn named(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Placeholder] = &Placeholder::ALL;

    #[test]
    fn placeholders_are_replaced_and_escaped() {
        let t = Template::parse(
            "<h1>{{title}}</h1><p>{{ message }}</p><a href=\"{{link_href}}\">{{link_text}}</a> {{status}} {{request_id}} {{user}}{{rule}}",
            ALL,
        )
        .unwrap();
        let page = t.render(&Values {
            status: 403,
            title: "<Denied>",
            message: "a & b",
            request_id: "r-1",
            link: Some(("\" onclick=\"x", "go")),
            user: "<script>",
            rule: "r",
        });
        assert_eq!(
            page,
            "<h1>&lt;Denied&gt;</h1><p>a &amp; b</p><a href=\"&quot; onclick=&quot;x\">go</a> 403 r-1 &lt;script&gt;r"
        );
        // Values are never parsed as templates.
        let t = Template::parse("{{message}}", ALL).unwrap();
        let v = Values {
            message: "{{user}}",
            user: "x",
            ..Values::default()
        };
        assert_eq!(t.render(&v), "{{user}}");
    }

    #[test]
    fn unknown_and_unclosed_placeholders_name_their_line() {
        let errors = Template::parse(
            "<p>\n{{title}}\n{{ nmae }} {{user}}\n\n{{status",
            &[Placeholder::Title, Placeholder::Status],
        )
        .unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("line 3: unknown placeholder {{nmae}}"),
            "{errors:?}"
        );
        assert!(errors[0].contains("{{title}}, {{status}}"), "{errors:?}");
        assert!(
            errors[1].starts_with("line 3: unknown placeholder {{user}}"),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("line 5: `{{` is never closed"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_directory_of_pages() {
        let dir = tempfile::tempdir().unwrap();
        let t = Templates::load(dir.path()).unwrap();
        assert!(t.forbidden.is_none() && t.error.is_none() && t.signed_out.is_none());
        std::fs::write(dir.path().join("error.html"), "E {{status}}").unwrap();
        std::fs::write(dir.path().join("403.html"), "F {{user}}").unwrap();
        std::fs::write(dir.path().join("logo.png"), [0xff, 0xfe]).unwrap();
        let t = Templates::load(dir.path()).unwrap();
        assert!(t.forbidden.is_some() && t.error.is_some() && t.signed_out.is_none());
        // {{user}} is a 403 placeholder only; a stray page name is refused.
        std::fs::write(dir.path().join("error.html"), "E {{user}}").unwrap();
        std::fs::write(dir.path().join("forbiden.html"), "x").unwrap();
        std::fs::write(dir.path().join("signed_out.html"), [0xff, 0xfe]).unwrap();
        let errors = Templates::load(dir.path()).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("forbiden.html is not a page")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("error.html: line 1: unknown placeholder {{user}}")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("cannot read") && e.contains("signed_out.html")),
            "{errors:?}"
        );
        let missing = Templates::load(&dir.path().join("nope")).unwrap_err();
        assert!(missing[0].starts_with("cannot read"), "{missing:?}");
    }
}
