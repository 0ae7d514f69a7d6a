//! Health endpoints: `/healthz` (the process answers) and `/readyz` (IdP
//! metadata loaded and session store reachable). Served on `admin_listen`
//! when it is set, otherwise on the main listener. Metrics join them later.

use http::{Method, Request, Response, StatusCode};

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
    let body = serde_json::json!({
        "ready": oidc_ok && store_ok,
        "oidc": if oidc_ok { "ok" } else { "identity provider metadata not loaded" },
        "store": if store_ok { "ok" } else { "session store unreachable" },
    });
    let status = if oidc_ok && store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    fixed(status, "application/json", body.to_string())
}
