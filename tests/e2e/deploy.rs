//! The deployment artefacts and the command they rely on: `portcullis
//! healthcheck` against running gateways, and the files in deploy/ checked
//! as far as they can be without their platform (see deploy/README.md).

// `portcullis healthcheck`: healthy, stopped, admin listener, TLS listener.
mod healthcheck;
// deploy/systemd: `systemd-analyze verify` and `security`, the settings kept.
mod systemd;
