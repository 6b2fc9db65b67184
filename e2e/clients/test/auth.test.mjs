// Identity over HTTP, as a real client meets it: no credential, a wrong one,
// and the demo's two keys, whose tenants and scopes decide what each caller
// sees and gets. Over stdio the demo's declared local principal applies.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { clientV2, sdkV1, startHttpDemo } from '../lib/harness.mjs';

let server;
before(async () => {
  server = await startHttpDemo();
});
after(async () => {
  await server?.stop();
});

const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'e2e', version: '1' } },
});

async function post(headers) {
  return fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: initialize,
  });
}

describe('HTTP authentication', () => {
  test('no credential is refused with 401 and a Bearer challenge', async () => {
    const res = await post({});
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
  });

  test('an unknown key is refused with 401', async () => {
    const res = await post({ authorization: `Bearer wdn_${'A'.repeat(43)}` });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /invalid_token/);
  });

  test('a tampered key is refused with 401', async () => {
    const key = server.keys[0].key;
    const tampered = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
    const res = await post({ authorization: `Bearer ${tampered}` });
    assert.equal(res.status, 401);
  });

  test('a key in the query string is refused', async () => {
    const res = await fetch(`${server.url}?api_key=${server.keys[0].key}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: initialize,
    });
    assert.equal(res.status, 401);
  });
});

for (const library of [sdkV1, clientV2]) {
  describe(`${library.label}: tenants and scopes`, () => {
    let acme;
    let globex;
    before(async () => {
      acme = await library.connect({ url: server.url, key: server.keys[0].key });
      globex = await library.connect({ url: server.url, key: server.keys[1].key });
    });
    after(async () => {
      await acme?.close();
      await globex?.close();
    });

    test('each tenant sees only its own customers', async () => {
      const mine = await globex.callToolRequest('get_customer', { customer_id: 'C-2001' });
      assert.equal(mine.structuredContent.rows[0].name, 'Hank Scorpio');
      const theirs = await globex.callToolRequest('get_customer', { customer_id: 'C-1001' });
      assert.notEqual(theirs.isError, true);
      assert.equal(theirs.structuredContent.row_count, 0, 'globex read an acme customer');
      const acmeOwn = await acme.callToolRequest('get_customer', { customer_id: 'C-1001' });
      assert.equal(acmeOwn.structuredContent.rows[0].name, 'Ada Lovelace');
    });

    test('the bound tenant is invisible and cannot be supplied', async () => {
      const { tools } = await globex.client.listTools();
      for (const tool of tools) {
        assert.equal(tool.inputSchema.properties?.tenant_id, undefined, `${tool.name} shows tenant_id`);
      }
      const res = await globex.callToolRequest('get_customer', { customer_id: 'C-1001', tenant_id: 'acme' });
      assert.equal(res.isError, true);
      assert.equal(res.structuredContent.error_code, 'PERMISSION_DENIED');
    });

    test('a caller without a scope neither sees nor calls the tool', async () => {
      const { tools } = await globex.client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ['get_customer', 'get_order_status', 'search_orders']);
      const res = await globex.callToolRequest('create_support_ticket_draft', {
        customer_id: 'C-2001', subject: 'Hello there', body: 'A draft.',
      });
      assert.equal(res.isError, true);
      assert.equal(res.structuredContent.error_code, 'PERMISSION_DENIED');
      const acmeTools = (await acme.client.listTools()).tools.map((t) => t.name);
      assert.ok(acmeTools.includes('create_support_ticket_draft'));
    });
  });
}
