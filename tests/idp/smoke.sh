#!/usr/bin/env bash
# Smoke test for the test IdP: drives the full authorization-code + PKCE flow
# with curl, plus refresh, userinfo, the test-only endpoints, back-channel and
# RP-initiated logout, id_token_claims, issuer_path and clock skew.
# Exits non-zero on the first failure; prints "smoke: ok" at the end.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
if [ ! -d node_modules/oidc-provider ]; then
  npm ci --no-audit --no-fund >&2
fi

TMP=$(mktemp -d)
IDP_PID=""
RECV_PID=""
cleanup() {
  [ -n "$IDP_PID" ] && kill "$IDP_PID" 2>/dev/null || true
  [ -n "$RECV_PID" ] && kill "$RECV_PID" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
  echo "smoke: FAIL: $*" >&2
  if [ -f "$TMP/idp.err" ]; then
    echo "---- idp stderr (tail) ----" >&2
    tail -n 25 "$TMP/idp.err" >&2
  fi
  exit 1
}
step() { echo "smoke: $*" >&2; }

# jget PATH  <json   -> value at dotted PATH (strings raw, others as JSON)
jget() {
  node -e '
    const o = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const v = process.argv[1].split(".").filter(Boolean).reduce((a, k) => (a == null ? undefined : a[k]), o);
    process.stdout.write(v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v));
  ' -- "$1"
}
# jwt_payload JWT -> payload JSON (no verification)
jwt_payload() {
  node -e 'process.stdout.write(Buffer.from(process.argv[1].split(".")[1], "base64url").toString())' -- "$1"
}
urlenc() { node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' -- "$1"; }
rand() { node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("base64url"))'; }
s256() { node -e 'process.stdout.write(require("crypto").createHash("sha256").update(process.argv[1]).digest("base64url"))' -- "$1"; }
# qparam URL NAME -> query parameter value
qparam() { node -e 'process.stdout.write(new URL(process.argv[1]).searchParams.get(process.argv[2]) ?? "")' -- "$1" "$2"; }

# ---------------------------------------------------------------------------
# Back-channel logout receiver: appends every logout_token to a file.
RECV_LOG="$TMP/logout_tokens"
: >"$RECV_LOG"
node -e '
  const http = require("http"); const fs = require("fs");
  const s = http.createServer((req, res) => {
    let b = ""; req.on("data", (c) => (b += c)); req.on("end", () => {
      const t = new URLSearchParams(b).get("logout_token");
      if (t) fs.appendFileSync(process.argv[1], t + "\n");
      res.writeHead(200); res.end();
    });
  });
  s.listen(0, "127.0.0.1", () => { fs.writeFileSync(process.argv[1] + ".port", String(s.address().port)); });
' -- "$RECV_LOG" &
RECV_PID=$!
for _ in $(seq 50); do [ -s "$RECV_LOG.port" ] && break; sleep 0.1; done
RECV_PORT=$(cat "$RECV_LOG.port")

SECRET="portcullis-test-secret-0123456789"
REDIRECT_URI="http://127.0.0.1:9/cb"
POST_LOGOUT_URI="http://127.0.0.1:9/signed-out"

write_config() { # FILE EXTRA_JSON_MEMBERS
  cat >"$1" <<EOF
{
  "port": 0,
  $2
  "clients": [{
    "client_id": "portcullis",
    "client_secret": "$SECRET",
    "redirect_uris": ["$REDIRECT_URI"],
    "post_logout_redirect_uris": ["$POST_LOGOUT_URI"],
    "token_endpoint_auth_method": "client_secret_basic",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "backchannel_logout_uri": "http://127.0.0.1:$RECV_PORT/oauth2/backchannel_logout",
    "backchannel_logout_session_required": true
  }],
  "users": {
    "alice": {"password": "alice-pw", "email": "alice@example.com", "groups": ["admins", "staff"], "name": "Alice Example"},
    "bob": {"password": "bob-pw", "email": "bob@example.com", "groups": ["staff"]}
  }
}
EOF
}

start_idp() { # CONFIG
  : >"$TMP/idp.out"
  node "$HERE/idp.mjs" "$1" >"$TMP/idp.out" 2>"$TMP/idp.err" &
  IDP_PID=$!
  for _ in $(seq 100); do
    grep -q '^READY ' "$TMP/idp.out" && break
    kill -0 "$IDP_PID" 2>/dev/null || fail "idp exited before READY"
    sleep 0.1
  done
  grep -q '^READY ' "$TMP/idp.out" || fail "no READY line"
  [ "$(wc -l <"$TMP/idp.out")" -eq 1 ] || fail "stdout must hold exactly one line: $(cat "$TMP/idp.out")"
  ISSUER=$(sed -n 's/^READY //p' "$TMP/idp.out")
  ORIGIN=$(node -e 'process.stdout.write(new URL(process.argv[1]).origin)' -- "$ISSUER")
  DISCO=$(curl -fsS "${ISSUER%/}/.well-known/openid-configuration") || fail "discovery"
  [ "$(jget issuer <<<"$DISCO")" = "$ISSUER" ] || fail "discovery issuer $(jget issuer <<<"$DISCO") != $ISSUER"
  AUTH_EP=$(jget authorization_endpoint <<<"$DISCO")
  TOKEN_EP=$(jget token_endpoint <<<"$DISCO")
  USERINFO_EP=$(jget userinfo_endpoint <<<"$DISCO")
  END_SESSION_EP=$(jget end_session_endpoint <<<"$DISCO")
  JWKS_URI=$(jget jwks_uri <<<"$DISCO")
}

stop_idp() {
  kill -TERM "$IDP_PID"
  local rc=0
  wait "$IDP_PID" || rc=$?
  IDP_PID=""
  [ "$rc" -eq 0 ] || fail "idp exit status on SIGTERM was $rc"
}

# GET URL with the cookie jar; sets CODE (status) and LOC (absolute Location)
get() { # JAR URL
  local out
  out=$(curl -sS -o "$TMP/body" -b "$1" -c "$1" -w '%{http_code} %{redirect_url}' "$2") || fail "GET $2"
  CODE=${out%% *}
  LOC=${out#* }
}

# Start an authorization request; sets STATE NONCE VERIFIER and follows the
# redirects until either the interaction page (INTERACTION=url) or the
# client's redirect_uri (CALLBACK=url) is reached.
authorize() { # JAR SCOPE [EXTRA_QUERY]
  STATE=$(rand); NONCE=$(rand); VERIFIER=$(rand)
  local challenge
  challenge=$(s256 "$VERIFIER")
  local url="$AUTH_EP?client_id=portcullis&response_type=code&scope=$(urlenc "$2")&redirect_uri=$(urlenc "$REDIRECT_URI")&state=$STATE&nonce=$NONCE&code_challenge=$challenge&code_challenge_method=S256${3:-}"
  INTERACTION=""; CALLBACK=""
  get "$1" "$url"
  follow "$1"
}

follow() { # JAR  (after a request that set CODE/LOC)
  local hops=0
  while :; do
    case "$CODE" in
      302|303) ;;
      *) fail "expected a redirect, got $CODE: $(head -c 300 "$TMP/body")" ;;
    esac
    if [[ "$LOC" == "$REDIRECT_URI"* ]]; then CALLBACK="$LOC"; return; fi
    if [[ "$LOC" == *"/interaction/"* ]]; then INTERACTION="$LOC"; return; fi
    hops=$((hops + 1)); [ "$hops" -le 5 ] || fail "too many redirects"
    get "$1" "$LOC"
  done
}

