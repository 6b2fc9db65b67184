// The web console, in a real browser: an agent's refund is held for
// approval; a finance approver signs in to the console with their API key,
// finds the request in the queue and approves it; the agent's retry then
// runs exactly once. Also: a key without the warden.console scope cannot
// sign in, and console pages may not be framed.
//
// Chromium is Debian's (run.sh installs it), driven by playwright-core.
// Screenshots of the queue and of the request go to artifacts/.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { artifactsDir, launchBrowser, newContext } from '../lib/browser.mjs';
import { demoKey, sdkV1, startHttpDemo } from '../lib/harness.mjs';

const approvalMetaKey = 'io.wardenmcp/approval_id';
// A paid acme order (examples/demo/seed.sql), so request_refund may refund it.
const order = 'O-5004';
const reason = 'Customer eligible; verified';

let server;
let console_; // the console's root URL
let browser;
let agent; // acme-support, which may request refunds
before(async () => {
  server = await startHttpDemo();
  console_ = new URL('/console/', server.url);
  agent = await sdkV1.connect({ url: server.url, key: demoKey(server.keys, 'acme-support') });
  browser = await launchBrowser();
});
after(async () => {
  // Each is closed even if another fails to, or was never opened.
  const results = await Promise.allSettled([browser?.close(), agent?.close()]);
  await server?.stop();
  for (const r of results) if (r.status === 'rejected') throw r.reason;
});

/** A tools/call, with _meta if given, as the agent's library sends it. */
function callTool(name, args, meta) {
  const params = { name, arguments: args };
  if (meta) params._meta = meta;
  return agent.client.request({ method: 'tools/call', params }, CallToolResultSchema);
}

function refusal(result) {
  assert.equal(result.isError, true, `expected a refusal, got ${JSON.stringify(result)}`);
  return result.structuredContent;
}

function consolePath(page) {
  return new URL(page.url()).pathname;
}

/** Waits until the browser is at path (of the console's origin), whatever its query. */
function waitForPath(page, path) {
  return page.waitForURL((url) => url.origin === console_.origin && url.pathname === path);
}

