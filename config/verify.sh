#!/usr/bin/env bash
# Verify the front-proxy examples in this directory against the real proxies.
#
#   config/verify.sh [traefik] [caddy] [nginx]      (default: all three)
#
# For each proxy: copy its example config to a temporary directory, substitute
# the placeholders (see config/README.md) with free 127.0.0.1 ports, start the
# proxy, a stub forward-auth server standing in for portcullis and a stub app
# that echoes the request headers it received as JSON, then check with curl:
#   - an allowed request reaches the app with the three identity headers;
#   - client-sent X-Auth-User copies (any case, "_" or "." spellings) never
#     reach the app, on allowed and on public paths;
#   - client-sent X-Forwarded-* / X-Original-* cannot change what is checked;
#   - an unauthenticated browser ends at /oauth2/start?rd=<original URL>;
#   - /oauth2/start is routed to portcullis;
# and print what the forward-auth request and the client responses looked like.
# Prints one line per check and "verify: ok" at the end; exits 1 on failure.
# Needs: python3, curl, and traefik / caddy / nginx on PATH.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROXIES=("$@")
[ ${#PROXIES[@]} -gt 0 ] || PROXIES=(traefik caddy nginx)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-verify.XXXXXX")
PIDS=()
FAILED=0

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$FAILED" = 0 ] && [ -z "${KEEP_WORK:-}" ]; then
        rm -rf "$WORK"
    else
        echo "verify: logs kept in $WORK" >&2
    fi
}
trap cleanup EXIT

ok()   { echo "$CUR: ok   $*"; }
info() { echo "$CUR: info $*"; }
fail() { echo "$CUR: FAIL $*"; FAILED=1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# subst IN OUT FROM TO [FROM TO ...]: literal string replacement; each FROM
# must occur in IN (a placeholder that vanished from an example is an error).
subst() {
    python3 - "$@" <<'EOF'
import sys
src, dst, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(src).read()
for old, new in zip(pairs[0::2], pairs[1::2]):
    if old not in text:
        sys.exit(f"placeholder {old!r} not found in {src}")
    text = text.replace(old, new)
open(dst, "w").write(text)
EOF
}

# ---------------------------------------------------------------------------
# Stub servers. "auth" stands in for portcullis, "app" for the protected app.
cat >"$WORK/stubs.py" <<'EOF'
import json, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLE, PORT, LOG = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def original(h):
    """(method, absolute URL) of the request the proxy asks about."""
    if h.get("X-Original-URL"):
        return h.get("X-Original-Method", ""), h["X-Original-URL"], True
    proto = h.get("X-Forwarded-Proto", "http")
    url = f"{proto}://{h.get('X-Forwarded-Host', '')}{h.get('X-Forwarded-Uri', '')}"
    return h.get("X-Forwarded-Method", ""), url, False

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, headers=(), body=b""):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        rec = {"role": ROLE, "method": self.command, "path": self.path,
               "headers": [[k, v] for k, v in self.headers.items()],
               "body_len": len(body)}
        with open(LOG, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if ROLE == "app" or not self.path.startswith("/oauth2/auth"):
            return self.send(200, [("Content-Type", "application/json")],
                             json.dumps(rec).encode())
        # --- forward-auth decision, like portcullis would make it ---
        method, url, nginx = original(self.headers)
        u = urllib.parse.urlsplit(url)
        ident = [("X-Auth-User", "alice"), ("X-Auth-Email", "a@x"), ("X-Auth-Groups", "admins")]
        empty = [("X-Auth-User", ""), ("X-Auth-Email", ""), ("X-Auth-Groups", "")]
        if u.path == "/health" or u.path.startswith("/health/"):
            return self.send(200, empty)
        if "ok=1" in (self.headers.get("Cookie") or ""):
            if u.path.startswith("/forbidden"):
                return self.send(403, [("Content-Type", "text/plain"), ("X-Probe", "403")],
                                 b"forbidden by stub\n")
            return self.send(200, ident + [("Set-Cookie", "auth200=1; Path=/")])
        login = f"{u.scheme}://{u.netloc}/oauth2/start?rd=" + urllib.parse.quote(url, safe="")
        if u.path.startswith("/relative"):
            login = "/oauth2/start?rd=" + urllib.parse.quote(url, safe="")
        browser = "text/html" in (self.headers.get("Accept") or "")
        if nginx or "mode=nginx" in self.path:
            # X-Auth-Login-URL only for browsers: API clients keep the 401.
            extra = [("X-Auth-Login-URL", login)] if browser else []
            return self.send(401, [("WWW-Authenticate", "Bearer"), ("Set-Cookie", "auth401=1; Path=/")] + extra)
        if browser:
            return self.send(302, [("Location", login), ("Set-Cookie", "auth302=1; Path=/")],
                             b"login\n")
        return self.send(401, [("WWW-Authenticate", "Bearer")])

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = handle_any

ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
EOF

# Assertions on the echo app's JSON answer (stdin). Prints a reason on failure.
cat >"$WORK/check.py" <<'EOF'
import json, sys
want = sys.argv[1]        # "alice" | "empty"
try:
    rec = json.load(sys.stdin)
except Exception as e:
    sys.exit(f"not a JSON answer from the app ({e})")
if rec.get("role") != "app":
    sys.exit(f"answer came from {rec.get('role')!r}, not the app")
hs = rec["headers"]
def norm(k):
    return "".join(c if c.isalnum() else "-" for c in k.lower())
bad = [(k, v) for k, v in hs if "mallory" in v or "evil" in v]
if bad:
    sys.exit(f"spoofed header reached the app: {bad}")
ident = {}
for k, v in hs:
    n = norm(k)
    if n.startswith("x-auth-"):
        if k.lower() != n:
            sys.exit(f"alias spelling reached the app: {k}: {v}")
        if n in ident:
            sys.exit(f"duplicate {k} at the app: {hs}")
        ident[n] = v
if want == "alice":
    exp = {"x-auth-user": "alice", "x-auth-email": "a@x", "x-auth-groups": "admins"}
    if ident != exp:
        sys.exit(f"identity headers at the app {ident}, expected {exp}")
else:
    if any(ident.values()):
        sys.exit(f"public path got identity {ident}")
print(json.dumps(ident))
EOF

# ---------------------------------------------------------------------------
wait_http() {   # wait_http URL EXPECT_REGEX: poll until the status matches
    local i code
    for i in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "${RESOLVE[@]}" "$1" || true)
        if [[ "$code" =~ $2 ]]; then return 0; fi
        sleep 0.1
    done
    return 1
}

start_bg() {    # start_bg LOGFILE CMD...: run in the background, remember the pid
    local log=$1; shift
    "$@" >"$log" 2>&1 &
    PIDS+=($!)
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

last_auth_request() {   # headers of the last /oauth2/auth request the stub got
    python3 - "$D/auth.log" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"/oauth2/auth' in l]
r = recs[-1]
print(r["method"], r["path"], "body_len=%d" % r["body_len"])
for k, v in r["headers"]:
    print(f"    {k}: {v}")
EOF
}

start_proxy() {
    case "$CUR" in
    traefik)
        subst "$HERE/traefik/traefik.yml" "$D/traefik.yml" \
            '":80"' "\"127.0.0.1:$PROXY_PORT\"" \
            /etc/traefik/dynamic.yml "$D/dynamic.yml"
        subst "$HERE/traefik/dynamic.yml" "$D/dynamic.yml" \
            127.0.0.1:4180 "127.0.0.1:$AUTH_PORT" \
            127.0.0.1:8080 "127.0.0.1:$APP_PORT"
        start_bg "$D/proxy.log" traefik --configFile="$D/traefik.yml"
        ;;
    caddy)
        # default_bind keeps the test listener on loopback; not part of the example.
        subst "$HERE/caddy/Caddyfile" "$D/Caddyfile" \
            http://app.example.com "http://app.example.com:$PROXY_PORT" \
            127.0.0.1:4180 "127.0.0.1:$AUTH_PORT" \
            127.0.0.1:8080 "127.0.0.1:$APP_PORT" \
            "admin off" "admin off
	default_bind 127.0.0.1"
        start_bg "$D/proxy.log" env HOME="$D" XDG_DATA_HOME="$D/data" XDG_CONFIG_HOME="$D/cfg" \
            caddy run --config "$D/Caddyfile" --adapter caddyfile
        ;;
    nginx)
        subst "$HERE/nginx/portcullis.conf" "$D/portcullis.conf" \
            "listen 80;" "listen 127.0.0.1:$PROXY_PORT;" \
            127.0.0.1:4180 "127.0.0.1:$AUTH_PORT" \
            127.0.0.1:8080 "127.0.0.1:$APP_PORT"
        mkdir -p "$D/tmp"
        cat >"$D/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $D/nginx.pid;
