// The gateway (examples/gateway/warden.yaml): server-everything from npm,
// started by Warden inside its sandbox, served through Warden to both
// TypeScript client generations, over stdio and Streamable HTTP.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';

import { clientV2, freeLoopbackPort, makeDataHome, removeDataHome, runInspector, sdkV1, wardenBin } from '../lib/harness.mjs';

const modules = fileURLToPath(new URL('../node_modules', import.meta.url));
const example = fileURLToPath(new URL('../../../examples/gateway/warden.yaml', import.meta.url));

let dataHome;
let config;
let http;
let url;

before(async () => {
  dataHome = await makeDataHome();
  config = join(dataHome, 'warden.yaml');
  writeFileSync(config, readFileSync(example, 'utf8').replaceAll('${NPM}', modules));
  const port = await freeLoopbackPort();
  http = spawn(wardenBin(), ['serve', '--config', config, '--http', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  http.stderr.setEncoding('utf8').on('data', (c) => (logs += c));
  url = `http://127.0.0.1:${port}/mcp`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`the gateway did not become ready:\n${logs}`);
    await delay(100);
  }
});

after(async () => {
  if (http && http.exitCode === null) {
    http.kill('SIGTERM');
    await new Promise((resolve) => http.once('exit', resolve));
  }
  await removeDataHome(dataHome);
});

for (const library of [sdkV1, clientV2]) {
  for (const transport of ['stdio', 'http']) {
    describe(`${library.label} through the gateway over ${transport}`, () => {
      let session;
      before(async () => {
        session = await library.connect(transport === 'http' ? { url } : { stdio: true, command: wardenBin(), args: ['serve', '--config', config, '--stdio'] });
      });
      after(async () => {
        await session?.close();
      });

      test('lists the upstream tools under its prefix, without the excluded one', async () => {
        const { tools } = await session.client.listTools();
        const names = tools.map((t) => t.name);
        assert.ok(names.includes('everything__echo'), names.join(', '));
        assert.ok(!names.includes('everything__get-env'), 'get-env is excluded');
        assert.ok(names.every((n) => n.startsWith('everything__')));
      });

      test('calls an upstream tool through the pipeline', async () => {
        const result = await session.callToolRequest('everything__echo', { message: 'hello through Warden' });
        assert.notEqual(result.isError, true, JSON.stringify(result.content));
        assert.match(result.content[0].text, /hello through Warden/);
      });

      test('refuses an argument the upstream does not declare', async () => {
        const result = await session.callToolRequest('everything__echo', { message: 'hi', shell: 'rm -rf /' });
        assert.equal(result.isError, true);
        assert.equal(result.structuredContent.error_code, 'INVALID_ARGUMENT');
      });
    });
  }
}

for (const transport of ['http', 'stdio']) {
  for (const era of ['legacy', 'modern']) {
    test(`the Inspector CLI calls an upstream tool through the gateway over ${transport}, ${era} era`, async () => {
      const target = transport === 'http'
        ? ['--server-url', url, '--transport', 'http']
        : ['--transport', 'stdio', '--', wardenBin(), 'serve', '--config', config, '--stdio'];
      const run = await runInspector(['--protocol-era', era, '--method', 'tools/call', '--tool-name', 'everything__echo',
        '--tool-arg', 'message=inspected', ...target]);
      assert.equal(run.code, 0, run.stderr);
      assert.notEqual(run.json.result.isError, true);
      assert.match(run.json.result.content[0].text, /inspected/);
    });
  }
}
