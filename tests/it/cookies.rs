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
        .seal(&portcullis::auth::session::SessionId::random());
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

/// Base64 alphabets of the two halves of a session cookie value:
/// `base64(HMAC-SHA256)` (standard, padded: 43 characters and `=`) then
/// `base64url(session id)` (43 characters).
const STANDARD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `value` with character `i` replaced by the next one of `alphabet`: same
/// length, still canonical base64 (`i` is not a group's last, partly
/// unused character), so only the MAC can tell.
fn with_char_changed(value: &str, i: usize, alphabet: &[u8]) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let at = alphabet.iter().position(|&c| c == bytes[i]).unwrap();
    bytes[i] = alphabet[(at + 1) % alphabet.len()];
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn one_changed_character_of_the_mac_and_a_mac_over_another_session_are_refused() {
    // Every cookie here is well formed (87 characters, valid base64, padding
    // in place) and names a session the store holds, or differs from one
    // only in its MAC: the MAC check is the only thing that refuses them.
    let h = Harness::start().await;
    let alice = h.session_cookie("alice").await;
    let bob = h.session_cookie("bob").await;
    assert_eq!(alice.len(), 87, "{alice}");
    assert_eq!(&alice[43..44], "=", "{alice}");
    let ok = |cookie: &str| {
        h.check("GET", "app.test", "/")
            .header("Cookie", format!("_portcullis={cookie}"))
            .header("Accept", "application/json")
            .send()
    };
    // Control: the genuine cookies are sessions.
    for (user, cookie) in [("alice", &alice), ("bob", &bob)] {
        let res = ok(cookie).await.unwrap();
        assert_eq!(res.status(), 200, "{user}");
        assert_eq!(res.headers()["x-auth-user"], user);
    }
    let mut forged: Vec<(String, String)> = [0, 1, 20, 41]
        .into_iter()
        .map(|i| {
            (
                format!("MAC character {i} changed"),
                with_char_changed(&alice, i, STANDARD),
            )
        })
        .collect();
    // Alice's MAC over bob's session id, and the reverse.
    forged.push((
        "alice's MAC, bob's id".into(),
        format!("{}{}", &alice[..44], &bob[44..]),
    ));
    forged.push((
        "bob's MAC, alice's id".into(),
        format!("{}{}", &bob[..44], &alice[44..]),
    ));
    // One character of the signed id changed (no store holds that id either).
    forged.push((
        "id character 60 changed".into(),
        with_char_changed(&alice, 60, URL_SAFE),
    ));
    for (what, cookie) in forged {
        assert_eq!(cookie.len(), alice.len(), "{what}");
        let res = ok(&cookie).await.unwrap();
        assert_eq!(res.status(), 401, "{what}: {cookie}");
        assert_eq!(res.headers()["x-auth-user"], "", "{what}");
    }
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
