//! `server.pages_dir`: the operator's 403, error and signed-out pages, with
//! escaped values and the request's id, in place of the built-in ones.

use crate::support::{Harness, Opts};

struct Branded {
    h: Harness,
    _dir: tempfile::TempDir,
}

async fn start(pages: &[(&str, &str)]) -> Branded {
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in pages {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let h = Harness::start_with(Opts {
        server: format!("pages_dir = \"{}\"", dir.path().display()),
        ..Opts::default()
    })
    .await;
    Branded { h, _dir: dir }
}

const FORBIDDEN: &str = "<html><!-- ACME 403 -->\n<p>{{user}} may not use {{rule}} ({{status}}).</p>\n<a href=\"{{link_href}}\">{{link_text}}</a>\n<small>ref {{request_id}}</small></html>";
const ERROR: &str = "<html><!-- ACME error --><h1>{{title}}</h1><p>{{message}}</p><small>{{status}} ref {{request_id}}</small></html>";
const SIGNED_OUT: &str =
    "<html><!-- ACME bye --><a href=\"{{link_href}}\">{{link_text}}</a> {{request_id}}</html>";

#[tokio::test]
async fn the_operators_pages_replace_the_built_in_ones() {
    let b = start(&[
        ("403.html", FORBIDDEN),
        ("error.html", ERROR),
        ("signed_out.html", SIGNED_OUT),
    ])
    .await;
    let port = b.h.gw.addr.port();
    let browser = b.h.browser();
    browser
        .login(&format!("http://app.test:{port}/"), "bob")
        .await;

    // bob is not in admins: the operator's 403 page with its values.
    let hop = browser.get(&format!("http://app.test:{port}/admin")).await;
    assert_eq!(hop.status, 403);
    let id = hop.header("x-request-id").expect("a request id").to_owned();
    assert!(hop.body.contains("<!-- ACME 403 -->"), "{}", hop.body);
    assert!(
        hop.body
            .contains("<p>bob may not use admin (403).</p>\n<a href=\"/oauth2/sign_out\">Sign in as someone else</a>"),
        "{}",
        hop.body
    );
    assert!(hop.body.contains(&format!("ref {id}")), "{}", hop.body);

    // A rule that denies everybody: the error page.
    let hop = browser.get(&format!("http://app.test:{port}/nobody")).await;
    assert_eq!(hop.status, 403);
    assert!(
        hop.body
            .starts_with("<html><!-- ACME error --><h1>Access denied</h1>"),
        "{}",
        hop.body
    );
    assert!(hop.body.contains("403 ref "), "{}", hop.body);

    // API clients still get JSON.
    let res =
        b.h.client()
            .get(format!("http://127.0.0.1:{port}/nobody"))
            .header("Host", "app.test")
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().starts_with('{'));

    // Signing out without rd shows the operator's page and ends the session.
    let hop = browser
        .get(&format!("http://app.test:{port}/oauth2/sign_out"))
        .await;
    assert_eq!(hop.status, 200, "{}", hop.body);
    assert!(
        hop.body
            .contains("<!-- ACME bye --><a href=\"/\">Continue</a>"),
        "{}",
        hop.body
    );
    let hop = browser.get(&format!("http://app.test:{port}/")).await;
    assert_eq!(hop.status, 302, "still signed in after the sign-out page");
}

#[tokio::test]
async fn sign_out_with_rd_still_redirects_and_absent_pages_stay_built_in() {
    let b = start(&[("signed_out.html", SIGNED_OUT)]).await;
    let port = b.h.gw.addr.port();
    let browser = b.h.browser();
    browser
        .login(&format!("http://app.test:{port}/"), "carol")
        .await;
    // No 403.html or error.html: the built-in 403 page.
    let hop = browser.get(&format!("http://app.test:{port}/admin")).await;
    assert_eq!(hop.status, 403);
    assert!(
        hop.body.contains("You are signed in as carol"),
        "{}",
        hop.body
    );
    let hop = browser
        .get(&format!("http://app.test:{port}/oauth2/sign_out?rd=%2Fbye"))
        .await;
    assert_eq!(hop.status, 302);
    let to = hop.location().unwrap_or_default();
    assert!(
        to.ends_with(
            "app.test:{port}/bye"
                .replace("{port}", &port.to_string())
                .as_str()
        ),
        "{to}"
    );
}

#[tokio::test]
async fn hostile_values_are_escaped_in_templates() {
    // The user name comes from the IdP; the built-in dev IdP's users are
    // tame, so the escaping itself is covered by the unit tests, and here
    // the request id a trusted proxy sends (visible ASCII, which may hold
    // `<` and `"`) is the hostile value.
    let b = start(&[("error.html", ERROR)]).await;
    let port = b.h.gw.addr.port();
    let res =
        b.h.client()
            .get(format!("http://127.0.0.1:{port}/nobody"))
            .header("Host", "app.test")
            .header("Accept", "text/html")
            .header("X-Request-Id", "<script>\"x\"</script>")
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 403);
    let body = res.text().await.unwrap();
    assert!(!body.contains("<script>"), "{body}");
    assert!(
        body.contains("ref &lt;script&gt;&quot;x&quot;&lt;/script&gt;"),
        "{body}"
    );
}

#[tokio::test]
async fn forward_auth_answers_use_the_operators_pages_too() {
    // A check with a cached session, or with none, is answered without
    // waiting on anything: it must still be made with the templates.
    let b = start(&[("403.html", FORBIDDEN), ("error.html", ERROR)]).await;
    let cookie = b.h.session_cookie("bob").await;
    for _ in 0..2 {
        let res =
            b.h.check("GET", "app.test", "/admin")
                .header("Cookie", format!("_portcullis={cookie}"))
                .header("Accept", "text/html")
                .send()
                .await
                .unwrap();
        assert_eq!(res.status(), 403);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = res.text().await.unwrap();
        assert!(body.contains("<!-- ACME 403 -->"), "{body}");
        assert!(
            body.contains("<p>bob may not use admin (403).</p>"),
            "{body}"
        );
        assert!(body.contains(&format!("ref {id}")), "{body}");
    }
    let res =
        b.h.check("GET", "app.test", "/nobody")
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 403);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = res.text().await.unwrap();
    assert!(
        body.starts_with("<html><!-- ACME error --><h1>Access denied</h1>"),
        "{body}"
    );
    assert!(body.contains(&format!("403 ref {id}")), "{body}");
}
