//! The login flow against the development issuer.

use crate::support::{Harness, Opts};

fn app_url(h: &Harness, path: &str) -> String {
    format!("http://app.test:{}{}", h.gw.addr.port(), path)
}

#[tokio::test]
async fn login_returns_to_the_original_url_with_path_and_query() {
    let h = Harness::start().await;
    let b = h.browser();
    let target = app_url(&h, "/some/path?a=1&b=two%20words");
    let hops = b.login(&target, "alice").await;
    let last = hops.last().unwrap();
    assert_eq!(last.status, 200, "{}", last.body);
    assert_eq!(last.url, target);
    let echo = last.echoed();
    assert_eq!(echo["path"], "/some/path");
    assert_eq!(echo["query"], "a=1&b=two%20words");
    assert_eq!(echo["headers"]["x-auth-user"][0], "alice");
    assert_eq!(echo["headers"]["x-auth-email"][0], "alice@example.com");
    assert_eq!(echo["headers"]["x-auth-groups"][0], "admins,staff");
    // The session and flow cookies never reach the app.
    assert!(echo["headers"].get("cookie").is_none(), "{echo}");
}

#[tokio::test]
async fn userinfo_fallback_fills_groups_missing_from_the_id_token() {
    let h = Harness::start_with(Opts {
        claims_in_id_token: false,
        ..Opts::default()
    })
    .await;
    let b = h.browser();
    let hops = b.login(&app_url(&h, "/admin"), "alice").await;
    let last = hops.last().unwrap();
    assert_eq!(last.status, 200, "{}", last.body);
    assert_eq!(last.echoed()["headers"]["x-auth-groups"][0], "admins,staff");
    assert!(h.idp.as_ref().unwrap().stats().userinfo_requests >= 1);
}

#[tokio::test]
async fn group_rules_allow_and_deny() {
    let h = Harness::start().await;
    let bob = h.browser();
    let hops = bob.login(&app_url(&h, "/admin/x"), "bob").await;
    let last = hops.last().unwrap();
    assert_eq!(last.status, 403);
    assert!(
        last.body.contains("admins"),
        "403 page names the needed group: {}",
        last.body
    );
    assert_eq!(bob.get(&app_url(&h, "/anything")).await.status, 200);

    let carol = h.browser();
    let hops = carol.login(&app_url(&h, "/"), "carol").await;
    assert_eq!(
        hops.last().unwrap().status,
        200,
        "no groups is fine where no group is needed"
    );
    assert_eq!(
        hops.last().unwrap().echoed()["headers"]["x-auth-groups"][0],
        ""
    );
    assert_eq!(carol.get(&app_url(&h, "/admin")).await.status, 403);
}

#[tokio::test]
async fn wrong_password_stays_at_the_form() {
    let h = Harness::start().await;
    let b = h.browser();
    let hops = b.follow(&app_url(&h, "/")).await;
    let form = hops.last().unwrap();
    let res = b.submit_login(&form.url, "alice", "wrong").await;
    assert!(res[0].body.contains("Invalid username or password"));
    assert!(b.cookie("app.test", "_portcullis").is_none());
}

#[tokio::test]
async fn hostile_rd_values_end_at_root() {
    let h = Harness::start().await;
    let hostile = [
        "https://evil.com/",
        "//evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "https://app.test@evil.com/",
        "https://evil.com\\@app.test/",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://example.com.evil.com/",
        "https://notexample.com/",
        "http://app.test%0d%0aLocation:%20https://evil.com",
        "/%2F%2Fevil.com",
        "/%5Cevil.com",
        "https:evil.com",
        " https://evil.com",
        "\thttps://evil.com",
        "/\t/evil.com",
        "ftp://a.example.com/",
    ];
    for rd in hostile {
        let b = h.browser();
        let start = format!(
            "http://app.test:{}/oauth2/start?rd={}",
            h.gw.addr.port(),
            url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
        );
        let hops = b.login(&start, "alice").await;
        let callback = hops
            .iter()
            .find(|hop| hop.url.contains("/oauth2/callback"))
            .expect("callback hop");
        let loc = callback.header("location").unwrap_or("");
        assert_eq!(loc, "/", "rd {rd:?} must end at /, got {loc:?}");
    }
    // Allowed targets pass.
    for rd in [
        "/dashboards?x=1",
        "https://a.example.com/x",
        "https://example.com/",
    ] {
        let b = h.browser();
        let start = format!(
            "http://app.test:{}/oauth2/start?rd={}",
            h.gw.addr.port(),
            url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
        );
        let hops = b.login(&start, "alice").await;
        let callback = hops
            .iter()
            .find(|hop| hop.url.contains("/oauth2/callback"))
            .unwrap();
        assert_eq!(callback.header("location"), Some(rd));
    }
}

