//! WebSocket (HTTP/1.1 `Upgrade`) pass-through, after the request was
//! allowed: the upgrade request goes to the upstream over an HTTP/1.1-only
//! connection; when the upstream answers 101, both connections are taken
//! over from hyper and joined with `copy_bidirectional` in a task of their
//! own, which lives until either side closes. Reloading the config does not
//! touch open tunnels. Any other answer is relayed as an ordinary response.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::RequestBody;
use super::upstream::Upstream;
use super::{headers, send, upstream_failed, upstream_response};
use crate::http_util::Body;

/// Forwards an upgrade request; on 101 joins the two connections.
pub async fn forward(
    upstream: &Arc<Upstream>,
    req: Request<RequestBody>,
    on_client: OnUpgrade,
) -> Response<Body> {
    let mut res = match send(&upstream.upgrade_client, upstream, req, None).await {
        Ok(res) => res,
        Err(e) => return upstream_failed(upstream, &e),
    };
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return upstream_response(upstream, res);
    }
    let on_upstream = hyper::upgrade::on(&mut res);
    let label = upstream.label.clone();
    tokio::spawn(async move {
        let (client, server) = match tokio::join!(on_client, on_upstream) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(upstream = %label, error = %e, "upgrade did not complete");
                return;
            }
        };
        let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
        match tokio::io::copy_bidirectional(&mut client, &mut server).await {
            Ok((up, down)) => {
                tracing::debug!(upstream = %label, bytes.up = up, bytes.down = down, "tunnel closed")
            }
            Err(e) => tracing::debug!(upstream = %label, error = %e, "tunnel ended with an error"),
        }
    });
    let (mut parts, _) = res.into_parts();
    headers::scrub_response(&mut parts.headers, true);
    Response::from_parts(parts, Either::Left(Full::default()))
}
