#!/usr/bin/env node
// Test OpenID Connect provider for portcullis end-to-end tests.
//
// Runs the OpenID-certified `oidc-provider` package with an in-memory store,
// a custom login page (no consent page: every requested scope and claim is
// granted), RP-initiated and back-channel logout, and a few test-only
// endpoints under /__test/ to inspect and steer it at runtime.
//
//   node idp.mjs CONFIG.json
//
// stdout carries exactly one line, `READY <issuer>`, once the listener is up.
// Everything else goes to stderr. See README.md for the config format.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import {
  generateKeyPairSync, randomBytes, randomUUID, sign as cryptoSign,
} from 'node:crypto';

// oidc-provider prints notices with console.info; stdout is reserved for the
// READY line, so route all console output to stderr before loading it.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const { default: Provider, errors: oidcErrors } = await import('oidc-provider');
const { default: MemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js');

function log(...args) {
  console.error('[idp]', ...args);
}

// ---------------------------------------------------------------- config ---

if (process.argv.length < 3) {
  console.error('usage: node idp.mjs CONFIG.json');
  process.exit(2);
}

let cfg;
try {
  cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
} catch (err) {
  console.error(`idp: cannot read config ${process.argv[2]}: ${err.message}`);
  process.exit(2);
}

const port = Number(cfg.port ?? 0);
const issuerPath = cfg.issuer_path ?? '';
if (issuerPath && !issuerPath.startsWith('/')) {
  console.error('idp: issuer_path must start with "/"');
  process.exit(2);
}
// Path prefix under which the provider, the interaction pages and (also) the
// test endpoints are served; no trailing slash ('' when mounted at the root).
const mount = issuerPath.replace(/\/+$/, '');
const users = structuredClone(cfg.users ?? {});
const clients = structuredClone(cfg.clients ?? []);
const idTokenClaims = cfg.id_token_claims === true;
const skewMs = Number(cfg.clock_skew_seconds ?? 0) * 1000;
const ttlOverrides = cfg.ttl ?? {};
// Optional: { "resource": URI, "audience": AUD } makes the client_credentials
// grant issue RFC 9068 JWT access tokens (typ at+jwt) for that audience.
const jwtAccessTokens = cfg.jwt_access_tokens ?? null;
// Deliberately broken set-ups, for `portcullis check` tests (see README.md).
const emptyJwks = cfg.empty_jwks === true;
const noGroupsScope = cfg.no_groups_scope === true;
const noGroupsClaim = cfg.no_groups_claim === true;
const tlsFiles = cfg.tls ?? null;
// The whole provider's clock runs this many seconds ahead (token iat/exp too).
const clockAheadMs = Number(cfg.clock_ahead_seconds ?? 0) * 1000;
if (clockAheadMs) {
  const realNow = Date.now;
  Date.now = () => realNow() + clockAheadMs;
}

// ---------------------------------------------------------------- store ----

// A plain Map with per-entry expiry, handed to oidc-provider's memory adapter
// so that sessions can be enumerated (back-channel logout by user name).
class Store {
  #m = new Map();

  get(key) {
    const e = this.#m.get(key);
    if (!e) return undefined;
    if (e.exp && e.exp <= Date.now()) {
      this.#m.delete(key);
      return undefined;
    }
    return e.v;
  }

  set(key, v, opts) {
    const exp = opts?.maxAge ? Date.now() + opts.maxAge : 0;
    this.#m.set(key, { v, exp });
  }

  delete(key) {
    this.#m.delete(key);
  }

  * entries(prefix) {
    for (const key of [...this.#m.keys()]) {
      if (key.startsWith(prefix)) {
        const v = this.get(key);
        if (v !== undefined) yield [key.slice(prefix.length), v];
      }
    }
  }
}

const store = new Store();

// ---------------------------------------------------------------- stats ----

function freshStats() {
  return {
    token: { authorization_code: 0, refresh_token: 0 },
    token_errors: { authorization_code: 0, refresh_token: 0 },
    userinfo: 0,
    userinfo_errors: 0,
    authorization: 0,
    logins: 0,
    failed_logins: 0,
    end_session: 0,
    revocation: 0,
    backchannel_logout_sent: 0,
    backchannel_logout_failed: 0,
    token_delayed: 0,
    discovery: 0,
    jwks: 0,
  };
}
// Milliseconds every token request waits before it is handled (POST /__test/token_delay).
let tokenDelayMs = 0;
let stats = freshStats();

// Authorization codes (by jti) and pending interactions (by uid) whose
// request asked for offline_access. oidc-provider drops offline_access from
// the request unless prompt=consent is present; this IdP has no consent page,
// so it remembers the request and issues a refresh token anyway (see
// issueRefreshToken below).
const offlineCodes = new Set();
const offlineInteractions = new Set();

// ------------------------------------------------------------ accounts -----

function accountClaims(id) {
  const u = users[id];
  if (!u) return undefined;
  return {
    sub: id,
    preferred_username: id,
    name: u.name ?? id,
    ...(u.email !== undefined ? { email: u.email, email_verified: u.email_verified ?? true } : {}),
    ...(noGroupsClaim ? {} : { groups: u.groups ?? [] }),
    ...(u.claims ?? {}),
  };
}

async function findAccount(_ctx, id) {
  if (!users[id]) return undefined;
  return {
    accountId: id,
    async claims() {
      return accountClaims(id) ?? { sub: id };
    },
  };
}

// Grant every requested OIDC scope and claim (there is no consent page).
function grantRequested(grant, scope, claimsParam) {
  grant.addOIDCScope(scope || 'openid');
  if (claimsParam) {
    try {
      const c = typeof claimsParam === 'string' ? JSON.parse(claimsParam) : claimsParam;
      const names = new Set([...Object.keys(c.id_token ?? {}), ...Object.keys(c.userinfo ?? {})]);
      if (names.size) grant.addOIDCClaims([...names]);
    } catch {
      // malformed claims parameters are rejected by the provider itself
    }
  }
}

// ------------------------------------------------------------- provider ----

function htmlEscape(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

function ttlFor(name, fallback) {
  const v = ttlOverrides[name];
  return v === undefined ? fallback : Number(v);
}

// Kept across key rotations (POST /__test/rotate_keys), so browser sessions
// at the IdP survive them.
const cookieKeys = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];

// The provider's signing key, also used by POST /__test/jwt.
let signingKey;
let signingKid;
let issuerUrl;

function buildProvider(issuer) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  signingKey = privateKey;
  signingKid = `idp-${randomUUID().slice(0, 8)}`;
  issuerUrl = issuer;
  const jwk = {
    ...privateKey.export({ format: 'jwk' }),
    kid: signingKid,
    alg: 'RS256',
    use: 'sig',
  };

  const claims = {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
    ...(cfg.claims ?? {}),
  };
  if (noGroupsScope) delete claims.groups;

  const configuration = {
    adapter: (model) => new MemoryAdapter(model, store),
    clients,
    jwks: { keys: [jwk] },
    cookies: { keys: cookieKeys },
    findAccount,
    claims,
    scopes: ['openid', 'offline_access', 'profile', 'email', ...(noGroupsScope ? [] : ['groups'])],
    conformIdTokenClaims: !idTokenClaims,
    pkce: cfg.pkce_required === undefined ? undefined : { required: () => cfg.pkce_required === true },
    ttl: {
      AccessToken: ttlFor('AccessToken', 3600),
      AuthorizationCode: ttlFor('AuthorizationCode', 60),
      IdToken: ttlFor('IdToken', 3600),
      RefreshToken: ttlFor('RefreshToken', 14 * 24 * 3600),
      Session: ttlFor('Session', 14 * 24 * 3600),
      Grant: ttlFor('Grant', 14 * 24 * 3600),
      Interaction: ttlFor('Interaction', 3600),
    },
    features: {
      ...jwtAccessTokenFeatures(),
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      claimsParameter: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // The confirmation form carries two fields, `xsrf` and `logout=yes`;
        // a script can post them as they are to the form's action.
        async logoutSource(ctx, form) {
          const withLogout = form.replace(
            '</form>',
            '<input type="hidden" name="logout" value="yes"/><button type="submit">Sign out</button></form>',
          );
          ctx.type = 'html';
          ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign out</title></head>
<body><h1>Sign out</h1>${withLogout}
<script>document.getElementById('op.logoutForm').submit()</script></body></html>`;
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Signed out</title></head><body><h1>Signed out</h1></body></html>';
        },
      },
    },
    interactions: {
      url: (_ctx, interaction) => `${mount}/interaction/${interaction.uid}`,
    },
    // No consent page: any client the user signs in to gets every scope and
    // claim it asks for, also on later silent (SSO) authorizations.
    async loadExistingGrant(ctx) {
      const { client, session, params } = ctx.oidc;
      if (!session.accountId) return undefined;
      const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      if (grant && grant.accountId !== session.accountId) grant = undefined;
      if (!grant) {
        grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      }
      grantRequested(grant, params.scope, params.claims);
      await grant.save();
      return grant;
    },
    async expiresWithSession(ctx, code) {
      const offline = code.scopes.has('offline_access') || ctx.state?.offlineRequested === true;
      return !offline;
    },
    async issueRefreshToken(_ctx, client, code) {
      if (!client.grantTypeAllowed('refresh_token')) return false;
      return code.scopes.has('offline_access') || offlineCodes.has(code.jti);
    },
    async renderError(ctx, out, error) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Error</title></head><body>
<h1>oops! something went wrong</h1>
<pre id="error">${htmlEscape(out.error)}</pre>
<pre id="error_description">${htmlEscape(out.error_description ?? '')}</pre></body></html>`;
      log('render error:', out.error, out.error_description ?? '', error?.error_detail ?? '');
    },
    // Back-channel logout tokens go to 127.0.0.1 in tests; oidc-provider's
    // fetch refuses loopback addresses by default, so use the plain fetch.
    fetch: (url, options) => {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
  };
  if (configuration.pkce === undefined) delete configuration.pkce;
  if (typeof cfg.rotate_refresh_token === 'boolean') {
    configuration.rotateRefreshToken = cfg.rotate_refresh_token;
  }

  const provider = new Provider(issuer, configuration);

  // Count requests per endpoint and remember offline_access requests.
  provider.use(async (ctx, next) => {
    const p = ctx.path;
    let requestedOffline = false;
    if (p === '/auth') {
      const scope = String(ctx.query.scope ?? '');
      requestedOffline = scope.split(' ').includes('offline_access');
    } else if (p.startsWith('/auth/')) {
      const uid = p.slice('/auth/'.length);
      requestedOffline = offlineInteractions.has(uid);
      offlineInteractions.delete(uid);
    }
    ctx.state.offlineRequested = requestedOffline;

    await next();

    const route = ctx.oidc?.route;
    const failed = ctx.status >= 400 || (ctx.body && typeof ctx.body === 'object' && 'error' in ctx.body);
    if (route === 'token') {
      const gt = ctx.oidc.params?.grant_type ?? ctx.oidc.body?.grant_type ?? 'unknown';
      stats.token[gt] = (stats.token[gt] ?? 0) + 1;
      if (failed) stats.token_errors[gt] = (stats.token_errors[gt] ?? 0) + 1;
    } else if (route === 'userinfo') {
      stats.userinfo += 1;
      if (failed) stats.userinfo_errors += 1;
    } else if (route === 'authorization') {
      stats.authorization += 1;
    } else if (route === 'end_session_confirm') {
      stats.end_session += 1;
    } else if (route === 'revocation') {
      stats.revocation += 1;
    }

    if (requestedOffline && ctx.oidc) {
      const code = ctx.oidc.entities.AuthorizationCode;
      const interaction = ctx.oidc.entities.Interaction;
      if (code?.jti) {
        offlineCodes.add(code.jti);
      } else if (interaction?.uid && interaction.uid !== p.slice('/auth/'.length)) {
        offlineInteractions.add(interaction.uid);
      }
    }
  });

  provider.on('server_error', (_ctx, err) => log('server_error:', err));
  provider.on('grant.error', (_ctx, err) => log('token endpoint error:', err.message, err.error_description ?? '', err.error_detail ?? ''));
  provider.on('authorization.error', (_ctx, err) => log('authorization error:', err.message, err.error_description ?? '', err.error_detail ?? ''));
  provider.on('userinfo.error', (_ctx, err) => log('userinfo error:', err.message, err.error_description ?? ''));
  provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
    stats.backchannel_logout_sent += 1;
    log(`back-channel logout sent to ${client.clientId} for ${accountId} sid=${sid}`);
  });
  provider.on('backchannel.error', (_ctx, err, client, accountId, sid) => {
    stats.backchannel_logout_failed += 1;
    log(`back-channel logout to ${client.clientId} for ${accountId} sid=${sid} failed: ${err.message}`);
  });

  return provider;
}

// ------------------------------------------------------------- helpers -----

function readBody(req, limit = 1 << 20) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

function sendJson(res, status, obj) {
  send(res, status, 'application/json', `${JSON.stringify(obj)}\n`);
}

function loginPage(uid, { error, login } = {}) {
  const action = `${mount}/interaction/${uid}/login`;
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in</h1>
${error ? `<p class="error">${htmlEscape(error)}</p>` : ''}
<form method="post" action="${htmlEscape(action)}">
<input type="text" name="login" value="${htmlEscape(login ?? '')}" autofocus>
<input type="password" name="password">
<button type="submit">Sign in</button>
</form>
</body></html>
`;
}

// ---------------------------------------------------------- interactions ---

let provider;

async function finishWithGrant(req, res, details, accountId, withLogin) {
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (grant && grant.accountId !== accountId) grant = undefined;
  if (!grant) {
    grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  }
  grantRequested(grant, details.params.scope, details.params.claims);
  const grantId = await grant.save();
  const result = { consent: { grantId } };
  if (withLogin) result.login = { accountId };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

async function interactionGet(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new oidcErrors.SessionNotFound('interaction uid mismatch');
  if (details.prompt.name === 'login') {
    send(res, 200, 'text/html; charset=utf-8', loginPage(uid, { login: details.params.login_hint }));
    return;
  }
  // consent (or any other prompt) for an already signed-in user: grant it all.
  const accountId = details.session?.accountId;
  if (!accountId) {
    send(res, 200, 'text/html; charset=utf-8', loginPage(uid));
    return;
  }
  await finishWithGrant(req, res, details, accountId, false);
}

async function interactionLogin(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new oidcErrors.SessionNotFound('interaction uid mismatch');
  const form = new URLSearchParams(await readBody(req));
  const login = form.get('login') ?? '';
  const password = form.get('password') ?? '';
  const user = Object.hasOwn(users, login) ? users[login] : undefined;
  if (!user || typeof user.password !== 'string' || user.password !== password) {
    stats.failed_logins += 1;
    log(`login failed for ${JSON.stringify(login)}`);
    send(res, 200, 'text/html; charset=utf-8', loginPage(uid, { error: 'Invalid username or password', login }));
    return;
  }
  stats.logins += 1;
  log(`login ok for ${login}`);
  await finishWithGrant(req, res, details, login, true);
}

// ---------------------------------------------------------- test routes ----

function listSessions() {
  const out = [];
  for (const [id, s] of store.entries('Session:')) {
    if (!s.accountId) continue;
    const clientsOut = Object.entries(s.authorizations ?? {}).map(([clientId, a]) => ({
      client_id: clientId, sid: a.sid, grant_id: a.grantId,
    }));
    out.push({ id, uid: s.uid, user: s.accountId, clients: clientsOut });
  }
  return out;
}

async function backchannelLogout(body) {
  const sessions = listSessions().filter((s) => (body.user !== undefined && s.user === body.user)
    || (body.sid !== undefined && s.clients.some((c) => c.sid === body.sid)));
  const revoke = body.revoke_tokens !== false;
  const sent = [];
  for (const s of sessions) {
    for (const c of s.clients) {
      const client = await provider.Client.find(c.client_id);
      if (client?.backchannelLogoutUri) {
        const entry = { client_id: c.client_id, uri: client.backchannelLogoutUri, sub: s.user, sid: c.sid };
        try {
          await client.backchannelLogout(s.user, c.sid);
          entry.ok = true;
          stats.backchannel_logout_sent += 1;
        } catch (err) {
          entry.ok = false;
          entry.error = err.message;
          stats.backchannel_logout_failed += 1;
        }
        log(`back-channel logout to ${c.client_id} for ${s.user} sid=${c.sid}: ${entry.ok ? 'ok' : entry.error}`);
        sent.push(entry);
      }
      if (revoke && c.grant_id) {
        await new MemoryAdapter('AccessToken', store).revokeByGrantId(c.grant_id);
        await new MemoryAdapter('Grant', store).destroy(c.grant_id);
      }
    }
    await new MemoryAdapter('Session', store).destroy(s.id);
  }
  return { sessions: sessions.length, sent };
}

// client_credentials with JWT access tokens for one resource server, when
// configured; the authorization-code flow keeps its opaque access tokens.
function jwtAccessTokenFeatures() {
  if (!jwtAccessTokens) return {};
  const { resource, audience } = jwtAccessTokens;
  return {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx) => (ctx.oidc.params?.grant_type === 'client_credentials' ? resource : undefined),
      useGrantedResource: () => false,
      getResourceServerInfo(_ctx, indicator) {
        if (indicator !== resource) throw new oidcErrors.InvalidTarget();
        return { scope: 'api', audience, accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: { alg: 'RS256' } } };
      },
    },
  };
}

// Sign arbitrary claims with the provider's RS256 key (bearer-token tests).
function signJwt(body) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'RS256', typ: 'JWT', kid: signingKid, ...(body.header ?? {}) };
  const payload = {
    iss: issuerUrl,
    aud: clients[0]?.client_id,
    iat: now,
    exp: now + 300,
    ...(body.claims ?? {}),
  };
  for (const [k, v] of Object.entries(payload)) if (v === null) delete payload[k];
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc(header)}.${enc(payload)}`;
  const sig = cryptoSign('sha256', Buffer.from(input), signingKey).toString('base64url');
  return `${input}.${sig}`;
}

async function readJson(req, res) {
  try {
    const v = JSON.parse((await readBody(req)) || '{}');
    if (v && typeof v === 'object' && !Array.isArray(v)) return v;
  } catch {
    // fall through
  }
  sendJson(res, 400, { error: 'body must be a JSON object' });
  return undefined;
}

async function testRoute(req, res, path) {
  const method = req.method;
  if (path === '/__test/stats' && method === 'GET') {
    sendJson(res, 200, stats);
    return;
  }
  if (path === '/__test/stats/reset' && method === 'POST') {
    stats = freshStats();
    sendJson(res, 200, stats);
    return;
  }
  if (path === '/__test/sessions' && method === 'GET') {
    sendJson(res, 200, listSessions());
    return;
  }
  const m = path.match(/^\/__test\/users\/([^/]+)$/);
  if (m) {
    const name = decodeURIComponent(m[1]);
    if (method === 'GET') {
      if (!Object.hasOwn(users, name)) sendJson(res, 404, { error: 'no such user' });
      else sendJson(res, 200, users[name]);
      return;
    }
    if (method === 'POST' || method === 'PUT') {
      let patch;
      try {
        patch = JSON.parse((await readBody(req)) || '{}');
      } catch {
        sendJson(res, 400, { error: 'body must be JSON' });
        return;
      }
      if (!patch || typeof patch !== 'object' || Array.isArray(patch)) {
        sendJson(res, 400, { error: 'body must be a JSON object' });
        return;
      }
      users[name] = { ...(Object.hasOwn(users, name) ? users[name] : {}), ...patch };
      log(`user ${name} updated: ${Object.keys(patch).join(', ')}`);
      sendJson(res, 200, users[name]);
      return;
    }
    if (method === 'DELETE') {
      const existed = Object.hasOwn(users, name);
      delete users[name];
      sendJson(res, existed ? 200 : 404, { deleted: existed });
      return;
    }
  }
  if (path === '/__test/jwt' && method === 'POST') {
    const body = await readJson(req, res);
    if (body) sendJson(res, 200, { token: signJwt(body) });
    return;
  }
  if (path === '/__test/rotate_keys' && method === 'POST') {
    // A new provider over the same store, clients and cookie keys, with a
    // fresh signing key: the old kid disappears from the JWKS.
    const old = signingKid;
    provider = buildProvider(issuerUrl);
    providerCallback = provider.callback();
    log(`signing key rotated: ${old} -> ${signingKid}`);
    sendJson(res, 200, { old_kid: old, kid: signingKid });
    return;
  }
  if (path === '/__test/token_delay' && method === 'POST') {
    const body = await readJson(req, res);
    if (!body) return;
    tokenDelayMs = Math.max(0, Number(body.ms ?? 0));
    log(`token requests now wait ${tokenDelayMs}ms`);
    sendJson(res, 200, { ms: tokenDelayMs });
    return;
  }
  if (path === '/__test/backchannel_logout' && method === 'POST') {
    let body;
    try {
      body = JSON.parse((await readBody(req)) || '{}');
    } catch {
      sendJson(res, 400, { error: 'body must be JSON' });
      return;
    }
    if (body.user === undefined && body.sid === undefined) {
      sendJson(res, 400, { error: 'give "user" or "sid"' });
      return;
    }
    sendJson(res, 200, await backchannelLogout(body));
    return;
  }
  sendJson(res, 404, { error: 'unknown test endpoint' });
}

// --------------------------------------------------------------- server ----

let providerCallback;

async function handle(req, res) {
  if (skewMs) res.setHeader('Date', new Date(Date.now() + skewMs).toUTCString());
  const started = Date.now();
  res.on('finish', () => {
    log(`${req.method} ${req.url.split('?')[0]} -> ${res.statusCode} (${Date.now() - started}ms)`);
  });

  const url = new URL(req.url, 'http://127.0.0.1');
  let path = url.pathname;

  if (path.startsWith('/__test/')) {
    await testRoute(req, res, path);
    return;
  }

  let rest = req.url;
  if (mount) {
    if (path !== mount && !path.startsWith(`${mount}/`)) {
      sendJson(res, 404, { error: 'not found', issuer_path: issuerPath });
      return;
    }
    path = path.slice(mount.length) || '/';
    rest = req.url.slice(mount.length);
    if (!rest.startsWith('/')) rest = `/${rest}`;
  }

  if (path.startsWith('/__test/')) {
    await testRoute(req, res, path);
    return;
  }

  if (req.method === 'GET' && path === '/.well-known/openid-configuration') stats.discovery += 1;
  if (req.method === 'GET' && path === '/jwks') stats.jwks += 1;

  if (emptyJwks && path === '/jwks') {
    send(res, 200, 'application/jwk-set+json', '{"keys":[]}');
    return;
  }

  let m = path.match(/^\/interaction\/([^/]+)$/);
  if (m && req.method === 'GET') {
    await interactionGet(req, res, m[1]);
    return;
  }
  m = path.match(/^\/interaction\/([^/]+)\/login$/);
  if (m && req.method === 'POST') {
    await interactionLogin(req, res, m[1]);
    return;
  }

  if (tokenDelayMs > 0 && path === '/token' && req.method === 'POST') {
    stats.token_delayed += 1;
    await new Promise((resolve) => { setTimeout(resolve, tokenDelayMs); });
  }

  if (mount) {
    req.originalUrl = req.url;
    req.url = rest;
  }
  await providerCallback(req, res);
}

const onRequest = (req, res) => {
  handle(req, res).catch((err) => {
    const known = err instanceof oidcErrors.OIDCProviderError;
    if (!known) log('handler error:', err);
    else log('request error:', err.message, err.error_description ?? '');
    if (!res.headersSent) {
      const status = known ? (err.statusCode ?? 400) : 500;
      send(res, status, 'text/html; charset=utf-8',
        `<!DOCTYPE html><html><body><h1>error</h1><pre id="error">${htmlEscape(err.error ?? 'server_error')}</pre><pre id="error_description">${htmlEscape(err.error_description ?? err.message)}</pre></body></html>`);
    } else {
      res.destroy();
    }
  });
};
const server = tlsFiles
  ? https.createServer({ cert: readFileSync(tlsFiles.cert), key: readFileSync(tlsFiles.key) }, onRequest)
  : http.createServer(onRequest);

server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  const issuer = `${tlsFiles ? 'https' : 'http'}://127.0.0.1:${actual}${issuerPath}`;
  try {
    provider = buildProvider(issuer);
  } catch (err) {
    console.error('idp: invalid configuration:', err);
    process.exit(2);
  }
  providerCallback = provider.callback();
  log(`issuer ${issuer}; clients: ${clients.map((c) => c.client_id).join(', ')}; users: ${Object.keys(users).join(', ')}`);
  process.stdout.write(`READY ${issuer}\n`);
});

server.on('error', (err) => {
  console.error('idp: listen failed:', err.message);
  process.exit(1);
});

function shutdown(sig) {
  log(`${sig}: shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
