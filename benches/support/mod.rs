//! Pieces of the load harness kept out of `load.rs`: the plain hyper server it
//! compares against, the fixed-rate latency generator, and the reverse-proxy
//! scenario (`LOAD_SCENARIO=proxy`), the shared-session scenario
//! (`LOAD_SCENARIO=redis`), and TLS termination and idle connections against
//! nginx (`LOAD_SCENARIO=tls`, `LOAD_SCENARIO=idle`).

pub mod bare_proxy;
pub mod baseline;
pub mod fixed_rate;
pub mod parse_proxy;
pub mod proxy;
pub mod redis;
pub mod tls;
