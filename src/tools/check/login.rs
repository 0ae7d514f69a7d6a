//! `portcullis check --login`: one real login through the IdP, to see what
//! portcullis receives.
//!
//! Prints a login URL and runs a one-shot callback listener: on the port of
//! `server.external_url` when that is a loopback address (so the redirect
//! URI already registered for a local gateway works; stop the gateway
//! first), otherwise on an ephemeral loopback port, whose redirect URI the
//! IdP must then allow. After the operator signs in, the code is redeemed
//! exactly as the gateway would, and the ID-token claims and the userinfo
//! claims are printed side by side, followed by the identity derived from
//! them and the verdict of every rule on that identity — the fastest way to
//! see an empty `groups` claim.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::local::is_loopback_host;
use super::{Finding, Report};
use crate::auth::diagnostics::Class;
use crate::auth::oidc::probe::fetch_userinfo;
use crate::auth::oidc::{LoginOutcome, Oidc};
use crate::auth::rules::RuleSet;
use crate::base::http_util::query_param;
use crate::base::identity::Identity;
use crate::base::jwt::jwt_payload;
use crate::config::{Config, Policy};

/// How long the operator has to sign in.
pub const LOGIN_WAIT: Duration = Duration::from_secs(300);
/// Widest claim value shown in the table.
const VALUE_WIDTH: usize = 44;

/// The login's findings; the claims table, identity and rule verdicts go
/// to `out` (stdout in text mode, stderr with `--json`) as they are known.
pub async fn run(config: &Config, out: &mut dyn std::io::Write) -> Report {
    let mut report = Report::default();
    match login(config, out).await {
        Ok(found) => report.extend(found),
        Err(f) => report.push(f),
    }
    report
}

async fn login(config: &Config, out: &mut dyn std::io::Write) -> Result<Vec<Finding>, Finding> {
    let (listener, redirect_uri) = listen(config).await?;
    let oidc = Arc::new(
        Oidc::new(config.oidc.clone())
            .map_err(|e| fail(e.to_string(), "check the [oidc] section"))?,
    );
    let (url, flow) = oidc
        .begin(&redirect_uri, "/")
        .await
        .map_err(|e| fail(e.to_string(), "fix the FAIL lines above first"))?;
    let _ = writeln!(
        out,
        "\nOpen this URL in a browser and sign in (waiting {} s; redirect URI {redirect_uri}):\n{url}",
        LOGIN_WAIT.as_secs()
    );
    let _ = out.flush();
    let prefix = config.server.prefix.clone();
    let query = tokio::time::timeout(LOGIN_WAIT, callback(&listener, &prefix))
        .await
        .map_err(|_| {
            fail(
                format!("nobody signed in within {} s", LOGIN_WAIT.as_secs()),
                "run it again and open the URL it prints",
            )
        })?;
    if let Some(error) = query_param(Some(&query), "error") {
        let desc = query_param(Some(&query), "error_description").unwrap_or_default();
        return Err(fail(
            format!("the IdP refused the login: {error} {desc}"),
            "compare the client's settings at the IdP with the [oidc] section",
        ));
    }
    let (Some(state), Some(code)) = (
        query_param(Some(&query), "state"),
        query_param(Some(&query), "code"),
    ) else {
        return Err(fail("the callback carried no code", "run it again"));
    };
    if state != flow.state {
        return Err(fail(
            "the callback's state is not this login's",
            "run it again and use the URL it prints, once",
        ));
    }
    let outcome = oidc.complete(&flow, &code).await.map_err(|e| {
        fail(
            e.to_string(),
            "see the FAIL lines above; `portcullis check` explains most causes",
        )
    })?;
    let id_claims = jwt_payload(outcome.id_token.expose()).unwrap_or(Value::Null);
    let userinfo = userinfo(&oidc, &outcome).await;
    let _ = write!(out, "{}", claims_table(&id_claims, &userinfo));
    let _ = write!(out, "{}", identity_and_rules(config, &outcome.identity));
    let _ = out.flush();
    let mut found = vec![Finding::ok(
        "login",
        format!(
            "signed in as {:?} through {redirect_uri}",
            outcome.identity.user
        ),
    )];
    found.push(groups_finding(
        config,
        &id_claims,
        &userinfo,
        &outcome.identity,
    ));
    Ok(found)
}

