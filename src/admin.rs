//! Health endpoints: `/healthz` (the process answers) and `/readyz` (IdP
//! metadata and signing keys loaded, session store reachable). `/readyz` also
//! lists the key state of every `[[oidc.bearer_issuers]]` entry under
//! `jwks`; an extra issuer whose keys are unreachable is reported there but
//! does not make the gateway unready (browser logins still work). Served on
//! `admin_listen` when it is set, otherwise on the main listener. Metrics
//! join them later.

use http::{Method, Request, Response, StatusCode};

use crate::bearer::jwks::Status;
use crate::http_util::{fixed, Body};
use crate::pipeline::Gateway;

/// Answers `/healthz` and `/readyz`; `None` for any other path.
pub async fn handle<B>(gw: &Gateway, req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    match req.uri().path() {
        "/healthz" => Some(fixed(StatusCode::OK, "text/plain", "ok\n")),
        "/readyz" => Some(readyz(gw).await),
        _ => None,
    }
}

async fn readyz(gw: &Gateway) -> Response<Body> {
    let oidc_ok = gw.oidc.is_ready();
    let store = tokio::time::timeout(std::time::Duration::from_secs(2), gw.sessions.ping()).await;
    let store_ok = matches!(store, Ok(Ok(())));
    let mut jwks = serde_json::Map::new();
    let mut keys_ok = true;
    for (i, issuer) in gw.bearer.issuers().iter().enumerate() {
        let status = issuer.jwks.status();
        let text = match &status {
            Status::Loaded(n) => format!("ok ({n} keys)"),
            Status::Pending => "signing keys not fetched yet".to_owned(),
            Status::Failed(e) => format!("signing keys not loaded: {e}"),
        };
        // The main issuer's keys are part of the IdP being usable.
        if i == 0 && !matches!(status, Status::Loaded(_)) {
            keys_ok = false;
        }
        jwks.insert(issuer.iss.clone(), text.into());
    }
    let ready = oidc_ok && store_ok && keys_ok;
    let body = serde_json::json!({
        "ready": ready,
        "oidc": if oidc_ok { "ok" } else { "identity provider metadata not loaded" },
        "store": if store_ok { "ok" } else { "session store unreachable" },
        "jwks": jwks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    fixed(status, "application/json", body.to_string())
}
