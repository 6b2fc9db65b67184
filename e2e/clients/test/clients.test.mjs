// The demo CRM, as two independent TypeScript client libraries see it, over
// stdio and over Streamable HTTP: the 1.x SDK speaks the session-based
// 2025-11-25 protocol, the 2.x client the stateless 2026-07-28 one.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { clientV2, externalDemo, sdkV1, startHttpDemo } from '../lib/harness.mjs';

const demoTools = ['close_ticket', 'create_support_ticket_draft', 'delete_closed_tickets', 'get_customer', 'get_order_status', 'request_refund', 'search_orders', 'update_ticket_priority'];

// Each is refused by validation before anything runs.
const badArguments = [
  { what: 'an unknown field', args: { customer_id: 'C-1001', shoe_size: 42 } },
  { what: 'a wrong type', args: { customer_id: 1001 } },
  { what: 'a pattern mismatch', args: { customer_id: 'CUST-1' } },
  { what: 'a missing required argument', args: {} },
];

// Against a demo served elsewhere (WARDEN_URL), HTTP only.
const combinations = [
  { library: sdkV1, transport: 'stdio' },
  { library: sdkV1, transport: 'http' },
  { library: clientV2, transport: 'stdio' },
  { library: clientV2, transport: 'http' },
].filter(({ transport }) => !externalDemo() || transport === 'http');

let server;
before(async () => {
  server = await startHttpDemo();
});
after(async () => {
  await server?.stop();
});

function assertAda(result) {
  assert.notEqual(result.isError, true, `expected a result, got a refusal: ${JSON.stringify(result.content)}`);
  assert.equal(result.structuredContent.rows[0].name, 'Ada Lovelace');
  assert.equal(result.content[0].type, 'text');
  assert.deepEqual(JSON.parse(result.content[0].text), result.structuredContent);
}

function assertInvalidArgument(result) {
  assert.equal(result.isError, true, `expected a refusal, got ${JSON.stringify(result)}`);
  assert.equal(result.structuredContent.error_code, 'INVALID_ARGUMENT');
  assert.match(result.structuredContent.message, /\S/);
  assert.match(result.structuredContent.suggestion, /\S/);
  assert.match(result.content[0].text, /^INVALID_ARGUMENT: /);
}

for (const { library, transport } of combinations) {
  describe(`${library.label} over ${transport}`, () => {
    let session;
    before(async () => {
      session = await library.connect(transport === 'http' ? { url: server.url, key: server.keys[0].key } : { stdio: true });
    });
    after(async () => {
      await session?.close();
    });

    test(`negotiates and speaks protocol ${library.protocolVersion}`, async () => {
      await session.client.listTools(); // at least one request after connecting
      assert.equal(session.negotiatedVersion(), library.protocolVersion);
      assert.ok(session.wireVersions.length > 0, 'no request carried a protocol version');
      assert.deepEqual([...new Set(session.wireVersions)], [library.protocolVersion]);
    });

    if (transport === 'http') {
      const served = library.sessionful ? 'in a session (Mcp-Session-Id)' : 'statelessly (no Mcp-Session-Id)';
      test(`is served ${served}`, () => {
        assert.equal(typeof session.httpSessionId(), library.sessionful ? 'string' : 'undefined');
      });
    }

    test('lists the four demo tools with strict input schemas', async () => {
      const { tools } = await session.client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), demoTools);
      for (const tool of tools) {
        assert.equal(tool.inputSchema.type, 'object', tool.name);
        assert.equal(tool.inputSchema.additionalProperties, false, `${tool.name} accepts unknown arguments`);
      }
      const getCustomer = tools.find((t) => t.name === 'get_customer');
      assert.deepEqual(getCustomer.inputSchema.required, ['customer_id']);
      assert.equal(getCustomer.outputSchema?.type, 'object');
      assert.ok(getCustomer.outputSchema.properties.rows, 'get_customer outputSchema has no rows');
    });

    test('get_customer C-1001 returns Ada Lovelace', async () => {
      assertAda(await session.client.callTool({ name: 'get_customer', arguments: { customer_id: 'C-1001' } }));
    });

    test('reads crm://schema as markdown', async () => {
      const { contents } = await session.client.readResource({ uri: 'crm://schema' });
      assert.equal(contents.length, 1);
      assert.equal(contents[0].uri, 'crm://schema');
      assert.equal(contents[0].mimeType, 'text/markdown');
      assert.match(contents[0].text, /^# /m);
      assert.match(contents[0].text, /customers/);
    });

    test('reads crm://customers/C-1001 as JSON', async () => {
      const { contents } = await session.client.readResource({ uri: 'crm://customers/C-1001' });
      assert.equal(contents.length, 1);
      assert.equal(contents[0].mimeType, 'application/json');
      const record = JSON.parse(contents[0].text);
      assert.equal(record.rows[0].id, 'C-1001');
      assert.equal(record.rows[0].name, 'Ada Lovelace');
    });

    test('gets the summarize_customer_history prompt for C-1001', async () => {
      const prompt = await session.client.getPrompt({
        name: 'summarize_customer_history',
        arguments: { customer_id: 'C-1001' },
      });
      assert.ok(prompt.messages.length > 0);
      assert.equal(prompt.messages[0].role, 'user');
      assert.equal(prompt.messages[0].content.type, 'text');
      assert.match(prompt.messages[0].content.text, /C-1001/);
    });

    for (const { what, args } of badArguments) {
      test(`refuses get_customer with ${what} as INVALID_ARGUMENT, then still answers`, async () => {
        assertInvalidArgument(await session.callToolRequest('get_customer', args));
        assertAda(await session.client.callTool({ name: 'get_customer', arguments: { customer_id: 'C-1001' } }));
      });
    }

    test('callTool() hands a refusal back as a result', async () => {
      await session.client.listTools(); // the libraries check results against the schemas listed
      assertInvalidArgument(
        await session.client.callTool({ name: 'get_customer', arguments: { customer_id: 'CUST-1' } }),
      );
    });
  });
}
