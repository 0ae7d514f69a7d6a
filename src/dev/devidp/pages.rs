//! HTML pages of the development issuer: the login form, the error page shown
//! when the issuer must not redirect (unknown client or redirect URI), and the
//! "signed out" page. Every value echoed into a page is HTML-escaped here.

use std::fmt::Write as _;

/// The note shown on every login form.
pub(super) const DEV_NOTE: &str = "Development issuer \u{2014} users alice and bob, password demo";

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,sans-serif;background:#f4f5f7;color:#1f2328;margin:0}\
main{max-width:22rem;margin:4rem auto;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:2rem}\
h1{font-size:1.25rem;margin:0 0 1rem}\
label{display:block;margin:.75rem 0 .25rem;font-size:.9rem}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #d0d7de;border-radius:6px;font-size:1rem}\
button{margin-top:1.25rem;width:100%;padding:.6rem;border:0;border-radius:6px;background:#1f6feb;color:#fff;font-size:1rem;cursor:pointer}\
.note{font-size:.8rem;color:#57606a;margin-top:1.5rem}\
.error{background:#ffebe9;border:1px solid #ff8182;border-radius:6px;padding:.5rem .75rem;font-size:.9rem}\
code{font-size:.85rem}";

/// Escapes `s` for use in HTML text and double-quoted attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>\n",
        escape(title)
    )
}

/// The login form. `hidden` are the authorization request's parameters, sent
/// back with the credentials; `error` is shown above the form.
pub(super) fn login(hidden: &[(&str, &str)], username: &str, error: Option<&str>) -> String {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(error)
        );
    }
    body.push_str("<form method=\"post\" action=\"/authorize\">");
    for (name, value) in hidden {
        let _ = write!(
            body,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    let _ = write!(
        body,
        "<label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" autofocus required>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"note\">{}</p>",
        escape(username),
        escape(DEV_NOTE)
    );
    page("Sign in", &body)
}

/// A page explaining why the authorization request was refused.
pub(super) fn error(title: &str, detail: &str) -> String {
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p><p class=\"note\">{}</p>",
        escape(title),
        escape(detail),
        escape("Development issuer \u{2014} check the client's configuration.")
    );
    page(title, &body)
}

/// Shown by the end-session endpoint when there is nowhere to go back to.
pub(super) fn signed_out() -> String {
    page(
        "Signed out",
        "<h1>Signed out</h1><p>You have been signed out of the development issuer.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_echoed() {
        let html = login(&[("state", "\"><script>x</script>")], "<b>", Some("a&b"));
        assert!(!html.contains("<script>x"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert!(html.contains("value=\"&lt;b&gt;\""));
        assert!(html.contains("a&amp;b"));
        assert!(html.contains("users alice and bob, password demo"));
    }
}