/** Signs in at the console's sign-in page with key; leaves the page where the console sends it. */
async function signIn(page, key) {
  await page.locator('#api_key').fill(key);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

function assertFramingForbidden(headers, what) {
  const csp = headers['content-security-policy'];
  assert.ok(csp, `${what}: no Content-Security-Policy header`);
  assert.match(csp, /(^|;)\s*frame-ancestors\s+'none'\s*(;|$)/, `${what}: Content-Security-Policy is ${csp}`);
  assert.equal(headers['x-frame-options']?.toUpperCase(), 'DENY', `${what}: X-Frame-Options`);
}

describe('console sign-in', () => {
  let context;
  let pageErrors;
  before(async () => {
    ({ context, pageErrors } = await newContext(browser));
  });
  after(async () => {
    await context?.close();
  });

  test('console pages may not be framed', async () => {
    const page = await context.newPage();
    const res = await page.goto(new URL('signin', console_).href);
    assert.equal(res.status(), 200, `GET /console/signin answered ${res.status()}`);
    assertFramingForbidden(await res.allHeaders(), '/console/signin');
  });

  test('a key without the warden.console scope is refused', async (t) => {
    const page = await context.newPage();
    const res = await page.goto(new URL('signin', console_).href);
    assert.equal(res.status(), 200, `GET /console/signin answered ${res.status()}`);
    await signIn(page, demoKey(server.keys, 'acme-support'));
    const alert = page.locator('[role=alert]');
    await alert.waitFor();
    const text = (await alert.innerText()).trim();
    assert.match(text, /\S/, 'the [role=alert] message is empty');
    t.diagnostic(`refusal shown: ${text}`);
    assert.equal(consolePath(page), '/console/signin', 'the refused key left the sign-in page');
    // It got no session either: the queue still sends it to sign in.
    await page.goto(new URL('approvals', console_).href);
    await waitForPath(page, '/console/signin');
    assert.deepEqual(pageErrors, []);
  });
});

describe('a refund approved in the console', () => {
  let approvalId;
  let approved = false;
  let context;
  let pageErrors;
  before(async () => {
    ({ context, pageErrors } = await newContext(browser));
  });
  after(async () => {
    await context?.close();
  });

  test('the agent\'s refund is held for approval', async () => {
    const held = refusal(await callTool('request_refund', { order_id: order }));
    assert.equal(held.error_code, 'APPROVAL_REQUIRED', held.message);
    approvalId = /approval_id (apr_[A-Za-z0-9_-]+)/.exec(held.message)?.[1];
    assert.ok(approvalId, `no approval id in ${JSON.stringify(held.message)}`);
    assert.equal(held.approval_id, approvalId, 'structuredContent.approval_id differs from the id in the message');
    const status = await callTool('get_order_status', { order_id: order });
    assert.equal(status.structuredContent.rows[0].status, 'paid', 'the held call changed the order');
  });

  test('a finance approver signs in and approves it', async (t) => {
    assert.ok(approvalId, 'no approval was requested');
    const page = await context.newPage();
    const shots = artifactsDir();

    // Signed out, the console sends the browser to sign in.
    const res = await page.goto(console_.href);
    assert.equal(res.status(), 200, `GET /console/ (and its redirects) answered ${res.status()} at ${page.url()}`);
    await waitForPath(page, '/console/signin');
    await signIn(page, demoKey(server.keys, 'acme-finance'));
    await waitForPath(page, '/console/approvals');

    const row = page.locator(`#approvals tr[data-approval-id="${approvalId}"]`);
    await row.waitFor();
    const queueShot = join(shots, 'console-queue.png');
    await page.screenshot({ path: queueShot, fullPage: true });
    t.diagnostic(`screenshot of the queue: ${queueShot}`);

    // The queue's pages forbid framing too, signed in.
    const queue = await context.request.get(new URL('approvals', console_).href, { maxRedirects: 0 });
    assert.equal(queue.status(), 200);
    assertFramingForbidden(queue.headers(), '/console/approvals');

    await row.locator(`a[href$="approvals/${approvalId}"]`).click();
    await waitForPath(page, `/console/approvals/${approvalId}`);
    const state = page.locator('#approval-state');
    await state.filter({ hasText: /\bpending\b/i }).waitFor();
    assert.equal((await state.innerText()).trim(), 'pending');
    await page.locator('#approval-args').filter({ hasText: order }).waitFor();
    const detailShot = join(shots, 'console-detail.png');
    await page.screenshot({ path: detailShot, fullPage: true });
    t.diagnostic(`screenshot of the request: ${detailShot}`);

    await page.locator('#reason').fill(reason);
    await page.getByRole('button', { name: 'Approve', exact: true }).click();
    await state.filter({ hasText: /\bapproved\b/i }).waitFor();
    assert.equal((await state.innerText()).trim(), 'approved');
    const status = page.locator('[role=status]');
    await status.waitFor();
    t.diagnostic(`state: ${(await state.innerText()).trim()}; message: ${(await status.innerText()).trim()}`);
    assert.deepEqual(pageErrors, []);
    approved = true;
  });

  test('the approved retry refunds the order exactly once', async () => {
    assert.ok(approved, 'the request was not approved in the console');
    const meta = { [approvalMetaKey]: approvalId };

    const done = await callTool('request_refund', { order_id: order }, meta);
    assert.notEqual(done.isError, true, `the approved retry was refused: ${JSON.stringify(done.content)}`);
    const refund = done.structuredContent;
    assert.equal(refund.rows_affected, 1, `the retry changed ${refund.rows_affected} rows`);
    assert.equal(refund.row_count, 1);
    assert.deepEqual(refund.rows[0], { id: order, status: 'refunded', total_cents: 23450, currency: 'USD' });
    const refundedAt = (await callTool('get_order_status', { order_id: order })).structuredContent.rows[0];
    assert.equal(refundedAt.status, 'refunded');

    // The approval is used up: a second retry runs nothing.
    const again = refusal(await callTool('request_refund', { order_id: order }, meta));
    assert.equal(again.error_code, 'APPROVAL_DENIED', again.message);
    const after = (await callTool('get_order_status', { order_id: order })).structuredContent.rows[0];
    assert.deepEqual(after, refundedAt, 'the second retry touched the order');
  });
});
