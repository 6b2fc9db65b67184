// A catalog that changes while it is served (examples/catalog): calling
// enable_reports registers get_report, disable_reports removes it. A
// 2025-11-25 client (@modelcontextprotocol/sdk 1.x) is told of each change
// with notifications/tools/list_changed, whichever client made it; a
// stateless 2026-07-28 client (@modelcontextprotocol/client 2.x) sees it on
// its next tools/list. Over Streamable HTTP both clients share one server;
// over stdio each client has its own.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

import { catalogBin, clientV2, sdkV1, startCatalogHttp } from '../lib/harness.mjs';

const fixedTools = ['disable_reports', 'enable_reports'];
const withReports = ['disable_reports', 'enable_reports', 'get_report'];
const notificationTimeoutMs = 5_000;

/**
 * Counts the notifications/tools/list_changed a 1.x client receives;
 * next(what) resolves on the next one not yet taken, and rejects if none
 * comes in time.
 */
function listChanges(client) {
  let unseen = 0;
  const waiters = [];
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    const wake = waiters.shift();
    if (wake) wake();
    else unseen++;
  });
  return {
    next(what) {
      if (unseen > 0) {
        unseen--;
        return Promise.resolve();
      }
      return new Promise((resolve, reject) => {
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(wake), 1);
          reject(new Error(`no notifications/tools/list_changed within ${notificationTimeoutMs} ms of ${what}`));
        }, notificationTimeoutMs);
        waiters.push(wake);
      });
    },
    unseen: () => unseen,
  };
}

async function toolNames(client) {
  const { tools } = await client.listTools();
  return tools.map((t) => t.name).sort();
}

async function callText(client, name, args = {}) {
  const result = await client.callTool({ name, arguments: args });
  assert.notEqual(result.isError, true, `${name} was refused: ${JSON.stringify(result.content)}`);
  return result.content.map((c) => c.text).join('\n');
}

/** Calls a tool that must not run: a protocol error or a tool error. */
async function assertCallFails(client, name, args) {
  let result;
  try {
    result = await client.callTool({ name, arguments: args });
  } catch {
    return;
  }
  assert.equal(result.isError, true, `${name} answered: ${JSON.stringify(result.content)}`);
}

async function assertReport(client) {
  assert.match(await callText(client, 'get_report', { month: '2026-11' }), /^Sales report for 2026-11: /);
}

describe('the catalog over Streamable HTTP', () => {
  let server;
  let v1;
  let v2;
  let changes;
  before(async () => {
    server = await startCatalogHttp();
    v1 = await sdkV1.connect({ url: server.url });
    v2 = await clientV2.connect({ url: server.url });
    changes = listChanges(v1.client);
  });
  after(async () => {
    await v1?.close();
    await v2?.close();
    await server?.stop();
  });

  test('both clients start with the fixed tools only', async () => {
    assert.equal(v1.negotiatedVersion(), '2025-11-25');
    assert.equal(v2.negotiatedVersion(), '2026-07-28');
    assert.deepEqual(await toolNames(v1.client), fixedTools);
    assert.deepEqual(await toolNames(v2.client), fixedTools);
  });

  test(`${sdkV1.label}: enable_reports is announced, and get_report is listed and served`, async () => {
    assert.match(await callText(v1.client, 'enable_reports'), /enabled/);
    await changes.next('enable_reports');
    assert.deepEqual(await toolNames(v1.client), withReports);
    await assertReport(v1.client);
  });

  test(`${clientV2.label}: the next tools/list shows get_report, which it can call`, async () => {
    assert.deepEqual(await toolNames(v2.client), withReports);
    await assertReport(v2.client);
  });

  test('the added tool is validated like any other', async () => {
    const result = await v1.client.callTool({ name: 'get_report', arguments: { month: '2026-13' } });
    assert.equal(result.isError, true);
    assert.equal(result.structuredContent.error_code, 'INVALID_ARGUMENT');
  });

  test(`${sdkV1.label}: disable_reports is announced, and get_report is gone`, async () => {
    assert.match(await callText(v1.client, 'disable_reports'), /disabled/);
    await changes.next('disable_reports');
    assert.deepEqual(await toolNames(v1.client), fixedTools);
    await assertCallFails(v1.client, 'get_report', { month: '2026-11' });
  });

  test(`${clientV2.label}: the next tools/list no longer shows get_report, and calling it fails`, async () => {
    assert.deepEqual(await toolNames(v2.client), fixedTools);
    await assertCallFails(v2.client, 'get_report', { month: '2026-11' });
  });

  test(`a change made by the ${clientV2.protocolVersion} client is announced to the ${sdkV1.protocolVersion} session`, async () => {
    await callText(v2.client, 'enable_reports');
    await changes.next(`enable_reports by ${clientV2.label}`);
    assert.deepEqual(await toolNames(v1.client), withReports);
    await callText(v2.client, 'disable_reports');
    await changes.next(`disable_reports by ${clientV2.label}`);
    assert.deepEqual(await toolNames(v1.client), fixedTools);
    assert.equal(changes.unseen(), 0, 'more notifications than changes');
  });
});

for (const library of [sdkV1, clientV2]) {
  describe(`the catalog over stdio, ${library.label}`, () => {
    let session;
    let changes;
    before(async () => {
      session = await library.connect({ stdio: true, command: catalogBin() });
      if (library === sdkV1) changes = listChanges(session.client);
    });
    after(async () => {
      await session?.close();
    });

    test('enable_reports adds get_report, disable_reports removes it', async () => {
      const { client } = session;
      assert.equal(session.negotiatedVersion(), library.protocolVersion);
      assert.deepEqual(await toolNames(client), fixedTools);

      await callText(client, 'enable_reports');
      await changes?.next('enable_reports');
      assert.deepEqual(await toolNames(client), withReports);
      await assertReport(client);

      await callText(client, 'disable_reports');
      await changes?.next('disable_reports');
      assert.deepEqual(await toolNames(client), fixedTools);
      await assertCallFails(client, 'get_report', { month: '2026-11' });
    });
  });
}
