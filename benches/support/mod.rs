//! Pieces of the load harness kept out of `load.rs`: the plain hyper server it
//! compares against, the fixed-rate latency generator, and the reverse-proxy
//! scenario (`LOAD_SCENARIO=proxy`).

pub mod baseline;
pub mod fixed_rate;
pub mod proxy;
