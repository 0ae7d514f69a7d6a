use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine;
use http::HeaderValue;

use super::*;
use crate::config::htpasswd::{self, classify, FileProblem, PasswordHash};

/// `htpasswd -nbB alice secret1` (apache2-utils, cost 5).
const ALICE: &str = "$2y$05$0b376LHGYrR0ADqlQxkUyeWqu2/bHi09ZEiC04JCaOGrCfzGKi1Gu";

fn basic(user: &str, password: &str) -> HeaderValue {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {b64}")).unwrap()
}

fn argon2_hash(password: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// Users from file texts, through the same parser as the config.
fn users(passwords: &str, groups: &str) -> Users {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("htpasswd");
    let g = dir.path().join("groups");
    std::fs::write(&p, passwords).unwrap();
    std::fs::write(&g, groups).unwrap();
    htpasswd::load(&p, Some(&g)).unwrap()
}

fn line_problems(text: &str) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    htpasswd::parse_passwords("f", text, &mut problems);
    problems
        .into_iter()
        .map(|p| match p {
            FileProblem::Line { line, reason, .. } => (line, reason),
            other => panic!("{other:?}"),
        })
        .collect()
}

const LOCAL: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

#[test]
fn bcrypt_and_argon2_are_the_only_accepted_hashes() {
    assert!(matches!(classify(ALICE), Ok(PasswordHash::Bcrypt(_))));
    let b = bcrypt::hash("pw", 4).unwrap();
    assert!(matches!(classify(&b), Ok(PasswordHash::Bcrypt(_))));
    let a = argon2_hash("pw");
    assert!(matches!(classify(&a), Ok(PasswordHash::Argon2(_))));
    for (hash, named) in [
        ("$apr1$ahmAwEGD$U.1opusfy8dR9yB192vq.1", "MD5"),
        ("$1$abcdefgh$0123456789abcdefghijkl", "MD5"),
        ("{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=", "SHA-1"),
        (
            "$5$q/yM9Wnqob60GMB1$FKV39fgvjqF5/vQ3Vw1zB4oj9VkHCJTcfdIZAJo3ZCA",
            "SHA-256",
        ),
        ("$6$oN7n7fJaS3dNL1ET$TjbfFF1LAAEI", "SHA-512"),
        ("l1mgT9PJ73Ut.", "DES crypt"),
        ("secret", "plain-text"),
        ("", "plain-text"),
        (
            "$2x$05$0b376LHGYrR0ADqlQxkUyeWqu2/bHi09ZEiC04JCaOGrCfzGKi1Gu",
            "$2x$",
        ),
    ] {
        let reason = match classify(hash) {
            Err(reason) => reason,
            Ok(_) => panic!("{hash} accepted"),
        };
        assert!(reason.contains(named), "{hash}: {reason}");
        assert!(reason.contains("htpasswd -B"), "{hash}: {reason}");
        assert!(
            !reason.contains(hash) || hash.is_empty(),
            "{reason} echoes the entry"
        );
    }
    for broken in [
        "$2y$05$short",
        "$2y$99$0b376LHGYrR0ADqlQxkUyeWqu2/bHi09ZEiC04JCaOGrCfzGKi1Gu",
        "$2y$05$0b376LHGYrR0ADqlQxkUyeWqu2/bHi09ZEiC04JCaOGrCfzGKi1G!",
        "$argon2id$v=19$m=nope",
    ] {
        assert!(classify(broken).is_err(), "{broken}");
    }
}

#[test]
fn refused_entries_are_reported_with_their_line_numbers() {
    let text = format!(
        "# made with htpasswd\n\nalice:{ALICE}\nbob:$apr1$ahmAwEGD$U.1opusfy8dR9yB192vq.1\ncarol:{{SHA}}EfatjsUqKYSrqv18O1FlA3hcIHI=\ndave:hunter2\nno colon here\nalice:{ALICE}\n"
    );
    let problems = line_problems(&text);
    let lines: Vec<usize> = problems.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![4, 5, 6, 7, 8], "{problems:?}");
    assert!(problems[0].1.contains("\"bob\"") && problems[0].1.contains("MD5"));
    assert!(problems[1].1.contains("SHA-1"));
    assert!(problems[2].1.contains("plain-text") && !problems[2].1.contains("hunter2"));
    assert!(problems[4].1.contains("already defined on line 3"));
}

#[test]
fn an_unreadable_file_keeps_the_os_error_as_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = htpasswd::load(&missing, None).unwrap_err();
    let [e] = &err[..] else {
        panic!("one problem: {err:?}")
    };
    let io = std::error::Error::source(e)
        .and_then(|c| c.downcast_ref::<std::io::Error>())
        .expect("the OS error is the cause");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(
        e.to_string(),
        format!("cannot read {}: {io}", missing.display())
    );
}

