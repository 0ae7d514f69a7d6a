//! Pieces of the load harness kept out of `load.rs`: the plain hyper server it
//! compares against and the fixed-rate latency generator.

pub mod baseline;
pub mod fixed_rate;