fn fail(detail: impl Into<String>, fix: &str) -> Finding {
    Finding::fail("login", detail, fix)
}

/// The listener and the redirect URI it answers.
async fn listen(config: &Config) -> Result<(TcpListener, String), Finding> {
    let prefix = &config.server.prefix;
    if let Some(u) = &config.server.external_url {
        if is_loopback_host(u.host_str().unwrap_or("")) {
            let port = u.port_or_known_default().unwrap_or(80);
            let uri = format!("{}{prefix}/callback", u.as_str().trim_end_matches('/'));
            return match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => Ok((l, uri)),
                Err(e) => Err(fail(
                    format!("cannot listen on 127.0.0.1:{port} for the callback: {e}"),
                    "stop the gateway running on that port while the check runs",
                )),
            };
        }
    }
    let l = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| {
        fail(
            format!("cannot listen on 127.0.0.1: {e}"),
            "allow listening on loopback",
        )
    })?;
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    Ok((l, format!("http://127.0.0.1:{port}{prefix}/callback")))
}

/// Answers requests until one reaches the callback path; returns its query.
async fn callback(listener: &TcpListener, prefix: &str) -> String {
    let path = format!("{prefix}/callback");
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let Some(target) = read_target(&mut stream).await else {
            continue;
        };
        let (p, q) = target.split_once('?').unwrap_or((&target, ""));
        if p != path {
            let _ = respond(&mut stream, "404 Not Found", "Not the callback.").await;
            continue;
        }
        let _ = respond(
            &mut stream,
            "200 OK",
            "portcullis check: login received. You can close this tab and return to the terminal.",
        )
        .await;
        return q.to_owned();
    }
}

async fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        let mut chunk = [0u8; 2048];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_owned)
}

async fn respond(stream: &mut TcpStream, status: &str, text: &str) -> std::io::Result<()> {
    let body = format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>portcullis check</title></head><body><p>{text}</p></body></html>");
    let res = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(res.as_bytes()).await?;
    stream.shutdown().await
}

/// Userinfo fetched with the login's access token, or why not.
async fn userinfo(oidc: &Oidc, outcome: &LoginOutcome) -> Result<Value, String> {
    let meta = oidc.metadata().await.map_err(|e| e.to_string())?;
    let url = meta
        .userinfo_endpoint()
        .ok_or("the IdP has no userinfo endpoint")?
        .url()
        .clone();
    let http =
        crate::auth::oidc::probe::http_client().map_err(|e| crate::base::error::error_chain(&e))?;
    fetch_userinfo(&http, &url, outcome.access_token.expose()).await
}

/// `claim  ID token  userinfo`, one row per claim name in either.
pub fn claims_table(id_token: &Value, userinfo: &Result<Value, String>) -> String {
    let empty = Map::new();
    let id = id_token.as_object().unwrap_or(&empty);
    let info = userinfo
        .as_ref()
        .ok()
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut names: Vec<&String> = id.keys().chain(info.keys()).collect();
    names.sort();
    names.dedup();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(5).max(5);
    let cell = |v: Option<&Value>| match v {
        None => "-".to_owned(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > VALUE_WIDTH {
                let cut: String = s.chars().take(VALUE_WIDTH - 1).collect();
                format!("{cut}…")
            } else {
                s
            }
        }
    };
    let mut out = format!(
        "\n{:<width$}  {:<VALUE_WIDTH$}  userinfo\n",
        "claim", "ID token"
    );
    for n in names {
        let _ = writeln!(
            out,
            "{n:<width$}  {:<VALUE_WIDTH$}  {}",
            cell(id.get(n.as_str())),
            cell(info.get(n.as_str()))
        );
    }
    if let Err(e) = userinfo {
        let _ = writeln!(out, "(userinfo: {e})");
    }
    out
}