login() { # JAR USER PASSWORD  (INTERACTION must be set) -> CALLBACK
  get "$1" "$INTERACTION"
  [ "$CODE" = 200 ] || fail "interaction page status $CODE"
  local path action
  path=$(node -e 'process.stdout.write(new URL(process.argv[1]).pathname)' -- "$INTERACTION")
  action=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' "$TMP/body")
  [ "$action" = "$path/login" ] || fail "form action '$action' != '$path/login'"
  grep -q 'name="login"' "$TMP/body" || fail "no login input"
  grep -q 'name="password"' "$TMP/body" || fail "no password input"
  local out
  out=$(curl -sS -o "$TMP/body" -b "$1" -c "$1" -w '%{http_code} %{redirect_url}' \
    --data-urlencode "login=$2" --data-urlencode "password=$3" "$ORIGIN$action") || fail "POST login"
  CODE=${out%% *}; LOC=${out#* }
  follow "$1"
  [ -n "$CALLBACK" ] || fail "login did not reach the callback (at $INTERACTION)"
}

check_callback() {
  [ "$(qparam "$CALLBACK" state)" = "$STATE" ] || fail "state mismatch in $CALLBACK"
  AUTH_CODE=$(qparam "$CALLBACK" code)
  [ -n "$AUTH_CODE" ] || fail "no code in $CALLBACK"
  [ "$(qparam "$CALLBACK" iss)" = "$ISSUER" ] || fail "iss parameter in callback"
}

redeem() { # -> TOKENS json
  TOKENS=$(curl -sS -u "portcullis:$SECRET" -d grant_type=authorization_code \
    --data-urlencode "code=$AUTH_CODE" --data-urlencode "redirect_uri=$REDIRECT_URI" \
    --data-urlencode "code_verifier=$VERIFIER" "$TOKEN_EP") || fail "token request"
  [ -n "$(jget access_token <<<"$TOKENS")" ] || fail "no access_token: $TOKENS"
  ID_TOKEN=$(jget id_token <<<"$TOKENS")
  [ -n "$ID_TOKEN" ] || fail "no id_token: $TOKENS"
  IDT=$(jwt_payload "$ID_TOKEN")
}

refresh() { # REFRESH_TOKEN -> TOKENS json
  TOKENS=$(curl -sS -u "portcullis:$SECRET" -d grant_type=refresh_token \
    --data-urlencode "refresh_token=$1" "$TOKEN_EP") || fail "refresh request"
}

userinfo() { # ACCESS_TOKEN -> UI json
  UI=$(curl -fsS -H "Authorization: Bearer $1" "$USERINFO_EP") || fail "userinfo request"
}

stat() { curl -fsS "$ORIGIN/__test/stats" | jget "$1"; }

# ---------------------------------------------------------------------------
step "issuer at the root"
write_config "$TMP/root.json" ''
start_idp "$TMP/root.json"
[[ "$ISSUER" =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || fail "issuer '$ISSUER'"
[ "$(jget code_challenge_methods_supported <<<"$DISCO")" = '["S256"]' ] || fail "PKCE methods"
[ "$(jget backchannel_logout_supported <<<"$DISCO")" = true ] || fail "backchannel_logout_supported"

JAR="$TMP/jar1"
authorize "$JAR" "openid profile email groups offline_access"
[ -n "$INTERACTION" ] || fail "no interaction redirect"

step "wrong password"
get "$JAR" "$INTERACTION"
ACTION=$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' "$TMP/body")
BAD=$(curl -sS -o "$TMP/bad" -b "$JAR" -c "$JAR" -w '%{http_code}' \
  --data-urlencode login=alice --data-urlencode password=nope "$ORIGIN$ACTION")
[ "$BAD" = 200 ] || fail "wrong password status $BAD"
grep -q 'Invalid username or password' "$TMP/bad" || fail "wrong password message"
grep -q "action=\"$ACTION\"" "$TMP/bad" || fail "form not re-rendered"
[ "$(stat failed_logins)" = 1 ] || fail "failed_logins"

step "login, code exchange with PKCE"
login "$JAR" alice alice-pw
check_callback
redeem
RT=$(jget refresh_token <<<"$TOKENS")
[ -n "$RT" ] || fail "no refresh_token although offline_access was requested: $TOKENS"
AT=$(jget access_token <<<"$TOKENS")
[ "$(jget sub <<<"$IDT")" = alice ] || fail "sub"
[ "$(jget iss <<<"$IDT")" = "$ISSUER" ] || fail "id_token iss"
[ "$(jget aud <<<"$IDT")" = portcullis ] || fail "id_token aud"
[ "$(jget nonce <<<"$IDT")" = "$NONCE" ] || fail "id_token nonce"
SID=$(jget sid <<<"$IDT")
[ -n "$SID" ] || fail "no sid in id_token: $IDT"
[ -z "$(jget groups <<<"$IDT")" ] || fail "groups must not be in the id_token by default: $IDT"
[ -z "$(jget email <<<"$IDT")" ] || fail "email must not be in the id_token by default"

step "userinfo"
userinfo "$AT"
[ "$(jget sub <<<"$UI")" = alice ] || fail "userinfo sub"
[ "$(jget groups <<<"$UI")" = '["admins","staff"]' ] || fail "userinfo groups: $UI"
[ "$(jget email <<<"$UI")" = alice@example.com ] || fail "userinfo email"
[ "$(jget email_verified <<<"$UI")" = true ] || fail "userinfo email_verified"
[ "$(jget preferred_username <<<"$UI")" = alice ] || fail "userinfo preferred_username"
[ "$(jget name <<<"$UI")" = "Alice Example" ] || fail "userinfo name"

step "refresh"
refresh "$RT"
[ -n "$(jget access_token <<<"$TOKENS")" ] || fail "refresh: $TOKENS"
[ -n "$(jget id_token <<<"$TOKENS")" ] || fail "refresh gave no id_token: $TOKENS"
RT2=$(jget refresh_token <<<"$TOKENS"); [ -n "$RT2" ] && RT=$RT2

step "stats"
STATS=$(curl -fsS "$ORIGIN/__test/stats")
[ "$(jget token.authorization_code <<<"$STATS")" = 1 ] || fail "stats authorization_code: $STATS"
[ "$(jget token_errors.authorization_code <<<"$STATS")" = 0 ] || fail "stats authorization_code errors: $STATS"
[ "$(jget token.refresh_token <<<"$STATS")" = 1 ] || fail "stats refresh_token: $STATS"
[ "$(jget userinfo <<<"$STATS")" = 1 ] || fail "stats userinfo: $STATS"
[ "$(jget logins <<<"$STATS")" = 1 ] || fail "stats logins: $STATS"

step "group change at runtime"
curl -fsS -X POST -H 'content-type: application/json' -d '{"groups":["staff"]}' \
  "$ORIGIN/__test/users/alice" >/dev/null || fail "POST /__test/users/alice"
refresh "$RT"
AT=$(jget access_token <<<"$TOKENS")
[ -n "$AT" ] || fail "refresh after group change: $TOKENS"
RT2=$(jget refresh_token <<<"$TOKENS"); [ -n "$RT2" ] && RT=$RT2
userinfo "$AT"
[ "$(jget groups <<<"$UI")" = '["staff"]' ] || fail "userinfo groups after change: $UI"
[ "$(stat userinfo)" = 2 ] || fail "userinfo count"
[ "$(stat token.refresh_token)" = 2 ] || fail "refresh count"

step "single sign-on: a second authorization skips the login page"
authorize "$JAR" "openid profile email groups"
[ -n "$CALLBACK" ] || fail "expected silent SSO, got interaction $INTERACTION"
check_callback
redeem
[ -z "$(jget refresh_token <<<"$TOKENS")" ] || fail "refresh_token issued without offline_access"
[ "$(jget sid <<<"$IDT")" = "$SID" ] || fail "sid changed within one session"

step "prompt=consent is granted without a page; prompt=none without a session"
authorize "$JAR" "openid groups offline_access" "&prompt=consent"
[ -n "$INTERACTION" ] || fail "prompt=consent should pass through the interaction"
get "$JAR" "$INTERACTION"
[ "$CODE" = 303 ] || fail "consent interaction should redirect, got $CODE"
follow "$JAR"
check_callback
redeem
[ -n "$(jget refresh_token <<<"$TOKENS")" ] || fail "no refresh_token with prompt=consent"
[[ " $(jget scope <<<"$TOKENS") " == *" offline_access "* ]] || fail "offline_access not granted with prompt=consent: $TOKENS"
authorize "$TMP/empty-jar" "openid" "&prompt=none"
[ "$(qparam "$CALLBACK" error)" = login_required ] || fail "prompt=none without session: $CALLBACK"

step "back-channel logout via /__test/backchannel_logout"
SESSIONS=$(curl -fsS "$ORIGIN/__test/sessions")
[ "$(jget 0.user <<<"$SESSIONS")" = alice ] || fail "sessions: $SESSIONS"
BCL=$(curl -fsS -X POST -H 'content-type: application/json' -d '{"user":"alice"}' "$ORIGIN/__test/backchannel_logout")
[ "$(jget sessions <<<"$BCL")" = 1 ] || fail "backchannel sessions: $BCL"
[ "$(jget sent.0.ok <<<"$BCL")" = true ] || fail "backchannel send: $BCL"
[ "$(wc -l <"$RECV_LOG")" -eq 1 ] || fail "receiver got $(wc -l <"$RECV_LOG") logout tokens"
LT=$(tail -n 1 "$RECV_LOG")
node --input-type=module -e '
  import { createRemoteJWKSet, jwtVerify } from "jose";
  const [token, jwks, iss, sid] = process.argv.slice(1);
  const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(jwks)), { issuer: iss, audience: "portcullis", typ: "logout+jwt" });
  if (protectedHeader.alg !== "RS256") throw new Error("alg " + protectedHeader.alg);
  if (payload.sub !== "alice") throw new Error("sub " + payload.sub);
  if (payload.sid !== sid) throw new Error("sid " + payload.sid + " != " + sid);
  if (!payload.events?.["http://schemas.openid.net/event/backchannel-logout"]) throw new Error("events");
  if (payload.nonce !== undefined) throw new Error("nonce present");
' -- "$LT" "$JWKS_URI" "$ISSUER" "$SID" || fail "logout_token verification"
[ "$(curl -fsS "$ORIGIN/__test/sessions")" = "[]" ] || fail "session not removed"
refresh "$RT"
[ "$(jget error <<<"$TOKENS")" = invalid_grant ] || fail "refresh token still valid after back-channel logout: $TOKENS"
authorize "$JAR" "openid"
[ -n "$INTERACTION" ] || fail "login page expected after back-channel logout"

step "RP-initiated logout"
JAR2="$TMP/jar2"
authorize "$JAR2" "openid groups"
login "$JAR2" bob bob-pw
check_callback
redeem
step "code replay is rejected (and revokes the grant)"
REPLAY=$(curl -sS -u "portcullis:$SECRET" -d grant_type=authorization_code \
  --data-urlencode "code=$AUTH_CODE" --data-urlencode "redirect_uri=$REDIRECT_URI" \
  --data-urlencode "code_verifier=$VERIFIER" "$TOKEN_EP")
[ "$(jget error <<<"$REPLAY")" = invalid_grant ] || fail "code replay: $REPLAY"
[ "$(stat token_errors.authorization_code)" = 1 ] || fail "token error count"
get "$JAR2" "$END_SESSION_EP?id_token_hint=$ID_TOKEN&post_logout_redirect_uri=$(urlenc "$POST_LOGOUT_URI")&state=bye"
[ "$CODE" = 200 ] || fail "end_session page status $CODE"
LACTION=$(sed -n 's/.*<form id="op.logoutForm" method="post" action="\([^"]*\)".*/\1/p' "$TMP/body")
XSRF=$(sed -n 's/.*name="xsrf" value="\([^"]*\)".*/\1/p' "$TMP/body")
[ -n "$LACTION" ] && [ -n "$XSRF" ] || fail "logout form: $(cat "$TMP/body")"
grep -q 'name="logout" value="yes"' "$TMP/body" || fail "logout=yes field"
OUT=$(curl -sS -o /dev/null -b "$JAR2" -c "$JAR2" -w '%{http_code} %{redirect_url}' \
  --data-urlencode "xsrf=$XSRF" -d logout=yes "$LACTION")
[ "${OUT%% *}" = 303 ] || fail "logout confirm status $OUT"
[ "${OUT#* }" = "$POST_LOGOUT_URI?state=bye" ] || fail "post logout redirect ${OUT#* }"
[ "$(wc -l <"$RECV_LOG")" -eq 2 ] || fail "no logout_token for the RP-initiated logout"
[ "$(jget sub <<<"$(jwt_payload "$(tail -n 1 "$RECV_LOG")")")" = bob ] || fail "logout token sub"
[ "$(stat end_session)" = 1 ] || fail "end_session count"

step "/__test/jwt signs with the provider key"
JWT=$(curl -fsS -X POST -H 'content-type: application/json' -d '{"claims":{"sub":"svc","groups":["ops"]}}' "$ORIGIN/__test/jwt" | jget token)
node --input-type=module -e '
  import { createRemoteJWKSet, jwtVerify } from "jose";
  const [token, jwks, iss] = process.argv.slice(1);
  const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(jwks)), { issuer: iss, audience: "portcullis" });
  if (payload.sub !== "svc" || payload.groups[0] !== "ops") throw new Error(JSON.stringify(payload));
