// Starts the Warden demo and connects real MCP clients from npm to it.
//
// Every server gets its own temporary XDG_DATA_HOME, so each one creates a
// fresh demo database, and every child process is stopped when its owner is
// closed (and, as a last resort, when this Node process exits).
//
// A client session is the same shape whichever library and transport made it,
// so a test can be written once and run over the whole table:
//
//   const session = await sdkV1.connect({ stdio: true });
//   const tools = await session.client.listTools();
//   await session.close();

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import {
  StdioClientTransport as StdioV1,
  getDefaultEnvironment as defaultEnvV1,
} from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport as HttpV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import {
  Client as ClientV2,
  PROTOCOL_VERSION_META_KEY,
  StreamableHTTPClientTransport as HttpV2,
} from '@modelcontextprotocol/client';
import {
  StdioClientTransport as StdioV2,
  getDefaultEnvironment as defaultEnvV2,
} from '@modelcontextprotocol/client/stdio';

const startupTimeoutMs = 10_000;
// Go's http.Server.Shutdown may wait up to 5 s for a connection a client opened
// but sent nothing on; past that margin the server is killed.
const stopTimeoutMs = 8_000;
const connectTimeoutMs = 15_000;
const clientInfo = { name: 'warden-e2e', version: '0.0.0' };

/** The warden binary under test; run.sh builds it and sets WARDEN_BIN. */
export function wardenBin() {
  const bin = process.env.WARDEN_BIN;
  if (!bin) {
    throw new Error('WARDEN_BIN is not set: point it at a warden binary (run.sh builds one)');
  }
  return bin;
}

/** The version of an installed npm package, as the test names show it. */
export function installedVersion(pkg) {
  const url = new URL(`../node_modules/${pkg}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')).version;
}

// Children still running when Node exits (a crashed test, an interrupted run)
// are killed here, so no demo server outlives the test run.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A fresh directory to serve as a server's XDG_DATA_HOME. */
export function makeDataHome() {
  return mkdtemp(join(tmpdir(), 'warden-e2e-'));
}

export function removeDataHome(dir) {
  return rm(dir, { recursive: true, force: true });
}

/**
 * The demo served elsewhere, if WARDEN_URL names its MCP endpoint (such as
 * the three instances behind HAProxy of e2e/cluster): WARDEN_KEYS is then a
 * file holding its API keys, in demo-keys.json's form. Undefined otherwise.
 */
export function externalDemo() {
  const url = process.env.WARDEN_URL;
  if (!url) return undefined;
  const file = process.env.WARDEN_KEYS;
  if (!file) throw new Error('WARDEN_URL is set without WARDEN_KEYS: name the file of the demo API keys');
  return { url, keys: JSON.parse(readFileSync(file, 'utf8')), stop: async () => {} };
}

/**
 * Starts `warden demo --http` on a free loopback port and waits until it is
 * healthy — or, with WARDEN_URL set, uses the demo served there (see
 * externalDemo). The caller must await stop().
 */
export async function startHttpDemo() {
  const external = externalDemo();
  if (external) return external;
  const dataHome = await makeDataHome();
  const child = spawn(wardenBin(), ['demo', '--http', '127.0.0.1:0'], {
    env: { ...process.env, XDG_DATA_HOME: dataHome },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const stderr = collect(child.stderr);

  const stop = async () => {
    await stopChild(child);
    await removeDataHome(dataHome);
  };
  try {
    const url = await announcedUrl(child, startupTimeoutMs);
    await waitHealthy(new URL('/healthz', url), startupTimeoutMs);
    // The demo's API keys: [acme-support, globex-analyst], each {name, tenant, scopes, key}.
    const keys = JSON.parse(readFileSync(join(dataHome, 'warden', 'demo', 'demo-keys.json'), 'utf8'));
    return { url, keys, stop };
  } catch (err) {
    await stop();
    throw new Error(`warden demo --http did not start: ${err.message}\n${stderr()}`);
  }
}

/** Resolves with the MCP endpoint the demo prints once it is listening. */
function announcedUrl(child, timeoutMs) {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => done(new Error(`no endpoint announced within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk) => {
      seen += chunk;
      const match = /serving the CRM at (http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(seen);
      if (match) done(null, match[1]);
    };
    const onExit = (code, signal) => done(new Error(`exited early (code ${code}, signal ${signal})`));
    function done(err, url) {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('exit', onExit);
      child.stdout.resume(); // keep draining, so the child never blocks on a full pipe
      if (err) reject(err);
      else resolve(url);
    }
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', onData);
    child.once('exit', onExit);
  });
}

