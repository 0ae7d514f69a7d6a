//! The access log (`server.access_log = true`): one line per request through
//! tracing, target `portcullis::access`, in the configured `log_format`:
//! method, host, path without the query, status, rule, user, duration and
//! request id. Never a cookie, a code, a token, a secret or a query string.
//!
//! The rule and user are known deep in the pipeline; while the access log is
//! on, the request runs inside a task-local [`Note`] that
//! the pipeline's `Gateway::decide` fills in. With the access log off
//! nothing is scoped and noting is one thread-local read.

use std::cell::RefCell;
use std::future::Future;
use std::time::Instant;

use futures_util::FutureExt as _;
use http::{HeaderValue, Method, Response};

use crate::base::http_util::Body;

tokio::task_local! {
    static NOTE: RefCell<Note>;
}

/// What the pipeline learnt about a request.
#[derive(Default)]
struct Note {
    rule: Option<String>,
    user: Option<String>,
    /// The original request of a forward-auth check: host and path.
    original: Option<(String, String)>,
}

/// What the access line tells about the request itself.
pub struct Line {
    /// The method.
    pub method: Method,
    /// The host asked for.
    pub host: String,
    /// The path, without the query.
    pub path: String,
    /// The request id.
    pub id: HeaderValue,
    /// When the request began.
    pub started: Instant,
}

/// Notes the rule, user and (for a forward-auth check) the original host and
/// path of the request being served, when the access log is on.
pub fn note(rule: &str, user: Option<&str>, original: Option<(&str, &str)>) {
    let _ = NOTE.try_with(|n| {
        let mut n = n.borrow_mut();
        n.rule = Some(rule.to_owned());
        n.user = user.map(str::to_owned);
        n.original = original.map(|(h, p)| (h.to_owned(), p.to_owned()));
    });
}

/// Runs `serve` and logs its answer.
///
/// Not an `async fn`: one would hold `serve` twice (as its argument and as
/// the future it awaits), and this future is moved into place for every
/// request. The combinator holds it once.
pub fn logged<F>(line: Line, serve: F) -> impl Future<Output = Response<Body>>
where
    F: Future<Output = Response<Body>>,
{
    NOTE.scope(
        RefCell::new(Note::default()),
        serve.map(move |res| {
            write(&line, &res);
            res
        }),
    )
}

/// [`logged`] for a request answered without waiting: logs the answer when
/// `serve` gives one (`None`: the request is served later, and logged then).
pub fn logged_now(
    line: Line,
    serve: impl FnOnce() -> Option<Response<Body>>,
) -> Option<Response<Body>> {
    NOTE.sync_scope(RefCell::new(Note::default()), || {
        let res = serve()?;
        write(&line, &res);
        Some(res)
    })
}

/// The access log line of `res`, with what the request's note says.
fn write(line: &Line, res: &Response<Body>) {
    let note = NOTE.with(|n| std::mem::take(&mut *n.borrow_mut()));
    let (host, path) = match &note.original {
        Some((h, p)) => (h.as_str(), p.as_str()),
        None => (line.host.as_str(), line.path.as_str()),
    };
    tracing::info!(
        target: "portcullis::access",
        method = %line.method,
        request.id = line.id.to_str().unwrap_or("-"),
        host,
        path,
        status = res.status().as_u16(),
        rule = note.rule.as_deref().unwrap_or("-"),
        user = note.user.as_deref().unwrap_or("-"),
        duration_ms = line.started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::StatusCode;

    use super::*;

    /// A tracing writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_json_line_with_the_noted_rule_and_user() {
        let buf = Buf::default();
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || w.clone())
            .finish();
        let line = Line {
            method: Method::GET,
            host: "app.test".into(),
            path: "/own/path".into(),
            id: HeaderValue::from_static("rid-1"),
            started: Instant::now(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            rt.block_on(logged(line, async {
                note("admin", Some("alice"), Some(("grafana.test", "/admin")));
                crate::base::http_util::empty(StatusCode::FORBIDDEN)
            }))
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
        assert_eq!(v["target"], "portcullis::access", "{text}");
        assert_eq!(v["request.id"], "rid-1");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["host"], "grafana.test", "the original request's host");
        assert_eq!(v["path"], "/admin");
        assert_eq!(v["status"], 403);
        assert_eq!(v["rule"], "admin");
        assert_eq!(v["user"], "alice");
        // Without a note (no pipeline ran), the request's own host and path.
        note("outside", None, None);
    }
}
