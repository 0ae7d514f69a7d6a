//! The deployment artefacts and the command they rely on: `portcullis
//! healthcheck` against running gateways, and the files in deploy/ checked
//! as far as they can be without their platform.

// `portcullis healthcheck`: healthy, stopped, admin listener, TLS listener.
mod healthcheck;