#[test]
fn unreadable_files_and_bad_group_lines_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = htpasswd::load(&missing, None).unwrap_err();
    assert!(
        matches!(err[..], [FileProblem::Unreadable { .. }]),
        "{err:?}"
    );
    let p = dir.path().join("htpasswd");
    let g = dir.path().join("groups");
    std::fs::write(&p, format!("alice:{ALICE}\n")).unwrap();
    std::fs::write(&g, "ops: alice\nnot a group line\n: bob\n").unwrap();
    let err = htpasswd::load(&p, Some(&g)).unwrap_err();
    let lines: Vec<String> = err.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("line 2"), "{lines:?}");
    assert!(lines[1].contains("line 3"), "{lines:?}");
}

#[test]
fn users_get_their_groups_from_the_groups_file() {
    let u = users(
        &format!("alice:{ALICE}\nbob:{ALICE}\n"),
        "# groups\nops: alice  bob\nadmins: alice\nops: alice\nghosts: nobody\n",
    );
    assert_eq!(u.len(), 2);
    let alice = u.get("alice").unwrap();
    assert_eq!(alice.identity.user, "alice");
    assert_eq!(alice.identity.email, "");
    assert_eq!(alice.identity.groups, vec!["ops", "admins"]);
    assert_eq!(alice.headers.groups.to_str().unwrap(), "ops,admins");
    assert_eq!(u.get("bob").unwrap().identity.groups, vec!["ops"]);
    assert!(u.get("nobody").is_none());
    assert!(!format!("{alice:?}").contains(ALICE));
}

#[test]
fn only_basic_authorization_headers_are_credentials() {
    let mut h = http::HeaderMap::new();
    assert!(credentials(&h).is_none());
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer x.y.z"),
    );
    assert!(credentials(&h).is_none());
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("bAsIc YTpi"),
    );
    assert!(credentials(&h).is_some());
    let d = decode(&basic("alice", "pa:ss:word")).unwrap();
    assert_eq!(
        (d.user.as_str(), &d.password[..]),
        ("alice", &b"pa:ss:word"[..])
    );
    for bad in [
        "Basic",
        "Basic !!!",
        "Basic YWxpY2U=",
        "Basic OnB3",
        "Basic /w==", /* 0xff */
    ] {
        assert!(decode(&HeaderValue::from_static(bad)).is_none(), "{bad}");
    }
}

#[tokio::test]
async fn good_wrong_and_unknown_credentials() {
    let u = users(&format!("alice:{ALICE}\n"), "");
    let auth = BasicAuth::new(Limits::default());
    let ok = auth
        .authenticate(&u, &basic("alice", "secret1"), LOCAL, "r")
        .await
        .unwrap();
    assert_eq!(ok.identity.user, "alice");
    assert_eq!(
        auth.authenticate(&u, &basic("alice", "secret2"), LOCAL, "r")
            .await
            .unwrap_err(),
        BasicError::WrongPassword
    );
    assert_eq!(
        auth.authenticate(&u, &basic("mallory", "secret1"), LOCAL, "r")
            .await
            .unwrap_err(),
        BasicError::UnknownUser
    );
    assert_eq!(
        auth.authenticate(&u, &HeaderValue::from_static("Basic %%%"), LOCAL, "r")
            .await
            .unwrap_err(),
        BasicError::Malformed
    );
    // The unknown user was checked against a decoy hash, like a known one.
    assert_eq!(auth.hash_checks(), 3);
}

#[tokio::test]
async fn argon2_users_sign_in() {
    let u = users(&format!("carol:{}\n", argon2_hash("s3cret")), "");
    let auth = BasicAuth::new(Limits::default());
    assert!(auth
        .authenticate(&u, &basic("carol", "s3cret"), LOCAL, "r")
        .await
        .is_ok());
    assert!(auth
        .authenticate(&u, &basic("carol", "S3cret"), LOCAL, "r")
        .await
        .is_err());
}

#[tokio::test]
async fn verified_credentials_are_not_hashed_again() {
    let u = users(&format!("alice:{ALICE}\n"), "");
    let auth = BasicAuth::new(Limits::default());
    for _ in 0..20 {
        auth.authenticate(&u, &basic("alice", "secret1"), LOCAL, "r")
            .await
            .unwrap();
    }
    assert_eq!(auth.hash_checks(), 1);
    // A different password is another key: checked, and refused.
    assert!(auth
        .authenticate(&u, &basic("alice", "secret1 "), LOCAL, "r")
        .await
        .is_err());
    assert_eq!(auth.hash_checks(), 2);
}

