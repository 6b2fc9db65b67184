// A tiny OpenID provider for the console's single sign-on tests: discovery,
// keys, a login page and a token endpoint, on node:http, with nothing from
// npm. It implements the authorization code flow with PKCE (S256 only) for
// confidential clients, and signs ID tokens with RS256 using node:crypto.
//
//   const idp = await startIdp({
//     hostname: 'localhost',
//     clients: [{ id: 'warden-console', secret: 's3cret', redirectUris: [callback] }],
//     users: { fiona: { groups: ['finance'] } },
//   });
//   ... idp.issuer ...
//   await idp.stop();
//
// It listens on 127.0.0.1 only. Its URLs (and its issuer) name `hostname`,
// which may be 'localhost' so that its pages are another site than a server
// at 127.0.0.1: the browser then treats the return to that server as a
// cross-site navigation, as it would with a real provider.
//
// What the provider saw is kept for the test to check: every authorization
// request (authorizations), every token request and its outcome
// (tokenRequests), and every ID token it issued (issued).

import { createHash, generateKeyPairSync, randomBytes, sign, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';

const codeTtlMs = 60_000;
const idTokenTtlS = 5 * 60;
const maxBody = 64 << 10;

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

function randomToken() {
  return b64url(randomBytes(32));
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function sameSecret(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A compact JWS of payload, RS256 with privateKey, naming kid. */
export function signJwt(payload, privateKey, kid) {
  const header = { alg: 'RS256', typ: 'JWT', kid };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  // RSASSA-PKCS1-v1_5 with SHA-256: node's default padding for an RSA key.
  return `${input}.${b64url(sign('sha256', Buffer.from(input), privateKey))}`;
}

/**
 * Starts the provider on 127.0.0.1 at a free port. The caller must await
 * stop().
 *
 * @param {object} options
 * @param {string} [options.hostname] the host its URLs name: '127.0.0.1' (default) or 'localhost'
 * @param {Array<{id: string, secret: string, redirectUris: string[]}>} options.clients
 * @param {Record<string, {groups?: string[], name?: string, email?: string}>} options.users
 *   who may log in, by username (their sub)
 */
export async function startIdp({ hostname = '127.0.0.1', clients, users }) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `test-${randomToken().slice(0, 8)}`;
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

  const codes = new Map(); // code -> what it was issued for
  const authorizations = [];
  const tokenRequests = [];
  const issued = [];
  let issuer; // set once listening

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: err.message });
      else res.destroy(err);
    });
  });

  async function handle(req, res) {
    const url = new URL(req.url, issuer);
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /.well-known/openid-configuration':
        return sendJson(res, 200, {
          issuer,
          authorization_endpoint: `${issuer}/authorize`,
          token_endpoint: `${issuer}/token`,
          jwks_uri: `${issuer}/jwks`,
          scopes_supported: ['openid', 'profile', 'email', 'groups'],
          response_types_supported: ['code'],
          grant_types_supported: ['authorization_code'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
          code_challenge_methods_supported: ['S256'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
          claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'nonce', 'name', 'email', 'groups'],
        });
      case 'GET /jwks':
        return sendJson(res, 200, { keys: [jwk] });
      case 'GET /authorize':
        return authorize(url.searchParams, res);
      case 'POST /authorize':
        return login(new URLSearchParams(await readBody(req)), res);
      case 'POST /token':
        return token(req, new URLSearchParams(await readBody(req)), res);
    }
    sendText(res, 404, `${route}: not found`);
  }

  /** The authorization request's own errors: those it may not redirect with. */
  function checkClient(params) {
    const client = clients.find((c) => c.id === params.get('client_id'));
    if (!client) return { error: `unknown client_id ${JSON.stringify(params.get('client_id'))}` };
    if (!client.redirectUris.includes(params.get('redirect_uri'))) {
      return { error: `redirect_uri ${JSON.stringify(params.get('redirect_uri'))} is not registered for ${client.id}` };
    }
    return { client };
  }

  /** The request's errors that go back to the client, as an OAuth error code and description. */
  function checkRequest(params) {
    if (params.get('response_type') !== 'code') return ['unsupported_response_type', 'response_type must be code'];
    if (!(params.get('scope') ?? '').split(' ').includes('openid')) return ['invalid_scope', 'scope lacks openid'];
    if (params.get('code_challenge_method') !== 'S256') {
      return ['invalid_request', 'code_challenge_method must be S256'];
    }
    if (!/^[A-Za-z0-9_-]{43}$/.test(params.get('code_challenge') ?? '')) {
      return ['invalid_request', 'code_challenge must be a base64url SHA-256'];
    }
    if (!params.get('nonce')) return ['invalid_request', 'nonce is required'];
    return null;
  }

  function redirectBack(res, params, query) {
    const to = new URL(params.get('redirect_uri'));
    for (const [k, v] of Object.entries(query)) to.searchParams.set(k, v);
    if (params.get('state') !== null) to.searchParams.set('state', params.get('state'));
    res.writeHead(302, { location: to.href, 'cache-control': 'no-store' });
    res.end();
  }

  // The parameters of an authorization request, carried through the login form.
  const carried = [
    'response_type',
    'client_id',
    'redirect_uri',
    'scope',
    'state',
    'nonce',
    'code_challenge',
    'code_challenge_method',
  ];

  function authorize(params, res) {
    authorizations.push(Object.fromEntries(params));
    const { error } = checkClient(params);
    if (error) return sendText(res, 400, `Bad authorization request: ${error}`);
    const invalid = checkRequest(params);
    if (invalid) return redirectBack(res, params, { error: invalid[0], error_description: invalid[1] });
    sendLoginPage(res, 200, params, '');
  }

  function sendLoginPage(res, status, params, alert) {
    const hidden = carried
      .filter((k) => params.get(k) !== null)
      .map((k) => `<input type="hidden" name="${k}" value="${escapeHtml(params.get(k))}">`)
      .join('\n');
    const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Log in · Test identity provider</title>
<link rel="icon" href="data:,">
</head>
<body>
<h1>Test identity provider</h1>
<p>Log in to continue to <strong>${escapeHtml(params.get('client_id'))}</strong>.</p>
${alert ? `<p role="alert">${escapeHtml(alert)}</p>` : ''}
<form method="post" action="/authorize">
${hidden}
<p><label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required></p>
<p><button type="submit">Log in</button></p>
</form>
</body>
</html>
`;
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      // No form-action: Chromium applies it to the redirect that follows
      // the form too, and the login form's redirects go to the client.
      'content-security-policy': "default-src 'none'; img-src data:; frame-ancestors 'none'",
    });
    res.end(html);
  }

  function login(form, res) {
    // The form carries the request: check it all again.
    const { error } = checkClient(form);
    if (error) return sendText(res, 400, `Bad authorization request: ${error}`);
    const invalid = checkRequest(form);
    if (invalid) return redirectBack(res, form, { error: invalid[0], error_description: invalid[1] });
    const username = (form.get('username') ?? '').trim();
    if (!Object.hasOwn(users, username)) return sendLoginPage(res, 200, form, `No such user: ${username}`);
    const code = randomToken();
    codes.set(code, {
      clientId: form.get('client_id'),
      redirectUri: form.get('redirect_uri'),
      challenge: form.get('code_challenge'),
      nonce: form.get('nonce'),
      scope: form.get('scope'),
      sub: username,
      authTime: Math.floor(Date.now() / 1000),
      expires: Date.now() + codeTtlMs,
    });
    redirectBack(res, form, { code });
  }

  /** The client authenticating at the token endpoint, by HTTP Basic or the form; null if it fails. */
  function tokenClient(req, form) {
    const basic = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '');
    let id;
    let secret;
    let method;
    if (basic) {
      const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      if (i < 0) return { method: 'client_secret_basic' };
      // RFC 6749 2.3.1: both are form-urlencoded before encoding.
      id = decodeURIComponent(decoded.slice(0, i).replace(/\+/g, ' '));
      secret = decodeURIComponent(decoded.slice(i + 1).replace(/\+/g, ' '));
      method = 'client_secret_basic';
    } else {
      id = form.get('client_id');
      secret = form.get('client_secret');
      method = 'client_secret_post';
    }
    const client = clients.find((c) => c.id === id);
    if (!client || secret === null || !sameSecret(secret, client.secret)) return { method };
    return { client, method };
  }

  function token(req, form, res) {
    const record = { grant_type: form.get('grant_type'), code_verifier: form.has('code_verifier') };
    tokenRequests.push(record);
    const refuse = (status, error, description) => {
      record.outcome = `${error}: ${description}`;
      sendJson(res, status, { error, error_description: description });
    };
    const { client, method } = tokenClient(req, form);
    record.client_auth = method;
    if (!client) return refuse(401, 'invalid_client', 'client authentication failed');
    if (form.get('grant_type') !== 'authorization_code') {
      return refuse(400, 'unsupported_grant_type', 'only authorization_code');
    }
    const code = form.get('code') ?? '';
    const grant = codes.get(code);
    codes.delete(code); // a code is good for one try
    if (!grant || grant.expires < Date.now()) return refuse(400, 'invalid_grant', 'unknown, used or expired code');
    if (grant.clientId !== client.id) return refuse(400, 'invalid_grant', 'the code was issued to another client');
    if (form.get('redirect_uri') !== grant.redirectUri) {
      return refuse(400, 'invalid_grant', 'redirect_uri differs from the authorization request');
    }
    const verifier = form.get('code_verifier') ?? '';
    if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier)) return refuse(400, 'invalid_grant', 'bad code_verifier');
    if (b64url(createHash('sha256').update(verifier).digest()) !== grant.challenge) {
      return refuse(400, 'invalid_grant', 'code_verifier does not match code_challenge (S256)');
    }
    const user = users[grant.sub];
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: issuer,
      sub: grant.sub,
      aud: client.id,
      iat: now,
      exp: now + idTokenTtlS,
      auth_time: grant.authTime,
      nonce: grant.nonce,
      name: user.name ?? grant.sub,
      email: user.email ?? `${grant.sub}@example.test`,
      groups: user.groups ?? [],
    };
    const idToken = signJwt(claims, privateKey, kid);
    issued.push(claims);
    record.outcome = `issued an ID token for ${grant.sub}`;
    sendJson(res, 200, { access_token: randomToken(), token_type: 'Bearer', expires_in: 300, id_token: idToken });
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  issuer = `http://${hostname}:${port}`;

  return {
    issuer,
    url: new URL(issuer),
    /** The authorization requests the provider received, as their query parameters. */
    authorizations,
    /** The token requests: {grant_type, code_verifier (present?), client_auth, outcome}. */
    tokenRequests,
    /** The claims of every ID token issued. */
    issued,
    async stop() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > maxBody) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

function sendText(res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}