error_log $D/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $D/tmp/body;
    proxy_temp_path $D/tmp/proxy;
    fastcgi_temp_path $D/tmp/fastcgi;
    uwsgi_temp_path $D/tmp/uwsgi;
    scgi_temp_path $D/tmp/scgi;
    include $D/portcullis.conf;
}
EOF
        start_bg "$D/proxy.log" nginx -p "$D" -c "$D/nginx.conf" -e "$D/error.log"
        ;;
    esac
}

run_proxy() {
    CUR=$1
    D="$WORK/$CUR"
    mkdir -p "$D"
    : >"$D/auth.log"
    AUTH_PORT=$(free_port); APP_PORT=$(free_port); PROXY_PORT=$(free_port)
    while [ "$APP_PORT" = "$AUTH_PORT" ]; do APP_PORT=$(free_port); done
    while [ "$PROXY_PORT" = "$AUTH_PORT" ] || [ "$PROXY_PORT" = "$APP_PORT" ]; do PROXY_PORT=$(free_port); done
    BASE="http://app.example.com:$PROXY_PORT"
    RESOLVE=(--resolve "app.example.com:$PROXY_PORT:127.0.0.1")

    start_bg "$D/stub-auth.log" python3 "$WORK/stubs.py" auth "$AUTH_PORT" "$D/auth.log"
    start_bg "$D/stub-app.log" python3 "$WORK/stubs.py" app "$APP_PORT" "$D/app.log"
    start_proxy

    # Ready when the app route answers through the proxy (public path -> 200).
    if ! wait_http "$BASE/health" '^200$'; then
        fail "proxy did not come up on 127.0.0.1:$PROXY_PORT (see $D/proxy.log)"
        tail -n 20 "$D/proxy.log" "$D/error.log" 2>/dev/null | sed 's/^/    /'
        stop_all
        return
    fi
    ok "started on 127.0.0.1:$PROXY_PORT (auth stub :$AUTH_PORT, app stub :$APP_PORT)"

    local out code loc why
    # 1. Allowed request, identity headers at the app.
    if out=$(curl -sf "${RESOLVE[@]}" -H 'Cookie: ok=1' "$BASE/some/path?x=1" | python3 "$WORK/check.py" alice 2>&1); then
        ok "allowed request reaches the app with $out"
    else
        fail "allowed request: $out"
    fi
    info "forward-auth request received by portcullis:"
    last_auth_request

    # 2. Spoofed identity headers, allowed and public paths.
    local spoof
    for spoof in 'X-Auth-User: mallory' 'x-auth-user: mallory' 'X_Auth_User: mallory' \
                 'x_auth_user: mallory' 'X-Auth_User: mallory' 'X_Auth-User: mallory' \
                 'X.Auth.User: mallory' 'X-AUTH-GROUPS: evil' 'X_AUTH_GROUPS: evil'; do
        if out=$(curl -sf "${RESOLVE[@]}" -H 'Cookie: ok=1' -H "$spoof" "$BASE/some/path" | python3 "$WORK/check.py" alice 2>&1); then
            ok "client '$spoof' does not reach the app (allowed path)"
        else
            fail "client '$spoof' on allowed path: $out"
        fi
        if out=$(curl -sf "${RESOLVE[@]}" -H "$spoof" "$BASE/health" | python3 "$WORK/check.py" empty 2>&1); then
            ok "client '$spoof' does not reach the app (public path, app saw $out)"
        else
            fail "client '$spoof' on public path: $out"
        fi
    done

    # 3. Client-sent X-Forwarded-* / X-Original-* must not steer the check.
    code=$(curl -s -o /dev/null -w '%{http_code}' "${RESOLVE[@]}" \
        -H 'X-Forwarded-Uri: /health' -H 'X-Forwarded-Host: app.example.com' \
        -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Proto: https' \
        -H 'X-Original-URL: http://app.example.com/health' -H 'X-Original-Method: GET' \
        "$BASE/secret")
    if [ "$code" != 200 ]; then
        ok "client X-Forwarded-Uri/X-Original-URL pointing at /health do not bypass the check ($code)"
    else
        fail "client X-Forwarded-Uri/X-Original-URL made /secret public"
    fi
    info "forward-auth request for the spoofing attempt:"
    last_auth_request | grep -iE 'x-(forwarded|original)' || true
    if why=$(python3 - "$D/auth.log" "$BASE/secret" <<'EOF'
import json, sys, urllib.parse as p
r = [json.loads(l) for l in open(sys.argv[1]) if '"/oauth2/auth' in l][-1]
h = {k.lower(): v for k, v in r["headers"]}
real = p.urlsplit(sys.argv[2])
bad = []
if "x-original-url" in h and p.urlsplit(h["x-original-url"])[1:3] != real[1:3]:
    bad.append("X-Original-URL: " + h["x-original-url"])
if "x-forwarded-uri" in h and h["x-forwarded-uri"] != real.path:
    bad.append("X-Forwarded-Uri: " + h["x-forwarded-uri"])
if "x-forwarded-host" in h and h["x-forwarded-host"] != real.netloc:
    bad.append("X-Forwarded-Host: " + h["x-forwarded-host"])
if h.get("x-forwarded-proto", "http") != "http":
    bad.append("X-Forwarded-Proto: " + h["x-forwarded-proto"])
if bad:
    print("; ".join(bad)); sys.exit(1)
EOF
    ); then
        ok "the forward-auth request describes only the real request (client X-Forwarded-*/X-Original-* replaced or removed)"
    else
        fail "client-sent values reached portcullis: $why"
    fi

    # 4. Unauthenticated browser -> /oauth2/start?rd=<original URL>.
    local orig="$BASE/some/dir/page?x=1&y=a%20b&z=%2Fslash"
    read -r code loc < <(curl -s -o /dev/null -w '%{http_code} %{redirect_url}\n' "${RESOLVE[@]}" \
        -H 'Accept: text/html,application/xhtml+xml' "$orig")
    if [ "$code" = 302 ] && why=$(python3 - "$loc" "$orig" "$BASE" <<'EOF'
import sys, urllib.parse as p
loc, orig, base = sys.argv[1:]
u = p.urlsplit(loc)
if f"{u.scheme}://{u.netloc}" != base or u.path != "/oauth2/start":
    sys.exit(f"Location {loc!r} is not {base}/oauth2/start")
rd = p.parse_qs(u.query).get("rd", [])
if rd != [orig]:
    sys.exit(f"rd={rd!r}, expected {orig!r} (Location {loc!r})")
EOF
    ); then
        ok "unauthenticated browser is sent to $loc"
    else
        fail "unauthenticated browser: status $code, ${why:-Location $loc}"
    fi

    # 5. /oauth2/start is routed to portcullis (follow the redirect).
    if [ -n "$loc" ] && out=$(curl -sf "${RESOLVE[@]}" "$loc") && \
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(r["role"]!="auth" or not r["path"].startswith("/oauth2/start?rd="))' "$out"; then
        ok "/oauth2/start is answered by portcullis"
        info "request portcullis received for /oauth2/start:"
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("   ", r["method"], r["path"]); [print(f"    {k}: {v}") for k, v in r["headers"]]' "$out"
    else
        fail "/oauth2/start not routed to portcullis: ${out:-no answer}"
    fi

    # 6. Observations: what reaches the client from the auth answers.
    info "unauthenticated browser, response headers seen by the client:"
    curl -s -o /dev/null -D - "${RESOLVE[@]}" -H 'Accept: text/html' "$BASE/some/path" \
        | grep -iE '^(HTTP|location|set-cookie|www-authenticate|x-auth)' | tr -d '\r' | sed 's/^/    /'
    info "unauthenticated API client (no text/html):"
    curl -s -o /dev/null -D - "${RESOLVE[@]}" "$BASE/api/x" \
        | grep -iE '^(HTTP|location|set-cookie|www-authenticate|x-auth)' | tr -d '\r' | sed 's/^/    /'
    info "relative Location from portcullis (stub answers Location: /oauth2/start?...):"
    curl -s -o /dev/null -D - "${RESOLVE[@]}" -H 'Accept: text/html' "$BASE/relative/x?q=1" \
        | grep -iE '^(HTTP|location)' | tr -d '\r' | sed 's/^/    /'
    info "allowed request, Set-Cookie of the 200 auth answer at the client:"
    curl -s -o /dev/null -D - "${RESOLVE[@]}" -H 'Cookie: ok=1' "$BASE/some/path" \
        | grep -iE '^(HTTP|set-cookie)' | tr -d '\r' | sed 's/^/    /'
    info "403 from portcullis (status, headers, body at the client):"
    curl -s -D - "${RESOLVE[@]}" -H 'Cookie: ok=1' "$BASE/forbidden" \
        | grep -iE '^(HTTP|x-probe|content-type)|forbidden by stub' | tr -d '\r' | sed 's/^/    /'
    info "POST with a body: method and body the forward-auth request carried:"
    curl -s -o /dev/null "${RESOLVE[@]}" -H 'Cookie: ok=1' --data 'a=1&b=2' "$BASE/form"
    last_auth_request | grep -iE '^GET|^POST|x-(forwarded|original)-method|content-(length|type)' | sed 's/^ *//; s/^/    /'

    stop_all
}

for p in "${PROXIES[@]}"; do
    case "$p" in
    traefik|caddy|nginx) command -v "$p" >/dev/null || { CUR=$p; fail "$p not found on PATH"; continue; }
                         run_proxy "$p" ;;
    *) echo "verify: unknown proxy $p" >&2; FAILED=1 ;;
    esac
done

if [ "$FAILED" = 0 ]; then
    echo "verify: ok"
else
    echo "verify: FAILED"
    exit 1
fi