#[tokio::test]
async fn several_tabs_log_in_at_once_and_flow_cookies_are_capped() {
    let h = Harness::start().await;
    let b = h.browser();
    let mut forms = Vec::new();
    for i in 0..3 {
        let hops = b.follow(&app_url(&h, &format!("/tab{i}"))).await;
        forms.push(hops.last().unwrap().url.clone());
    }
    // Finish in reverse order: every tab completes and lands on its own URL.
    for (i, form) in forms.iter().enumerate().rev() {
        let hops = b.submit_login(form, "alice", "demo").await;
        let last = hops.last().unwrap();
        assert_eq!(last.status, 200, "tab {i}: {}", last.body);
        assert_eq!(last.url, app_url(&h, &format!("/tab{i}")));
    }
    let flows = b
        .cookie_names("app.test")
        .into_iter()
        .filter(|n| n.contains("_flow_"))
        .count();
    assert_eq!(flows, 0, "every callback clears its flow cookie");

    let c = h.browser();
    for i in 0..10 {
        c.get(&format!(
            "http://app.test:{}/oauth2/start?rd=/{i}",
            h.gw.addr.port()
        ))
        .await;
    }
    let flows = c
        .cookie_names("app.test")
        .into_iter()
        .filter(|n| n.contains("_flow_"))
        .count();
    assert!(flows <= 4, "{flows} flow cookies pile up");
}

#[tokio::test]
async fn callback_failures_give_clear_pages() {
    let h = Harness::start().await;
    let port = h.gw.addr.port();
    let b = h.browser();
    // IdP error parameter.
    let hop = b
        .get(&format!("http://app.test:{port}/oauth2/callback?error=access_denied&error_description=user+cancelled&state=abcdefghijklmnop"))
        .await;
    assert_eq!(hop.status, 403);
    assert!(
        hop.body.contains("access_denied") && hop.body.contains("Try again"),
        "{}",
        hop.body
    );
    // No flow cookie for this state.
    let hop = b
        .get(&format!(
            "http://app.test:{port}/oauth2/callback?code=x&state=abcdefghijklmnop"
        ))
        .await;
    assert_eq!(hop.status, 400);
    assert!(hop.body.contains("could not be matched"), "{}", hop.body);
    // Missing parameters.
    let hop = b
        .get(&format!("http://app.test:{port}/oauth2/callback"))
        .await;
    assert_eq!(hop.status, 400);
    // A replayed callback URL: the code is single-use.
    let hops = b.login(&app_url(&h, "/"), "alice").await;
    let cb = hops
        .iter()
        .find(|x| x.url.contains("/oauth2/callback"))
        .unwrap()
        .url
        .clone();
    let other = h.browser();
    let hop = other.get(&cb).await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    assert!(other.cookie("app.test", "_portcullis").is_none());
}

#[tokio::test]
async fn state_from_another_browser_is_refused() {
    let h = Harness::start().await;
    let victim = h.browser();
    let attacker = h.browser();
    // The attacker starts a login and gets the victim to open the callback.
    let hops = attacker.follow(&app_url(&h, "/")).await;
    let res = attacker
        .http
        .post(hops.last().unwrap().url.split('?').next().unwrap())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "{}&username=bob&password=demo",
            hops.last().unwrap().url.split_once('?').unwrap().1
        ))
        .send()
        .await
        .unwrap();
    let cb = res.headers()["location"].to_str().unwrap().to_owned();
    let hop = victim.get(&cb).await;
    assert_eq!(hop.status, 400);
    assert!(
        victim.cookie("app.test", "_portcullis").is_none(),
        "login CSRF must not plant a session"
    );
}

#[tokio::test]
async fn idp_down_during_login_gives_a_503_page_not_a_500() {
    let mut h = Harness::start().await;
    let b = h.browser();
    // Get as far as the IdP's answer, then lose the IdP before the code is redeemed.
    let hops = b.follow(&app_url(&h, "/")).await;
    let form = hops.last().unwrap().url.clone();
    let (action, query) = form.split_once('?').unwrap();
    let res = b
        .http
        .post(action)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("{query}&username=alice&password=demo"))
        .send()
        .await
        .unwrap();
    let callback = res.headers()["location"].to_str().unwrap().to_owned();
    h.idp.take().unwrap().shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let hop = b.get(&callback).await;
    assert_eq!(hop.status, 503, "{}", hop.body);
    assert!(
        hop.body.contains("identity provider cannot be reached"),
        "{}",
        hop.body
    );
    assert!(hop.body.contains("Try again"));
    assert!(b.cookie("app.test", "_portcullis").is_none());
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let h = Harness::start().await;
    let b = h.browser();
    b.login(&app_url(&h, "/"), "alice").await;
    assert_eq!(b.get(&app_url(&h, "/x")).await.status, 200);
    let hop = b
        .get(&format!(
            "http://app.test:{}/oauth2/sign_out?rd=https://evil.com/",
            h.gw.addr.port()
        ))
        .await;
    assert_eq!(hop.status, 302);
    assert_eq!(hop.header("location"), Some("/"));
    assert!(hop.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(b.get(&app_url(&h, "/x")).await.status, 302);
    let info = b
        .http
        .get(format!(
            "http://app.test:{}/oauth2/userinfo",
            h.gw.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 401);
}

#[tokio::test]
async fn userinfo_reports_the_identity() {
    let h = Harness::start().await;
    let b = h.browser();
    b.login(&app_url(&h, "/"), "bob").await;
    let v: serde_json::Value = b
        .http
        .get(format!(
            "http://app.test:{}/oauth2/userinfo",
            h.gw.addr.port()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["user"], "bob");
    assert_eq!(v["email"], "bob@example.com");
    assert_eq!(v["groups"], serde_json::json!(["staff"]));
    assert!(v["expires_at"].as_u64().unwrap() > 0);
}