async function waitHealthy(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) return;
      last = new Error(`${url} answered ${res.status}`);
    } catch (err) {
      last = err;
    }
    await delay(50);
  }
  throw new Error(`${url} not healthy within ${timeoutMs} ms: ${last?.message}`);
}

/** SIGTERM, then SIGKILL if the child has not exited in time. */
async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
  await exited;
  clearTimeout(timer);
}

/** Keeps the last 64 KiB of a stream for error messages, and drains it. */
function collect(stream) {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    text = (text + chunk).slice(-65_536);
  });
  return () => text;
}

/** The protocol version a client stamped on an outgoing JSON-RPC request. */
function stampedVersion(message) {
  if (message.method === undefined || message.id === undefined) return undefined;
  if (message.method === 'initialize') return message.params?.protocolVersion;
  return message.params?._meta?.[PROTOCOL_VERSION_META_KEY];
}

/**
 * A fetch that records the Mcp-Protocol-Version header of every request and
 * presents the API key, if one is given.
 */
function recordingFetch(versions, key) {
  return (url, init) => {
    const headers = new Headers(init?.headers);
    const version = headers.get('mcp-protocol-version');
    if (version !== null) versions.push(version);
    if (key) headers.set('authorization', `Bearer ${key}`);
    return fetch(url, { ...init, headers });
  };
}

/** Wraps a stdio transport class so it records the versions it sends. */
function recordingStdio(Base, versions) {
  return class extends Base {
    send(message, options) {
      const version = stampedVersion(message);
      if (version !== undefined) versions.push(version);
      return super.send(message, options);
    }
  };
}

/**
 * Connects client over HTTP to url, or over stdio to a `warden demo --stdio`
 * child of its own (or to `command args`, if given), with its own data
 * directory; closing the client stops the child. Stdio and Http are the
 * library's transport classes, Stdio already recording what it sends.
 *
 * @returns {Promise<Session>}
 */
async function connectSession(client, { url, key, stdio, command, args }, { Stdio, Http, defaultEnv, wireVersions, ...session }) {
  let transport;
  let dataHome;
  let logs = () => '';
  if (stdio) {
    dataHome = await makeDataHome();
    transport = new Stdio({
      command: command ?? wardenBin(),
      args: command ? (args ?? []) : ['demo', '--stdio'],
      env: { ...defaultEnv(), XDG_DATA_HOME: dataHome },
      stderr: 'pipe',
    });
    logs = collect(transport.stderr);
  } else {
    transport = new Http(new URL(url), { fetch: recordingFetch(wireVersions, key) });
  }
  const cleanup = async () => {
    await client.close();
    if (dataHome) await removeDataHome(dataHome);
  };
  try {
    await client.connect(transport, { timeout: connectTimeoutMs });
  } catch (err) {
    await cleanup();
    throw new Error(`connecting over ${stdio ? 'stdio' : url}: ${err.message}\n${logs()}`, { cause: err });
  }
  return { client, wireVersions, httpSessionId: () => transport.sessionId, close: cleanup, ...session };
}

/**
 * A connected client.
 *
 * @typedef {object} Session
 * @property {any} client the library's own Client
 * @property {() => string | undefined} negotiatedVersion the protocol version the library says it negotiated
 * @property {string[]} wireVersions the protocol version on each request the client sent: the
 *   Mcp-Protocol-Version header over HTTP, the version in the request itself over stdio
 * @property {() => string | undefined} httpSessionId the Mcp-Session-Id the server issued, if any
 * @property {(name: string, args: object) => Promise<any>} callToolRequest a plain tools/call
 *   request, without the library's own checks of the result against the tool's outputSchema
 * @property {() => Promise<void>} close closes the client and stops a stdio server
 */

