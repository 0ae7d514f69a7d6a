//! The demo upstream app for `portcullis demo`: a tiny HTTP/1.1 server that
//! answers every request with a page showing the method, path and every
//! request header it received, with portcullis's identity headers
//! (`X-Auth-User`, `X-Auth-Email`, `X-Auth-Groups`) highlighted, a "Sign out"
//! link to `/oauth2/sign_out`, and a link to the admins-only `/admin`.
//!
//! Clients whose `Accept` names `application/json` get JSON instead:
//! `{"method": "GET", "path": "/x", "query": "a=b" | null,
//! "headers": {"name": ["v1", "v2"]}}`, header names lower-case and every
//! value kept in order, so tests can see duplicates and spoofed copies.
//!
//! It makes no decisions: access control is the gateway's job. Used by the
//! `demo` command and by tests as an echo upstream.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Identity headers the page highlights, as the gateway names them by default.
const IDENTITY_HEADERS: [&str; 3] = ["x-auth-user", "x-auth-email", "x-auth-groups"];

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,sans-serif;background:#f4f5f7;color:#1f2328;margin:0}\
main{max-width:48rem;margin:3rem auto;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:2rem}\
h1{font-size:1.4rem;margin:0 0 .5rem}h2{font-size:1.05rem;margin:1.5rem 0 .5rem}\
nav a{margin-right:1rem}\
table{border-collapse:collapse;width:100%;font-size:.9rem}\
td,th{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eaeef2;vertical-align:top;word-break:break-all}\
tr.identity{background:#dafbe1;font-weight:600}\
.who{background:#ddf4ff;border:1px solid #54aeff;border-radius:6px;padding:.75rem 1rem}\
.anon{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.75rem 1rem}\
code{font-size:.9rem}";

/// Serves the demo app on `listener` until `shutdown` completes, then stops
/// accepting and lets open connections finish their current request.
///
/// Runs in the caller's task: spawn it (`tokio::spawn(upstream::serve(l, s))`)
/// to run it in the background. Accept errors are retried after a short
/// pause, so this only returns on shutdown.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) {
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "demo upstream accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_connection(stream, stopped.clone()));
    }
    let _ = stop.send(true);
}

async fn serve_connection(stream: TcpStream, mut stopped: watch::Receiver<bool>) {
    let service =
        service_fn(|req: Request<Incoming>| async move { Ok::<_, Infallible>(respond(&req)) });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// The echo response for `req`: JSON or HTML by its `Accept` header.
fn respond<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let wants_json = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/json"));
    let (content_type, body) = if wants_json {
        ("application/json", to_json(req).to_string())
    } else {
        ("text/html; charset=utf-8", to_html(req))
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    res
}

/// Every header, names lower-case (as `http` stores them), values in order.
/// Values that are not UTF-8 are shown lossily.
fn header_map(headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        out.entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    out
}

fn to_json<B>(req: &Request<B>) -> serde_json::Value {
    serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": header_map(req.headers()),
    })
}

fn to_html<B>(req: &Request<B>) -> String {
    let headers = header_map(req.headers());
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
            .unwrap_or("")
    };
    let path = req.uri().path();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>portcullis demo app</h1>\
         <nav><a href=\"/\">Home</a><a href=\"/admin\">Admin (only admins may enter)</a>\
         <a href=\"/oauth2/sign_out\">Sign out</a></nav>"
    );
    if path == "/admin" || path.starts_with("/admin/") {
        body.push_str("<h2>Admin area</h2><p>Welcome. The gateway lets only members of <code>admins</code> reach this page.</p>");
    }
    let user = first("x-auth-user");
    if user.is_empty() {
        body.push_str(
            "<p class=\"anon\">No <code>X-Auth-User</code> header: this request did not come through portcullis \
             as a signed-in user.</p>",
        );
    } else {
        let _ = write!(
            body,
            "<p class=\"who\">Signed in as <strong>{}</strong> &lt;{}&gt;<br>Groups: <code>{}</code></p>",
            escape(user),
            escape(first("x-auth-email")),
            escape(first("x-auth-groups"))
        );
    }
    let _ = write!(
        body,
        "<h2>Request</h2><p><code>{} {}</code></p>",
        escape(req.method().as_str()),
        escape(&req.uri().to_string())
    );
    body.push_str("<h2>Headers received</h2><table><tr><th>Name</th><th>Value</th></tr>");
    for (name, values) in &headers {
        let class = if IDENTITY_HEADERS.contains(&name.as_str()) {
            " class=\"identity\""
        } else {
            ""
        };
        for value in values {
            let _ = write!(
                body,
                "<tr{class}><td>{}</td><td>{}</td></tr>",
                escape(name),
                escape(value)
            );
        }
    }
    body.push_str("</table>");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>portcullis demo app</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>\n"
    )
}

/// Escapes `s` for HTML text and double-quoted attribute values.
fn escape(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(accept: &str) -> Request<()> {
        Request::builder()
            .method("POST")
            .uri("/admin/x?q=%3C1%3E&a='b'")
            .header("accept", accept)
            .header("X-Auth-User", "alice")
            .header("x-auth-groups", "admins,staff")
            .header("x-custom", "a")
            .header("x-custom", "<script>alert(1)</script>")
            .body(())
            .expect("valid request")
    }

    #[test]
    fn json_keeps_every_value_lowercased() {
        let res = respond(&request("application/json"));
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let v = to_json(&request("application/json"));
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/admin/x");
        assert_eq!(v["query"], "q=%3C1%3E&a='b'");
        assert_eq!(
            v["headers"]["x-custom"],
            serde_json::json!(["a", "<script>alert(1)</script>"])
        );
        assert_eq!(v["headers"]["x-auth-user"], serde_json::json!(["alice"]));
    }

    #[test]
    fn html_escapes_and_highlights() {
        let html = to_html(&request("text/html"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<tr class=\"identity\"><td>x-auth-user</td><td>alice</td></tr>"));
        assert!(html.contains("Signed in as <strong>alice</strong>"));
        assert!(html.contains("href=\"/oauth2/sign_out\""));
        assert!(html.contains("only admins may enter"));
        assert!(html.contains("Admin area"));
        assert!(html.contains("a=&#39;b&#39;"));
    }

    #[tokio::test]
    async fn serves_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::new();
        let v: serde_json::Value = client
            .get(format!("http://{addr}/hello"))
            .header("accept", "application/json")
            .header("x-auth-user", "bob")
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(v["path"], "/hello");
        assert_eq!(v["headers"]["x-auth-user"], serde_json::json!(["bob"]));
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .expect("no panic");
    }
}
