// The web console's single sign-on (OpenID Connect), in a real browser,
// against a test identity provider (lib/idp.mjs) whose pages are another
// site than the console's: fiona of the finance group signs in at the
// provider and lands on the approval queue, signed in, and approves an
// agent's refund; sam of sales is refused at the console and gets no
// session.
//
// The demo is served with `warden serve` from its own configuration with an
// oidc section added. The provider runs at http://localhost:PORT and the
// console at http://127.0.0.1:PORT: both loopback, as plain http requires,
// but different sites, so the provider's redirect back to the console is a
// cross-site navigation, as in real life. The console's session cookie is
// SameSite=Strict, so the callback answers with a page that moves on by
// itself (Refresh) rather than with a redirect.
//
// Chromium is Debian's (run.sh installs it), driven by playwright-core.
// A screenshot of the queue after sign-in goes to artifacts/console-sso.png.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { artifactsDir, launchBrowser, newContext } from '../lib/browser.mjs';
import {
  demoConfigText,
  demoKey,
  freeLoopbackPort,
  prepareDemoDir,
  sdkV1,
  startServe,
} from '../lib/harness.mjs';
import { startIdp } from '../lib/idp.mjs';

const clientId = 'warden-console';
const clientSecret = 's3cret';
// A paid acme order (examples/demo/seed.sql), so request_refund may refund it.
const order = 'O-5004';
const reason = 'Customer eligible; verified by SSO approver';
const approvalMetaKey = 'io.wardenmcp/approval_id';

let demo; // the demo's data directory and keys
let idp;
let warden;
let console_; // the console's root URL
let browser;

before(async () => {
  demo = await prepareDemoDir();
  const port = await freeLoopbackPort();
  const callback = `http://127.0.0.1:${port}/console/oidc/callback`;
  idp = await startIdp({
    hostname: 'localhost',
    clients: [{ id: clientId, secret: clientSecret, redirectUris: [callback] }],
    users: {
      fiona: { name: 'Fiona Finance', groups: ['finance'] },
      sam: { name: 'Sam Sales', groups: ['sales'] },
    },
  });
  const base = demoConfigText();
  const consoleSection = 'console:\n  enabled: true\n';
  assert.ok(base.includes(consoleSection), 'examples/demo/warden.yaml no longer has "console:\\n  enabled: true"');
  const config = base.replace(
    consoleSection,
    `${consoleSection}  oidc:
    issuer: ${idp.issuer}
    client_id: ${clientId}
    client_secret: ${clientSecret}
    redirect_url: ${callback}
    console_groups: [finance]
    key_groups: [admins]
`,
  );
  warden = await startServe({ dir: demo.dir, config, port });
  console_ = new URL('/console/', warden.origin);
  browser = await launchBrowser();
});

after(async () => {
  // Each is closed even if another fails to, or was never opened.
  const results = await Promise.allSettled([browser?.close(), idp?.stop(), warden?.stop()]);
  await demo?.remove();
  for (const r of results) if (r.status === 'rejected') throw r.reason;
});

function consoleUrl(path) {
  return new URL(path, console_).href;
}

/** Waits until the browser is at path of the console's origin, whatever its query. */
function waitForConsolePath(page, path) {
  return page.waitForURL((url) => url.origin === console_.origin && url.pathname === path);
}

/**
 * Records every document the page loads: its URL, status, where a redirect
 * or Refresh sends it, the cookies the browser sent and those the answer
 * set, and Sec-Fetch-Site. The record goes into assertion messages, so a
 * failed sign-in says exactly where the browser went and with which cookies.
 */
