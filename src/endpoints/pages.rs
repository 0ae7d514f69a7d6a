//! The few HTML and JSON bodies portcullis renders: error pages with a retry
//! link, the 403 page naming the groups a rule needs, and small JSON errors
//! for API clients. Every value echoed into HTML is escaped; nothing here
//! logs. Called by `respond` (where decisions and failures become
//! responses) and by the endpoints for their own answers.
//!
//! With `server.pages_dir` the HTML pages come from the operator's
//! [`templates`] instead: `server` runs each request inside [`branded`],
//! which makes the templates and the request's id known to the page
//! functions below without threading them through every caller. Without
//! `pages_dir` nothing is set up per request.

pub(crate) use crate::config::templates;

use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;
use http::{HeaderValue, Response, StatusCode};

use self::templates::{Template, Templates, Values};
use crate::auth::rules::CompiledRule;
use crate::base::http_util::{fixed, html_escape, Body};
use crate::base::identity::Identity;

/// The operator's templates and the id of the request being answered.
pub struct Branding {
    /// From `server.pages_dir`.
    pub templates: Arc<Templates>,
    /// The request's `X-Request-Id`.
    pub request_id: HeaderValue,
}

tokio::task_local! {
    static BRANDING: Branding;
}

/// Runs `f` (one request) with `branding` in force for its pages.
///
/// Not an `async fn`, which would hold `f` twice (argument and awaited
/// future): the request's future is moved into place for every request.
pub fn branded<F: Future>(branding: Option<Branding>, f: F) -> impl Future<Output = F::Output> {
    match branding {
        Some(b) => Either::Left(BRANDING.scope(b, f)),
        None => Either::Right(f),
    }
}

/// [`branded`] for a request answered without waiting.
pub fn branded_now<R>(branding: Option<Branding>, f: impl FnOnce() -> R) -> R {
    match branding {
        Some(b) => BRANDING.sync_scope(b, f),
        None => f(),
    }
}

/// The page rendered from the first template `pick` finds, if the request
/// runs with templates; the request id is filled in here.
fn render(pick: fn(&Templates) -> Option<&Template>, values: Values<'_>) -> Option<String> {
    BRANDING
        .try_with(|b| {
            let template = pick(&b.templates)?;
            Some(template.render(&Values {
                request_id: b.request_id.to_str().unwrap_or(""),
                ..values
            }))
        })
        .ok()
        .flatten()
}

/// What a 403 page says the rule needs: the groups any one of which it
/// accepts, and the `groups_all` groups the user lacks.
#[derive(Debug, Default)]
pub struct Needed<'a> {
    /// `groups`: any one of these.
    pub any_of: &'a [String],
    /// `groups_all`: every one of these.
    pub all_of: &'a [String],
    /// The `groups_all` groups the user is not in.
    pub missing: Vec<&'a str>,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:38rem;margin:4rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}p{line-height:1.5}code{background:#f3f3f3;padding:0 .2rem}a.button{display:inline-block;margin-top:1rem;padding:.5rem 1rem;background:#2458d6;color:#fff;border-radius:4px;text-decoration:none}";

/// An HTML page with a title, a message and an optional link.
pub fn html(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Response<Body> {
    let values = Values {
        status: status.as_u16(),
        title,
        message,
        link,
        ..Values::default()
    };
    if let Some(page) = render(|t| t.error.as_ref(), values) {
        return fixed(status, "text/html; charset=utf-8", page);
    }
    let link = match link {
        Some((href, text)) => format!(
            "<p><a class=\"button\" href=\"{}\">{}</a></p>",
            html_escape(href),
            html_escape(text)
        ),
        None => String::new(),
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\
         <body><h1>{t}</h1><p>{m}</p>{link}<p><small>portcullis</small></p></body></html>",
        t = html_escape(title),
        m = html_escape(message),
    );
    fixed(status, "text/html; charset=utf-8", body)
}

/// A JSON error body `{"error": code, "message": message}`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    fixed(status, "application/json", body)
}

