//! The connections reverse-proxy mode opens to upstreams and the bodies
//! streamed over them: [`pool`] keeps the keep-alive connections of one
//! upstream, [`body`] streams request and response bodies with an idle
//! timeout, [`h1_request`] and [`h1_response`] write an HTTP/1.1 request
//! and read its answer without hyper, and [`h1_client`] runs exchanges
//! with them on a pooled connection. Nothing here knows about rules,
//! sessions or the config; the response body type is part of the body type
//! of every response (`http_util::Body`), so this module sits below
//! everything that answers requests.

pub mod body;
pub mod h1_client;
pub mod h1_request;
pub mod h1_response;
pub mod h1_server;
pub mod pool;