/** @modelcontextprotocol/sdk 1.x: the session-based 2025-11-25 protocol. */
export const sdkV1 = {
  label: `@modelcontextprotocol/sdk@${installedVersion('@modelcontextprotocol/sdk')}`,
  protocolVersion: '2025-11-25',
  sessionful: true,

  connect(target) {
    const wireVersions = [];
    const client = new ClientV1(clientInfo);
    // The SDK hands the negotiated version to a transport that takes it: the
    // HTTP transport keeps it as protocolVersion, this stdio one does too.
    const Stdio = class extends recordingStdio(StdioV1, wireVersions) {
      setProtocolVersion(version) {
        this.protocolVersion = version;
      }
    };
    return connectSession(client, target, {
      Stdio,
      Http: HttpV1,
      defaultEnv: defaultEnvV1,
      wireVersions,
      negotiatedVersion() {
        return client.transport?.protocolVersion;
      },
      callToolRequest: (name, args) =>
        client.request({ method: 'tools/call', params: { name, arguments: args } }, CallToolResultSchema),
    });
  },
};

/** @modelcontextprotocol/client 2.x, pinned to the stateless 2026-07-28 protocol. */
export const clientV2 = {
  label: `@modelcontextprotocol/client@${installedVersion('@modelcontextprotocol/client')}`,
  protocolVersion: '2026-07-28',
  sessionful: false,

  connect(target) {
    const wireVersions = [];
    // A pinned version has no fallback: connect fails unless the server
    // offers exactly this revision.
    const client = new ClientV2(clientInfo, { versionNegotiation: { mode: { pin: this.protocolVersion } } });
    return connectSession(client, target, {
      Stdio: recordingStdio(StdioV2, wireVersions),
      Http: HttpV2,
      defaultEnv: defaultEnvV2,
      wireVersions,
      negotiatedVersion: () => client.getNegotiatedProtocolVersion(),
      callToolRequest: (name, args) => client.request({ method: 'tools/call', params: { name, arguments: args } }),
    });
  },
};

/**
 * Runs the MCP Inspector CLI once and returns its exit code, its output parsed
 * as JSON (null if it printed none) and its stderr. Its state goes to a
 * throwaway HOME, so a run never reads or writes the user's ~/.mcp-inspector.
 */
