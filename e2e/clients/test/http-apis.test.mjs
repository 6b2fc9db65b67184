// Narrow tools over HTTP APIs nobody here wrote, started from npm: Stoplight
// Prism mocks an OpenAPI document whose operations `warden import openapi`
// turns into tools, and json-server takes writes (create, update, delete),
// with dry runs that leave its data unchanged. Warden serves each over stdio
// to the TypeScript SDK client. Both APIs listen on 127.0.0.1, which Warden
// refuses by default: the configurations allow 127.0.0.1/32 explicitly.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';

import { freeLoopbackPort, makeDataHome, removeDataHome, wardenBin } from '../lib/harness.mjs';

const node = process.execPath;
const modules = fileURLToPath(new URL('../node_modules/', import.meta.url));
const petstore = fileURLToPath(new URL('../../../internal/cli/testdata/openapi/petstore.yaml', import.meta.url));
const token = 'e2e-pets-token-5Yw8Qk2N';

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Starts an npm server and resolves once its output matches ready. */
async function startAPI(script, args, ready) {
  const child = spawn(node, [join(modules, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let seen = '';
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  };
  const started = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start:\n${seen}`)), 30_000);
    const onData = (chunk) => {
      seen += chunk;
      if (ready.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.once('exit', (code) => reject(new Error(`${script} exited (${code}):\n${seen}`)));
  });
  try {
    await started;
  } catch (err) {
    await stop();
    throw err;
  }
  return stop;
}

/** Serves config over stdio and connects the SDK client to it. */
async function connect(config, dataHome) {
  const file = join(dataHome, 'warden.yaml');
  writeFileSync(file, config, { mode: 0o600 });
  const transport = new StdioClientTransport({
    command: wardenBin(),
    args: ['serve', '--config', file, '--stdio'],
    env: { ...getDefaultEnvironment(), XDG_DATA_HOME: dataHome, PETS_TOKEN: token, ITEMS_TOKEN: token },
    stderr: 'pipe',
  });
  let logs = '';
  transport.stderr.setEncoding('utf8').on('data', (c) => (logs += c));
  const client = new Client({ name: 'warden-e2e', version: '0.0.0' });
  try {
    await client.connect(transport, { timeout: 15_000 });
  } catch (err) {
    throw new Error(`warden serve: ${err.message}\n${logs}`);
  }
  return { client, logs: () => logs };
}

const header = (port, source, scopes) => `
server: {name: e2e-http}
auth:
  stdio: {id: e2e, tenant: acme, scopes: [${scopes}]}
sources:
  ${source}:
    kind: http
    base_url: http://127.0.0.1:${port}
    auth: {bearer: "\${env:${source.toUpperCase()}_TOKEN}"}
    egress: {allow_cidrs: [127.0.0.1/32]}
`;

function ok(result) {
  assert.notEqual(result.isError, true, `refused: ${JSON.stringify(result.content)}`);
  return result.structuredContent;
}

function refused(result) {
  assert.equal(result.isError, true, `not refused: ${JSON.stringify(result.content)}`);
  return result.structuredContent;
}

describe('tools imported from an OpenAPI document, against Prism', () => {
  let stopPrism;
  let session;
  let dataHome;
  before(async () => {
    const port = await freeLoopbackPort();
    stopPrism = await startAPI('@stoplight/prism-cli/dist/index.js', ['mock', '-h', '127.0.0.1', '-p', String(port), petstore], /Prism is listening/);
    const { stdout } = await promisify(execFile)(wardenBin(), [
      'import', 'openapi', petstore, '--operations', 'listPets,showPetById,createPet', '--source', 'pets',
    ]);
    assert.match(stdout, /scope: ""/, 'the import leaves scopes to the operator');
    dataHome = await makeDataHome();
    const config = header(port, 'pets', 'pets.use') + stdout.replaceAll('scope: ""', 'scope: pets.use');
    session = await connect(config, dataHome);
  });
  after(async () => {
    await session?.client.close();
    await stopPrism?.();
    if (dataHome) await removeDataHome(dataHome);
  });

  test('the imported operations are served as tools', async () => {
    const { tools } = await session.client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ['create_pet', 'list_pets', 'show_pet_by_id']);
    const create = tools.find((t) => t.name === 'create_pet');
    assert.equal(create.description, 'Add a pet to the store.');
    assert.deepEqual(create.inputSchema.required, ['name']);
    assert.ok(create.inputSchema.properties.dry_run, 'a write tool offers a dry run');
    const show = tools.find((t) => t.name === 'show_pet_by_id');
    assert.deepEqual(show.outputSchema.properties.body.required, ['id', 'name'], "the body's schema comes from the document");
  });

  test('a read returns the API answer, checked by the client against the output schema', async () => {
    const out = ok(await session.client.callTool({ name: 'show_pet_by_id', arguments: { pet_id: 'abc' } }));
    assert.equal(out.status, 200);
    assert.equal(out.body.name, 'Rex');
    const list = ok(await session.client.callTool({ name: 'list_pets', arguments: { limit: 5 } }));
    assert.ok(Array.isArray(list.body));
  });

  test('a write is sent with its JSON body', async () => {
    const out = ok(await session.client.callTool({ name: 'create_pet', arguments: { name: 'Rex', tag: 'dog' } }));
    assert.equal(out.status, 201);
  });

  test('a path parameter cannot leave its segment, and bad input never reaches the API', async () => {
    const err = refused(await session.client.callTool({ name: 'show_pet_by_id', arguments: { pet_id: '../admin' } }));
    assert.equal(err.error_code, 'INVALID_ARGUMENT');
    const bad = refused(await session.client.callTool({ name: 'list_pets', arguments: { limit: 500 } }));
    assert.equal(bad.error_code, 'INVALID_ARGUMENT');
  });
});

describe('writes against json-server', () => {
  let stopJSON;
  let session;
  let dataHome;
  let api;
  const items = async () => (await (await fetch(`${api}/items`)).json());

  before(async () => {
    dataHome = await makeDataHome();
    const db = join(dataHome, 'db.json');
    writeFileSync(db, JSON.stringify({ items: [{ id: 1, name: 'lamp', price: 19.5 }, { id: 2, name: 'desk', price: 120 }] }));
    const port = await freeLoopbackPort();
    api = `http://127.0.0.1:${port}`;
    stopJSON = await startAPI('json-server/lib/cli/bin.js', ['--host', '127.0.0.1', '--port', String(port), db], /Type s \+ enter/);
    const param = (type, description, extra = '') => `{type: ${type}, description: "${description}"${extra}}`;
    session = await connect(header(port, 'items', 'items.read, items.write') + `
tools:
  list_items:
    description: List the items.
    source: items
    scope: items.read
    method: GET
    path: /items
    projection: "[].{id: id, name: name}"
  create_item:
    description: Add an item.
    source: items
    scope: items.write
    mode: write
    method: POST
    path: /items
    parameters:
      name: ${param('string', 'The item name.', ', required: true')}
      price: ${param('number', 'The price.', ', minimum: 0')}
    body: {name: name, price: price}
  update_item:
    description: Change an item's price.
    source: items
    scope: items.write
    mode: write
    method: PATCH
    path: /items/{item_id}
    parameters:
      item_id: ${param('integer', 'The item id.', ', required: true, minimum: 1')}
      price: ${param('number', 'The new price.', ', required: true, minimum: 0')}
    body: {price: price}
  delete_item:
    description: Remove an item.
    source: items
    scope: items.write
    mode: write
    method: DELETE
    path: /items/{item_id}
    parameters:
      item_id: ${param('integer', 'The item id.', ', required: true, minimum: 1')}
`, dataHome);
  });
  after(async () => {
    await session?.client.close();
    await stopJSON?.();
    if (dataHome) await removeDataHome(dataHome);
  });

  test('dry runs show the exact request and leave the data unchanged', async () => {
    const before = await items();
    for (const [name, args, method, path] of [
      ['create_item', { name: 'chair', price: 45 }, 'POST', '/items'],
      ['update_item', { item_id: 1, price: 1 }, 'PATCH', '/items/1'],
      ['delete_item', { item_id: 2 }, 'DELETE', '/items/2'],
    ]) {
      const out = ok(await session.client.callTool({ name, arguments: { ...args, dry_run: true } }));
      assert.equal(out.dry_run.method, method);
      assert.equal(out.dry_run.url, api + path);
      assert.equal(out.dry_run.sent, false);
      assert.equal(out.dry_run.headers.Authorization, 'Bearer [secret]');
      assert.ok(!JSON.stringify(out).includes(token), 'the dry run shows the token');
    }
    assert.deepEqual(await items(), before);
  });

  test('create, update and delete change the data', async () => {
    const created = ok(await session.client.callTool({ name: 'create_item', arguments: { name: 'chair', price: 45 } }));
    assert.equal(created.status, 201);
    const id = created.body.id;
    ok(await session.client.callTool({ name: 'update_item', arguments: { item_id: id, price: 50 } }));
    ok(await session.client.callTool({ name: 'delete_item', arguments: { item_id: 1 } }));
    const now = await items();
    assert.deepEqual(now.map((i) => [i.id, i.name, i.price]), [[2, 'desk', 120], [id, 'chair', 50]]);
    const listed = ok(await session.client.callTool({ name: 'list_items', arguments: {} }));
    assert.deepEqual(listed.body, [{ id: 2, name: 'desk' }, { id, name: 'chair' }]);
  });

  test('the API\'s own refusal comes back as a tool error', async () => {
    const err = refused(await session.client.callTool({ name: 'update_item', arguments: { item_id: 999, price: 1 } }));
    assert.equal(err.error_code, 'NOT_FOUND');
  });
});
