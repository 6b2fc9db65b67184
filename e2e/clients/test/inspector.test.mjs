// The demo CRM as the MCP Inspector CLI sees it, over Streamable HTTP and over
// stdio (the CLI launches `warden demo --stdio` itself), in the legacy
// (2025-11-25, initialize handshake) and the modern (2026-07-28) era.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { installedVersion, makeDataHome, removeDataHome, runInspector, startHttpDemo, wardenBin } from '../lib/harness.mjs';

const inspector = `@modelcontextprotocol/inspector@${installedVersion('@modelcontextprotocol/inspector')}`;
const demoTools = ['close_ticket', 'create_support_ticket_draft', 'delete_closed_tickets', 'get_customer', 'get_order_status', 'request_refund', 'search_orders', 'update_ticket_priority'];

let server;
let stdioDataHome;
before(async () => {
  server = await startHttpDemo();
  stdioDataHome = await makeDataHome();
});
after(async () => {
  await server?.stop();
  if (stdioDataHome) await removeDataHome(stdioDataHome);
});

// How to reach the demo: a URL, or a command for the Inspector to launch.
// Both come last, after the variadic options such as --tool-arg.
const transports = {
  http: () => ['--server-url', server.url, '--transport', 'http', '--header', `Authorization: Bearer ${server.keys[0].key}`],
  stdio: () => ['-e', `XDG_DATA_HOME=${stdioDataHome}`, '--transport', 'stdio', '--', wardenBin(), 'demo', '--stdio'],
};

function inspect(transport, era, args) {
  return runInspector(['--protocol-era', era, ...args, ...transports[transport]()]);
}

for (const transport of Object.keys(transports)) {
  for (const era of ['legacy', 'modern']) {
    describe(`${inspector} CLI over ${transport}, ${era} era`, () => {
      test('lists the four demo tools', async () => {
        const run = await inspect(transport, era, ['--method', 'tools/list']);
        assert.equal(run.code, 0, run.stderr);
        const { tools } = run.json.result;
        assert.deepEqual(tools.map((t) => t.name).sort(), demoTools);
        for (const tool of tools) assert.equal(tool.inputSchema.additionalProperties, false, tool.name);
      });

      test('calls get_customer C-1001 and gets Ada Lovelace', async () => {
        const run = await inspect(transport, era, [
          '--method', 'tools/call', '--tool-name', 'get_customer', '--tool-arg', 'customer_id=C-1001',
        ]);
        assert.equal(run.code, 0, run.stderr);
        const { result } = run.json;
        assert.notEqual(result.isError, true);
        assert.equal(result.structuredContent.rows[0].name, 'Ada Lovelace');
        assert.deepEqual(JSON.parse(result.content[0].text), result.structuredContent);
      });

      test('prints a refusal and exits 5 (tool error)', async () => {
        const run = await inspect(transport, era, [
          '--method', 'tools/call', '--tool-name', 'get_customer', '--tool-args-json', '{"customer_id":"CUST-1"}',
        ]);
        assert.equal(run.code, 5, run.stderr);
        assert.equal(run.json.result.isError, true);
        assert.equal(run.json.result.structuredContent.error_code, 'INVALID_ARGUMENT');
      });
    });
  }
}