/// The 403 answer when a signed-in user fails a rule: names the groups (or
/// other subjects) the rule would accept, and the `groups_all` groups the
/// user is missing.
pub fn forbidden(
    html_wanted: bool,
    user: &str,
    rule: &str,
    needed: &Needed<'_>,
    sign_out_url: &str,
) -> Response<Body> {
    let groups = needed.any_of;
    if html_wanted {
        let mut need = if !groups.is_empty() {
            format!("Members of {} may open this page.", groups.join(", "))
        } else if needed.all_of.is_empty() {
            "This page is limited to specific users.".to_string()
        } else {
            String::new()
        };
        if !needed.missing.is_empty() {
            if !need.is_empty() {
                need.push(' ');
            }
            need.push_str(&format!(
                "It needs membership in every one of {}; you are not in {}.",
                needed.all_of.join(", "),
                needed.missing.join(", ")
            ));
        }
        let msg = format!("You are signed in as {user}, but you do not have access. {need}");
        let values = Values {
            status: 403,
            title: "Access denied",
            message: &msg,
            link: Some((sign_out_url, "Sign in as someone else")),
            user,
            rule,
            ..Values::default()
        };
        if let Some(page) = render(|t| t.forbidden.as_ref().or(t.error.as_ref()), values) {
            return fixed(StatusCode::FORBIDDEN, "text/html; charset=utf-8", page);
        }
        html(
            StatusCode::FORBIDDEN,
            "Access denied",
            &msg,
            Some((sign_out_url, "Sign in as someone else")),
        )
    } else {
        let body = serde_json::json!({
            "error": "forbidden",
            "message": "signed in, but the rule does not allow this user",
            "rule": rule,
            "required_groups": groups,
            "required_all_groups": needed.all_of,
            "missing_groups": needed.missing,
        })
        .to_string();
        fixed(StatusCode::FORBIDDEN, "application/json", body)
    }
}

/// The page shown after signing out when no `rd` names where to go, if the
/// operator's templates have one (`signed_out.html`); `None` = redirect as usual.
pub fn signed_out(continue_to: &str) -> Option<Response<Body>> {
    let values = Values {
        status: 200,
        title: "Signed out",
        message: "You are signed out.",
        link: Some((continue_to, "Continue")),
        ..Values::default()
    };
    render(|t| t.signed_out.as_ref(), values)
        .map(|page| fixed(StatusCode::OK, "text/html; charset=utf-8", page))
}

// === impl Needed ===

impl<'a> Needed<'a> {
    /// What `rule` needs that `id` may lack (nothing for the default rule).
    pub fn of(rule: Option<&'a CompiledRule>, id: &'a Identity) -> Needed<'a> {
        match rule {
            Some(r) => Needed {
                any_of: r.required_groups(),
                all_of: r.required_all_groups(),
                missing: r.missing_groups(id).collect(),
            },
            None => Needed::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_echoed() {
        let res = html(
            StatusCode::OK,
            "<t>",
            "<script>x</script>",
            Some(("\"x onclick=y", "<a>")),
        );
        let (_, body) = res.into_parts();
        let http_body_util::Either::Left(full) = body else {
            panic!()
        };
        let bytes = futures_lite_body(full);
        // The message.
        assert!(!bytes.contains("<script>"));
        assert!(
            bytes.contains("<p>&lt;script&gt;x&lt;/script&gt;</p>"),
            "{bytes}"
        );
        // The title, in <title> and <h1>.
        assert!(!bytes.contains("<t>"), "{bytes}");
        assert!(bytes.contains("<title>&lt;t&gt;</title>"), "{bytes}");
        assert!(bytes.contains("<h1>&lt;t&gt;</h1>"), "{bytes}");
        // The link target cannot leave its attribute; the link text is text.
        assert!(!bytes.contains("\"x onclick"), "{bytes}");
        assert!(
            bytes.contains("href=\"&quot;x onclick=y\">&lt;a&gt;</a>"),
            "{bytes}"
        );
        assert!(!bytes.contains("><a></a>"), "{bytes}");
    }

    #[test]
    fn forbidden_names_the_missing_groups() {
        let all = ["ops".to_string(), "oncall".to_string()];
        let needed = Needed {
            any_of: &[],
            all_of: &all,
            missing: vec!["oncall"],
        };
        let body = |html| {
            let (_, body) = forbidden(html, "bob", "ops", &needed, "/oauth2/sign_out").into_parts();
            let http_body_util::Either::Left(full) = body else {
                panic!()
            };
            futures_lite_body(full)
        };
        let page = body(true);
        assert!(
            page.contains("every one of ops, oncall; you are not in oncall."),
            "{page}"
        );
        let json: serde_json::Value = serde_json::from_str(&body(false)).unwrap();
        assert_eq!(json["missing_groups"], serde_json::json!(["oncall"]));
        assert_eq!(
            json["required_all_groups"],
            serde_json::json!(["ops", "oncall"])
        );
    }

    fn futures_lite_body(full: http_body_util::Full<bytes::Bytes>) -> String {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = rt.block_on(full.collect()).unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }
}