' -- "$JWT" "$JWKS_URI" "$ISSUER" || fail "/__test/jwt token does not verify"

step "unknown user endpoint, user deletion"
curl -fsS -X DELETE "$ORIGIN/__test/users/bob" >/dev/null || fail "DELETE user"
JAR3="$TMP/jar3"
authorize "$JAR3" "openid"
get "$JAR3" "$INTERACTION"
BAD=$(curl -sS -o "$TMP/bad" -b "$JAR3" -c "$JAR3" -w '%{http_code}' \
  --data-urlencode login=bob --data-urlencode password=bob-pw "$ORIGIN$(sed -n 's/.*action="\([^"]*\/login\)".*/\1/p' "$TMP/body")")
grep -q 'Invalid username or password' "$TMP/bad" || fail "deleted user could log in"
stop_idp

# ---------------------------------------------------------------------------
step "issuer_path, id_token_claims, clock skew, ttl"
write_config "$TMP/path.json" '"issuer_path": "/application/o/portcullis/", "id_token_claims": true, "clock_skew_seconds": 3600, "ttl": {"IdToken": 120, "AccessToken": 60}, "pkce_required": true, "rotate_refresh_token": true, "claims": {"roles": ["realm_access"]},'
start_idp "$TMP/path.json"
[[ "$ISSUER" =~ ^http://127\.0\.0\.1:[0-9]+/application/o/portcullis/$ ]] || fail "issuer '$ISSUER'"
[[ "$AUTH_EP" == "${ISSUER}auth" ]] || fail "authorization_endpoint $AUTH_EP"
DATE=$(curl -sS -D - -o /dev/null "${ISSUER}.well-known/openid-configuration" | sed -n 's/^[Dd]ate: //p' | tr -d '\r')
SKEW=$(node -e 'process.stdout.write(String(Math.round((Date.parse(process.argv[1]) - Date.now()) / 1000)))' -- "$DATE")
[ "$SKEW" -ge 3590 ] && [ "$SKEW" -le 3610 ] || fail "Date header skew $SKEW s"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$ORIGIN/.well-known/openid-configuration")" = 404 ] || fail "provider must not answer outside issuer_path"

NOPKCE=$(curl -sS -o /dev/null -w '%{redirect_url}' "$AUTH_EP?client_id=portcullis&response_type=code&scope=openid&redirect_uri=$(urlenc "$REDIRECT_URI")&state=s1")
[[ "$NOPKCE" == "$REDIRECT_URI"*"error=invalid_request"* ]] || fail "pkce_required: $NOPKCE"
curl -fsS -X POST -H 'content-type: application/json' -d '{"claims":{"realm_access":{"roles":["r1"]}}}' \
  "$ORIGIN/__test/users/alice" >/dev/null || fail "set extra claims"
JAR4="$TMP/jar4"
authorize "$JAR4" "openid profile email groups roles offline_access"
[[ "$INTERACTION" == "$ORIGIN/application/o/portcullis/interaction/"* ]] || fail "interaction url $INTERACTION"
login "$JAR4" alice alice-pw
check_callback
redeem
[ "$(jget iss <<<"$IDT")" = "$ISSUER" ] || fail "id_token iss with issuer_path"
[ "$(jget groups <<<"$IDT")" = '["admins","staff"]' ] || fail "groups in id_token with id_token_claims: $IDT"
[ "$(jget email <<<"$IDT")" = alice@example.com ] || fail "email in id_token with id_token_claims"
[ "$(jget realm_access.roles <<<"$IDT")" = '["r1"]' ] || fail "custom scope claim in id_token: $IDT"
[ "$(( $(jget exp <<<"$IDT") - $(jget iat <<<"$IDT") ))" = 120 ] || fail "IdToken ttl"
[ "$(jget expires_in <<<"$TOKENS")" = 60 ] || fail "AccessToken ttl: $TOKENS"
RT=$(jget refresh_token <<<"$TOKENS")
[ -n "$RT" ] || fail "no refresh token with issuer_path"
curl -fsS -X POST -H 'content-type: application/json' -d '{"groups":["viewers"]}' \
  "${ISSUER}__test/users/alice" >/dev/null || fail "test endpoint under issuer_path"
refresh "$RT"
RT_NEW=$(jget refresh_token <<<"$TOKENS")
[ -n "$RT_NEW" ] && [ "$RT_NEW" != "$RT" ] || fail "refresh token not rotated: $TOKENS"
NEW_IDT=$(jwt_payload "$(jget id_token <<<"$TOKENS")")
[ "$(jget groups <<<"$NEW_IDT")" = '["viewers"]' ] || fail "refreshed id_token groups: $NEW_IDT"
userinfo "$(jget access_token <<<"$TOKENS")"
[ "$(jget groups <<<"$UI")" = '["viewers"]' ] || fail "userinfo groups with issuer_path"
[ "$(stat token.refresh_token)" = 1 ] || fail "stats with issuer_path"
refresh "$RT"
[ "$(jget error <<<"$TOKENS")" = invalid_grant ] || fail "reuse of a rotated refresh token: $TOKENS"
refresh "$RT_NEW"
[ "$(jget error <<<"$TOKENS")" = invalid_grant ] || fail "reuse detection must revoke the grant: $TOKENS"
stop_idp

echo "smoke: ok"