#[tokio::test]
async fn cached_credentials_expire() {
    let u = users(&format!("alice:{ALICE}\n"), "");
    let auth = BasicAuth::new(Limits {
        cache_ttl: Duration::from_millis(200),
        ..Limits::default()
    });
    let good = basic("alice", "secret1");
    auth.authenticate(&u, &good, LOCAL, "r").await.unwrap();
    auth.authenticate(&u, &good, LOCAL, "r").await.unwrap();
    assert_eq!(auth.hash_checks(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    auth.authenticate(&u, &good, LOCAL, "r").await.unwrap();
    assert_eq!(auth.hash_checks(), 2);
}

#[tokio::test]
async fn a_changed_hash_voids_the_cached_credentials() {
    let auth = BasicAuth::new(Limits::default());
    let good = basic("alice", "secret1");
    let before = users(&format!("alice:{ALICE}\n"), "");
    auth.authenticate(&before, &good, LOCAL, "r").await.unwrap();
    // The file is reloaded with a new password for alice.
    let after = users(
        &format!("alice:{}\n", bcrypt::hash("new", 4).unwrap()),
        "ops: alice",
    );
    assert_eq!(
        auth.authenticate(&after, &good, LOCAL, "r")
            .await
            .unwrap_err(),
        BasicError::WrongPassword
    );
    // Same hash, new groups: the cache answers with the reloaded identity.
    let regrouped = users(&format!("alice:{ALICE}\n"), "ops: alice");
    auth.authenticate(&before, &good, LOCAL, "r").await.unwrap();
    let checks = auth.hash_checks();
    let u = auth
        .authenticate(&regrouped, &good, LOCAL, "r")
        .await
        .unwrap();
    assert_eq!(u.identity.groups, vec!["ops"]);
    assert_eq!(auth.hash_checks(), checks);
}

#[tokio::test]
async fn failures_are_limited_per_user_without_hashing() {
    let u = users(&format!("alice:{ALICE}\n"), "");
    let auth = BasicAuth::new(Limits::default());
    for n in 0..5u8 {
        // A different address each time: the per-user count alone trips.
        let from = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)));
        assert_eq!(
            auth.authenticate(&u, &basic("alice", "guess"), from, "r")
                .await
                .unwrap_err(),
            BasicError::WrongPassword
        );
    }
    assert_eq!(auth.hash_checks(), 5);
    let limited = auth
        .authenticate(&u, &basic("alice", "secret1"), LOCAL, "r")
        .await
        .unwrap_err();
    match limited {
        BasicError::RateLimited {
            by: "user",
            retry_after_secs,
        } => assert!((1..=60).contains(&retry_after_secs)),
        other => panic!("{other:?}"),
    }
    assert_eq!(auth.hash_checks(), 5, "a limited attempt runs no hash");
}

#[tokio::test]
async fn failures_are_limited_per_address() {
    let u = users(&format!("alice:{ALICE}\n"), "");
    let auth = BasicAuth::new(Limits::default());
    for n in 0..5 {
        let _ = auth
            .authenticate(&u, &basic(&format!("user{n}"), "guess"), LOCAL, "r")
            .await;
    }
    assert!(matches!(
        auth.authenticate(&u, &basic("user9", "guess"), LOCAL, "r")
            .await,
        Err(BasicError::RateLimited { by: "address", .. })
    ));
    // Another address is not affected.
    let other = Some(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)));
    assert!(auth
        .authenticate(&u, &basic("alice", "secret1"), other, "r")
        .await
        .is_ok());
}

#[tokio::test]
async fn cached_credentials_pass_while_guessers_are_limited() {
    let u = users(&format!("alice:{ALICE}\n"), "");
    let auth = BasicAuth::new(Limits::default());
    let good = basic("alice", "secret1");
    auth.authenticate(&u, &good, LOCAL, "r").await.unwrap();
    for _ in 0..6 {
        let _ = auth
            .authenticate(&u, &basic("alice", "guess"), LOCAL, "r")
            .await;
    }
    assert!(auth.authenticate(&u, &good, LOCAL, "r").await.is_ok());
}

#[tokio::test]
async fn the_limit_lifts_when_the_window_ends() {
    let u = users(&format!("alice:{ALICE}\n"), "");
    let auth = BasicAuth::new(Limits {
        failures: 2,
        window: Duration::from_millis(300),
        ..Limits::default()
    });
    for _ in 0..2 {
        let _ = auth
            .authenticate(&u, &basic("alice", "guess"), LOCAL, "r")
            .await;
    }
    assert!(matches!(
        auth.authenticate(&u, &basic("alice", "secret1"), LOCAL, "r")
            .await,
        Err(BasicError::RateLimited { .. })
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(auth
        .authenticate(&u, &basic("alice", "secret1"), LOCAL, "r")
        .await
        .is_ok());
}
