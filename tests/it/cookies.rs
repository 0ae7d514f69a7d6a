//! Bad cookies are "no session": never a 500, never a grant.

use crate::support::Harness;

#[tokio::test]
async fn tampered_truncated_oversized_and_foreign_cookies_mean_no_session() {
    let h = Harness::start().await;
    let good = h.session_cookie("alice").await;
    let mut flipped = good.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let candidates = vec![
        flipped,
        good[..good.len() - 1].to_owned(),
        good[..10].to_owned(),
        "A".repeat(8192),
        "garbage".into(),
        String::new(),
        "\"quoted\"".into(),
        "%00%ff".into(),
        format!("{good}{good}"),
    ];
    for bad in candidates {
        for accept in ["text/html", "application/json"] {
            let res = h
                .check("GET", "app.test", "/")
                .header("Cookie", format!("_portcullis={bad}"))
                .header("Accept", accept)
                .send()
                .await
                .unwrap();
            let s = res.status().as_u16();
            assert!(s == 302 || s == 401, "{bad:.40} → {s}");
            assert_eq!(res.headers()["x-auth-user"], "");
        }
    }
    // A cookie sealed by a gateway with another secret.
    let other = crate::support::start_gateway_on(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[oidc]\nissuer = \"http://127.0.0.1:9/\"\nclient_id = \"x\"\n[session]\nsecret = \"{}\"\n[[rule]]\npolicy = \"public\"\n",
            "a-completely-different-secret-of-enough-length"
        ),
    )
    .await;
    let foreign = other
        .gateway
        .keys
        .seal(&portcullis::session::SessionId::random());
    let res = h
        .check("GET", "app.test", "/")
        .header("Cookie", format!("_portcullis={foreign}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The good cookie still works, also among many other cookies and duplicates.
    let res = h
        .check("GET", "app.test", "/")
        .header("Cookie", format!("a=1; _portcullis={good}; b=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn oversized_request_heads_are_refused_without_a_crash() {
    let h = Harness::start().await;
    let res = h
        .check("GET", "app.test", "/")
        .header("Cookie", format!("x={}", "A".repeat(40_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);
    // and the gateway keeps serving
    assert_eq!(
        h.client()
            .get(format!("{}/healthz", h.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