/// The derived identity and every rule's verdict on it.
pub fn identity_and_rules(config: &Config, id: &Identity) -> String {
    let mut out = format!(
        "\nidentity: user {:?}, email {:?}, groups [{}]\n",
        id.user,
        id.email,
        id.groups.join(", ")
    );
    let Ok(rules) = RuleSet::compile(&config.rules, config.access.default) else {
        return out;
    };
    for r in rules.rules() {
        let host = match r.host() {
            Some(crate::config::HostPattern::Exact(h)) => h.clone(),
            Some(crate::config::HostPattern::Suffix(s)) => format!("*{s}"),
            None => "any host".to_owned(),
        };
        let verdict = match r.policy {
            Policy::Public => "public".to_owned(),
            Policy::Deny => "denies everybody".to_owned(),
            Policy::Authenticated if r.permits(id) => "passes".to_owned(),
            Policy::Authenticated if !r.required_groups().is_empty() => format!(
                "DENIED (needs one of groups: {}, or a listed user/email)",
                r.required_groups().join(", ")
            ),
            Policy::Authenticated => "DENIED (not a listed user/email/domain)".to_owned(),
        };
        let _ = writeln!(out, "rule {} ({host} {}): {verdict}", r.name, r.path());
    }
    out
}

/// `groups claim`: whether the claim the rules need arrived.
fn groups_finding(
    config: &Config,
    id_token: &Value,
    userinfo: &Result<Value, String>,
    identity: &Identity,
) -> Finding {
    let claim = &config.oidc.groups_claim;
    let needing: Vec<&str> = config
        .rules
        .iter()
        .filter(|r| r.policy == Policy::Authenticated && !r.groups.is_empty())
        .map(|r| r.name.as_str())
        .collect();
    let in_id = claim.lookup(id_token).is_some();
    let in_info = userinfo
        .as_ref()
        .ok()
        .is_some_and(|u| claim.lookup(u).is_some());
    let from = match (in_id, in_info) {
        (true, true) => "the ID token and userinfo",
        (true, false) => "the ID token",
        (false, true) => "userinfo",
        (false, false) => "",
    };
    if !identity.groups.is_empty() {
        return Finding::ok(
            "groups claim",
            format!(
                "`{}` = [{}] (from {from})",
                claim.dotted,
                identity.groups.join(", ")
            ),
        );
    }
    if needing.is_empty() {
        return Finding::ok(
            "groups claim",
            format!("`{}` is empty, and no rule uses groups", claim.dotted),
        );
    }
    if from.is_empty() {
        Finding::fail(
            "groups claim",
            format!(
                "the groups claim `{}` is in neither the ID token nor userinfo, and rules need groups ({})",
                claim.dotted,
                needing.join(", ")
            ),
            Class::EmptyGroups.fix(),
        )
    } else {
        Finding::warn(
            "groups claim",
            format!(
                "the groups claim `{}` is empty for {:?} (in {from}); rules needing groups ({}) deny this user",
                claim.dotted,
                identity.user,
                needing.join(", ")
            ),
            "add the user to a group at the IdP if it should pass; if it is in groups there, the IdP does not release them (see the fix for an absent claim)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_side_by_side() {
        let t = claims_table(
            &json!({"sub": "carol", "aud": "portcullis"}),
            &Ok(json!({"sub": "carol", "email": "c@example.com"})),
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].starts_with("claim  ID token"), "{t}");
        assert!(lines[2].starts_with("aud    \"portcullis\""), "{t}");
        assert!(lines[2].ends_with("  -"), "{t}");
        assert!(lines[3].starts_with("email  -"), "{t}");
        assert!(lines[4].ends_with("\"carol\""), "{t}");
        let t = claims_table(&json!({"sub": "x"}), &Err("userinfo answered 401".into()));
        assert!(t.contains("(userinfo: userinfo answered 401)"), "{t}");
    }
}