export async function runInspector(args, { timeoutMs = 30_000 } = {}) {
  const pkg = new URL('../node_modules/@modelcontextprotocol/inspector/', import.meta.url);
  const launcher = new URL(JSON.parse(readFileSync(new URL('package.json', pkg), 'utf8')).bin['mcp-inspector'], pkg);
  const home = await makeDataHome();
  try {
    const child = spawn(process.execPath, [launcher.pathname, '--cli', '--format', 'json', '--quiet', ...args], {
      env: { ...process.env, HOME: home, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const [code, signal] = await once(child, 'close'); // 'close': all output has been read
    clearTimeout(timer);
    running.delete(child);
    if (signal !== null) throw new Error(`inspector killed by ${signal} after ${timeoutMs} ms\n${stderr()}`);
    const out = stdout().trim();
    return { code, json: out === '' ? null : JSON.parse(out), stderr: stderr() };
  } finally {
    await removeDataHome(home);
  }
}

/**
 * The plaintext of the demo's API key called name (acme-support,
 * globex-analyst, acme-finance) from a server's keys.
 */
export function demoKey(keys, name) {
  const found = keys.find((k) => k.name === name);
  if (!found) throw new Error(`the demo has no API key named ${name}: it has ${keys.map((k) => k.name).join(', ')}`);
  return found.key;
}

// Clients that can be asked for input (MCP elicitation), for the tests of
// tools that need the user's confirmation (risk.test.mjs).

import { ElicitRequestSchema as ElicitRequestSchemaV1 } from '@modelcontextprotocol/sdk/types.js';

/**
 * Connects like library.connect(target) (library is sdkV1 or clientV2), but
 * the client declares the elicitation capability ({elicitation: {}}, that is
 * form mode) and answers every elicitation with `await onElicit(params)`:
 * over 2025-11-25 an elicitation/create request the server sends during the
 * call, over 2026-07-28 an input request embedded in an input_required
 * result, which the library fulfils with the same handler and then retries.
 * Without onElicit the client declares no elicitation capability.
 *
 * The session also has `traffic`: every JSON-RPC message the client sent
 * ({sent: message}) and received ({received: message}), in order.
 *
 * @param {typeof sdkV1 | typeof clientV2} library
 * @param {{url?: string, key?: string, stdio?: boolean}} target
 * @param {(params: any) => any} [onElicit] returns an ElicitResult, such as
 *   {action: 'accept', content: {confirm: true}} or {action: 'decline'}
 * @returns {Promise<Session & {traffic: Array<{sent?: any, received?: any}>}>}
 */
export function connectEliciting(library, target, onElicit) {
  const capabilities = onElicit ? { elicitation: {} } : {};
  const wireVersions = [];
  const traffic = [];
  if (library === sdkV1) {
    const client = new (recordingClient(ClientV1, traffic))(clientInfo, { capabilities });
    if (onElicit) client.setRequestHandler(ElicitRequestSchemaV1, (request) => onElicit(request.params));
    const Stdio = class extends recordingStdio(StdioV1, wireVersions) {
      setProtocolVersion(version) {
        this.protocolVersion = version;
      }
    };
    return connectSession(client, target, {
      Stdio,
      Http: HttpV1,
      defaultEnv: defaultEnvV1,
      wireVersions,
      traffic,
      negotiatedVersion: () => client.transport?.protocolVersion,
      callToolRequest: (name, args) =>
        client.request({ method: 'tools/call', params: { name, arguments: args } }, CallToolResultSchema),
    });
  }
  if (library === clientV2) {
    const client = new (recordingClient(ClientV2, traffic))(clientInfo, {
      capabilities,
      versionNegotiation: { mode: { pin: clientV2.protocolVersion } },
    });
    if (onElicit) client.setRequestHandler('elicitation/create', (request) => onElicit(request.params));
    return connectSession(client, target, {
      Stdio: recordingStdio(StdioV2, wireVersions),
      Http: HttpV2,
      defaultEnv: defaultEnvV2,
      wireVersions,
      traffic,
      negotiatedVersion: () => client.getNegotiatedProtocolVersion(),
      callToolRequest: (name, args) => client.request({ method: 'tools/call', params: { name, arguments: args } }),
    });
  }
  throw new Error(`connectEliciting: unknown library ${library?.label}`);
}

/**
 * A Client class that logs to traffic every JSON-RPC message on its
 * transport. Both libraries' connect() keep a transport's own onmessage and
 * call it first with every message received.
 */
function recordingClient(Base, traffic) {
  return class extends Base {
    connect(transport, options) {
      const send = transport.send.bind(transport);
      transport.send = (message, sendOptions) => {
        traffic.push({ sent: message });
        return send(message, sendOptions);
      };
      transport.onmessage = (message) => {
        traffic.push({ received: message });
      };
      return super.connect(transport, options);
    }
  };
}

// Serving the demo from a configuration of the test's own, with
// `warden serve` (console-sso.test.mjs adds single sign-on to it).

import { writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';

/** The demo's configuration, examples/demo/warden.yaml, as text. */
export function demoConfigText() {
  return readFileSync(new URL('../../../examples/demo/warden.yaml', import.meta.url), 'utf8');
}

/**
 * A loopback port that was free a moment ago, for a server whose
 * configuration must name its own address before it starts.
 */
export async function freeLoopbackPort() {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Creates the demo's data in a fresh directory, by starting
 * `warden demo --dir DIR --http 127.0.0.1:0` once and stopping it: DIR then
 * holds crm.db, state.db (with the demo's API keys), resources/ and
 * demo-keys.json. The caller must await remove().
 *
 * @returns {Promise<{dir: string, keys: Array<{name: string, tenant: string, scopes: string[], key: string}>,
 *   remove: () => Promise<void>}>}
 */
export async function prepareDemoDir() {
  const dir = await makeDataHome();
  const remove = () => removeDataHome(dir);
  const child = spawn(wardenBin(), ['demo', '--dir', dir, '--http', '127.0.0.1:0'], {
    env: { ...process.env, XDG_DATA_HOME: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const stderr = collect(child.stderr);
  try {
    await announcedUrl(child, startupTimeoutMs);
    await stopChild(child);
    const keys = JSON.parse(readFileSync(join(dir, 'demo-keys.json'), 'utf8'));
    return { dir, keys, remove };
  } catch (err) {
    await stopChild(child);
    await remove();
    throw new Error(`warden demo --dir did not set up the demo: ${err.message}\n${stderr()}`);
  }
}

/**
 * Writes config (YAML text) to DIR/warden.yaml and starts
 * `warden serve --config DIR/warden.yaml --http 127.0.0.1:PORT` with
 * WARDEN_DEMO_DIR=DIR, then waits until it is healthy. The caller must
 * await stop(); logs() returns the server's recent log (JSON lines).
 *
 * @returns {Promise<{url: string, origin: string, logs: () => string, stop: () => Promise<void>}>}
 */
export async function startServe({ dir, config, port }) {
  const file = join(dir, 'warden.yaml');
  writeFileSync(file, config, { mode: 0o600 });
  const addr = `127.0.0.1:${port}`;
  const child = spawn(wardenBin(), ['serve', '--config', file, '--http', addr, '--log-format', 'json'], {
    env: { ...process.env, XDG_DATA_HOME: dir, WARDEN_DEMO_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  child.stdout.resume();
  const logs = collect(child.stderr);
  const stop = () => stopChild(child);
  try {
    // The log names the endpoint once the server listens; waiting for it
    // (rather than for /healthz alone) ensures this child, and not another
    // process, holds the port.
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`no endpoint logged within ${startupTimeoutMs} ms`)),
        startupTimeoutMs,
      );
      const onData = () => {
        for (const line of logs().split('\n')) {
          if (!line.startsWith('{')) continue;
          let rec;
          try {
            rec = JSON.parse(line);
          } catch {
            continue;
          }
          if (rec.msg === 'serving MCP over Streamable HTTP' && rec.endpoint) return done(null, rec.endpoint);
        }
      };
      const onExit = (code, signal) => done(new Error(`exited early (code ${code}, signal ${signal})`));
      function done(err, endpoint) {
        clearTimeout(timer);
        child.stderr.off('data', onData);
        child.off('exit', onExit);
        if (err) reject(err);
        else resolve(endpoint);
      }
      child.stderr.on('data', onData);
      child.once('exit', onExit);
    });
    if (url !== `http://${addr}/mcp`) throw new Error(`serving at ${url}, not at ${addr}`);
    await waitHealthy(new URL('/healthz', url), startupTimeoutMs);
    return { url, origin: new URL(url).origin, logs, stop };
  } catch (err) {
    await stop();
    throw new Error(`warden serve did not start: ${err.message}\n${logs()}`);
  }
}

// The catalog example (examples/catalog): a server whose tools come and go
// while it serves.

/** The catalog example's binary; run.sh builds it and sets CATALOG_BIN. */
export function catalogBin() {
  const bin = process.env.CATALOG_BIN;
  if (!bin) {
    throw new Error('CATALOG_BIN is not set: point it at a build of examples/catalog (run.sh builds one)');
  }
  return bin;
}

/**
 * Starts the catalog example over Streamable HTTP on a free loopback port
 * and waits until it is healthy. The caller must await stop().
 *
 * @returns {Promise<{url: string, stop: () => Promise<void>}>}
 */
export async function startCatalogHttp() {
  const child = spawn(catalogBin(), ['--http', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const logs = collect(child.stderr);
  const stop = () => stopChild(child);
  try {
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`no endpoint logged within ${startupTimeoutMs} ms`)), startupTimeoutMs);
      const onData = () => {
        const match = /msg="catalog example listening" url=(http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(logs());
        if (match) done(null, match[1]);
      };
      const onExit = (code, signal) => done(new Error(`exited early (code ${code}, signal ${signal})`));
      function done(err, endpoint) {
        clearTimeout(timer);
        child.stderr.off('data', onData);
        child.off('exit', onExit);
        if (err) reject(err);
        else resolve(endpoint);
      }
      child.stderr.on('data', onData);
      child.once('exit', onExit);
    });
    await waitHealthy(new URL('/healthz', url), startupTimeoutMs);
    return { url, stop };
  } catch (err) {
    await stop();
    throw new Error(`the catalog example did not start: ${err.message}\n${logs()}`);
  }
}