function traceNavigations(page) {
  const trail = [];
  page.on('response', async (res) => {
    const req = res.request();
    if (req.resourceType() !== 'document') return;
    const entry = { method: req.method(), url: req.url(), status: res.status() };
    trail.push(entry);
    try {
      const sent = await req.allHeaders();
      const got = await res.headersArray();
      entry.secFetchSite = sent['sec-fetch-site'];
      entry.cookiesSent = (sent.cookie ?? '')
        .split(/;\s*/)
        .filter(Boolean)
        .map((c) => c.slice(0, c.indexOf('=')));
      entry.setCookie = got
        .filter((h) => h.name.toLowerCase() === 'set-cookie')
        .map((h) => h.value.replace(/^([^=]+)=[^;]*/, '$1=…'));
      const location = got.find((h) => h.name.toLowerCase() === 'location');
      if (location) entry.location = location.value;
      const refresh = got.find((h) => h.name.toLowerCase() === 'refresh');
      if (refresh) entry.refresh = refresh.value;
    } catch (err) {
      entry.headersError = err.message;
    }
  });
  return trail;
}

async function describeState(page, trail) {
  const cookies = (await page.context().cookies()).map(
    (c) =>
      `${c.name} (domain ${c.domain}, path ${c.path}, SameSite=${c.sameSite}, ` +
      `secure ${c.secure}, httpOnly ${c.httpOnly})`,
  );
  return [
    `at ${page.url()}`,
    `documents loaded:\n${trail.map((e) => `  ${JSON.stringify(e)}`).join('\n')}`,
    `cookies in the browser: ${cookies.join('; ') || 'none'}`,
    `provider authorization requests: ${idp.authorizations.length}`,
    `provider token requests: ${JSON.stringify(idp.tokenRequests)}`,
    `warden log (tail):\n${warden.logs().split('\n').slice(-8).join('\n')}`,
  ].join('\n');
}

/**
 * From the console's sign-in page, follows "Sign in with …" to the
 * provider and logs in there as username. Resolves once the browser is
 * back at the console, after the callback answered; returns the callback's
 * response. trail is the page's traceNavigations, for the failure message.
 */
async function ssoLogin(page, username, trail) {
  try {
    const res = await page.goto(consoleUrl('signin'));
    assert.equal(res.status(), 200, `GET /console/signin answered ${res.status()}`);
    const sso = page.locator('a#sso');
    assert.match((await sso.innerText()).trim(), /^Sign in with \S/, 'the single sign-on link');
    await sso.click();

    // The provider's login page, on the provider's own site.
    await page.waitForURL((url) => url.origin === idp.url.origin && url.pathname === '/authorize');
    await page.getByLabel('Username').fill(username);
    const callback = page.waitForResponse((r) => {
      const url = new URL(r.url());
      return url.origin === console_.origin && url.pathname === '/console/oidc/callback';
    });
    callback.catch(() => {}); // awaited below, unless the click fails first
    await page.getByRole('button', { name: 'Log in', exact: true }).click();
    return await callback;
  } catch (err) {
    const state = await describeState(page, trail);
    throw new Error(`single sign-on as ${username} did not get back to the console: ${err.message}\n${state}`, {
      cause: err,
    });
  }
}

describe('single sign-on to the console', () => {
  describe('fiona of finance', () => {
    let context;
    let pageErrors;
    before(async () => {
      ({ context, pageErrors } = await newContext(browser));
    });
    after(async () => {
      await context?.close();
    });

    test('signs in at the provider and lands on the approval queue, signed in', async (t) => {
      const page = await context.newPage();
      const trail = traceNavigations(page);
      // The first request the browser makes after the callback: the Refresh to the queue.
      const afterCallback = page.waitForRequest((r) => r.url() === consoleUrl('approvals'));
      afterCallback.catch(() => {}); // awaited below, unless the sign-in fails first
      const callback = await ssoLogin(page, 'fiona', trail);

      // What the console asked of the provider, and how it redeemed the code.
      const asked = idp.authorizations.at(-1);
      assert.equal(asked.code_challenge_method, 'S256');
      assert.ok(asked.state && asked.nonce, 'the authorization request lacks state or nonce');
      assert.deepEqual(asked.scope.split(' ').sort(), ['email', 'groups', 'openid', 'profile']);
      assert.equal(asked.redirect_uri, consoleUrl('oidc/callback'));
      const redeemed = idp.tokenRequests.at(-1);
      assert.equal(redeemed?.outcome, 'issued an ID token for fiona', JSON.stringify(idp.tokenRequests));
      assert.equal(redeemed.client_auth, 'client_secret_basic');

      // The callback: a page of its own, not a redirect, reached from the provider's site.
      const callbackHeaders = await callback.allHeaders();
      const callbackRequest = await callback.request().allHeaders();
      t.diagnostic(
        `callback: ${callback.status()}, Refresh: ${callbackHeaders.refresh}, ` +
          `Sec-Fetch-Site: ${callbackRequest['sec-fetch-site']}`,
      );
      assert.equal(callbackRequest['sec-fetch-site'], 'cross-site', 'the provider is the console\'s own site');
      assert.equal(callback.status(), 200, await describeState(page, trail));
      assert.equal(callbackHeaders.refresh, '0; url=/console/approvals');

      try {
        await waitForConsolePath(page, '/console/approvals');
        await page.locator('#signed-in-as').waitFor();
      } catch (err) {
        const state = await describeState(page, trail);
        assert.fail(`fiona did not end up signed in on the approval queue: ${err.message}\n${state}`);
      }
      assert.equal((await page.locator('#signed-in-as').innerText()).trim(), 'fiona');
      assert.equal(await page.locator('h1').first().innerText(), 'Approvals');
      // The Refresh is the console page's own navigation: the browser sends
      // the SameSite=Strict session cookie the callback set.
      const refreshed = await (await afterCallback).allHeaders();
      t.diagnostic(`GET /console/approvals after the callback: Sec-Fetch-Site: ${refreshed['sec-fetch-site']}`);
      assert.match(refreshed.cookie ?? '', /(^|;\s*)warden_console=/, 'no session cookie sent after the callback');

      const session = (await context.cookies(console_.href)).find((c) => c.name === 'warden_console');
      assert.ok(session, `no session cookie: ${await describeState(page, trail)}`);
      assert.equal(session.sameSite, 'Strict');
      assert.equal(session.httpOnly, true);
      // The flow's cookie served its one callback.
      const flows = (await context.cookies(consoleUrl('oidc/callback'))).filter(
        (c) => c.name === 'warden_console_oidc',
      );
      assert.deepEqual(flows, [], 'the sign-in flow cookie outlived its callback');

      const shot = join(artifactsDir(), 'console-sso.png');
      await page.screenshot({ path: shot, fullPage: true });
      t.diagnostic(`screenshot of the queue: ${shot}`);
      const where = (u) => new URL(u).origin + new URL(u).pathname;
      t.diagnostic(`documents loaded: ${trail.map((e) => `${e.method} ${where(e.url)} -> ${e.status}`).join(', ')}`);

      // A reload keeps the session: the cookie is the console's own.
      await page.reload();
      assert.equal((await page.locator('#signed-in-as').innerText()).trim(), 'fiona');
      assert.deepEqual(pageErrors, []);
    });
  });

  describe('a refund approved by a single sign-on user', () => {
    let agent; // acme-support, which may request refunds
    let approvalId;
    let approved = false;
    let context;
    let pageErrors;
    before(async () => {
      agent = await sdkV1.connect({ url: warden.url, key: demoKey(demo.keys, 'acme-support') });
      ({ context, pageErrors } = await newContext(browser));
    });
    after(async () => {
      const results = await Promise.allSettled([context?.close(), agent?.close()]);
      for (const r of results) if (r.status === 'rejected') throw r.reason;
    });

    function callTool(name, args, meta) {
      const params = { name, arguments: args };
      if (meta) params._meta = meta;
      return agent.client.request({ method: 'tools/call', params }, CallToolResultSchema);
    }

    test('the agent\'s refund is held for approval', async () => {
      const held = await callTool('request_refund', { order_id: order });
      assert.equal(held.isError, true, `expected the refund to be held, got ${JSON.stringify(held)}`);
      assert.equal(held.structuredContent.error_code, 'APPROVAL_REQUIRED', held.structuredContent.message);
      approvalId = held.structuredContent.approval_id;
      assert.match(approvalId ?? '', /^apr_[A-Za-z0-9_-]+$/);
    });

    test('fiona opens it and approves it', async (t) => {
      assert.ok(approvalId, 'no approval was requested');
      const page = await context.newPage();
      const trail = traceNavigations(page);
      await ssoLogin(page, 'fiona', trail);
      try {
        await waitForConsolePath(page, '/console/approvals');
      } catch (err) {
        assert.fail(`fiona did not reach the approval queue: ${err.message}\n${await describeState(page, trail)}`);
      }

      const row = page.locator(`#approvals tr[data-approval-id="${approvalId}"]`);
      await row.waitFor();
      await row.locator(`a[href$="approvals/${approvalId}"]`).click();
      await waitForConsolePath(page, `/console/approvals/${approvalId}`);
      const state = page.locator('#approval-state');
      assert.equal((await state.innerText()).trim(), 'pending');
      await page.locator('#approval-args').filter({ hasText: order }).waitFor();

      await page.locator('#reason').fill(reason);
      await page.getByRole('button', { name: 'Approve', exact: true }).click();
      const status = page.locator('[role=status]');
      const alert = page.locator('[role=alert]');
      await status.or(alert).first().waitFor();
      if (await alert.isVisible()) assert.fail(`the approval was refused: ${(await alert.innerText()).trim()}`);
      assert.equal((await state.innerText()).trim(), 'approved');
      const decision = page.locator('#approval-decisions tbody tr').first();
      assert.match(await decision.innerText(), /^fiona\s+approve\b/);
      t.diagnostic(`state: approved; message: ${(await status.innerText()).trim()}`);
      assert.deepEqual(pageErrors, []);
      approved = true;
    });

    test('the agent\'s retry then runs', async () => {
      assert.ok(approved, 'the request was not approved in the console');
      const done = await callTool('request_refund', { order_id: order }, { [approvalMetaKey]: approvalId });
      assert.notEqual(done.isError, true, `the approved retry was refused: ${JSON.stringify(done.content)}`);
      assert.equal(done.structuredContent.rows_affected, 1);
      assert.deepEqual(done.structuredContent.rows[0], {
        id: order,
        status: 'refunded',
        total_cents: 23450,
        currency: 'USD',
      });
    });
  });

  describe('sam of sales', () => {
    let context;
    let pageErrors;
    before(async () => {
      ({ context, pageErrors } = await newContext(browser));
    });
    after(async () => {
      await context?.close();
    });

    test('is refused and gets no session', async (t) => {
      const page = await context.newPage();
      const trail = traceNavigations(page);
      const callback = await ssoLogin(page, 'sam', trail);
      const redeemed = idp.tokenRequests.at(-1);
      assert.equal(redeemed?.outcome, 'issued an ID token for sam', JSON.stringify(idp.tokenRequests));
      assert.equal(callback.status(), 303, await describeState(page, trail));

      await waitForConsolePath(page, '/console/signin');
      assert.equal(new URL(page.url()).searchParams.get('sso'), 'refused');
      const alert = page.locator('[role=alert]');
      await alert.waitFor();
      const text = (await alert.innerText()).trim();
      assert.match(text, /none of the groups allowed to sign in/);
      t.diagnostic(`refusal shown: ${text}`);
      assert.equal(await page.locator('#signed-in-as').count(), 0, 'the sign-in page shows sam signed in');

      const cookies = await context.cookies(console_.href);
      assert.deepEqual(
        cookies.filter((c) => c.name === 'warden_console').map((c) => c.name),
        [],
        'sam was given a session cookie',
      );
      // The queue sends sam to sign in.
      await page.goto(consoleUrl('approvals'));
      await waitForConsolePath(page, '/console/signin');
      assert.equal(await page.locator('#signed-in-as').count(), 0);
      assert.deepEqual(pageErrors, []);
    });
  });
});
