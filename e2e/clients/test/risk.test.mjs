// The human in the loop, as real clients meet it: update_ticket_priority runs
// only once the user confirms it through MCP elicitation (an elicitation/create
// request during the call over 2025-11-25, an input_required result the client
// fulfils and retries over 2026-07-28); a user who declines, or a client that
// cannot ask, gets a refusal and nothing changes. Write tools run as dry runs
// on request, and the critical delete_closed_tickets only ever as one.
//
// Every test gets a fresh demo database: over stdio each client starts its
// own server; over HTTP each test starts its own, and connects with the
// acme-support key (tenant acme, like the stdio principal). Ticket 3 is
// acme's, open, priority high; tickets 1 and 2 are acme's closed ones.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { clientV2, connectEliciting, demoKey, sdkV1, startHttpDemo } from '../lib/harness.mjs';

const confirmId = 'io.wardenmcp/confirm';
const ticket = 3;

const combinations = [
  { library: sdkV1, transport: 'stdio' },
  { library: sdkV1, transport: 'http' },
  { library: clientV2, transport: 'stdio' },
  { library: clientV2, transport: 'http' },
];

// Answers to the confirmation that must not run the call.
const refusals = [
  { what: 'decline', answer: { action: 'decline' } },
  { what: 'cancel', answer: { action: 'cancel' } },
  { what: 'accept with confirm: false', answer: { action: 'accept', content: { confirm: false } } },
];

const confirmed = { action: 'accept', content: { confirm: true } };

// The HTTP servers being stopped. A test's after hook closes its client and
// stops its server; the file waits here until every server has exited. (A
// server may take up to 5 s to exit: the 2.x client's close() can abort a
// fetch whose response it already has, and undici then opens a connection it
// sends nothing on, which Go's http.Server.Shutdown waits for. Overlapping
// those waits keeps the file fast; no test depends on another's server.)
const stopping = [];
after(() => Promise.all(stopping));

/**
 * A fresh demo server and a client of library connected to it over
 * transport, both closed after test t. With answer, the client declares
 * elicitation and answers every elicitation with it; `seen` collects their
 * params. Without, it declares no elicitation.
 */
async function open(t, { library, transport }, answer) {
  let server;
  let session;
  t.after(async () => {
    try {
      await session?.close();
    } finally {
      if (server) stopping.push(server.stop());
    }
  });
  const seen = [];
  const onElicit = answer
    ? (params) => {
        seen.push(params);
        return answer;
      }
    : undefined;
  let target = { stdio: true };
  if (transport === 'http') {
    server = await startHttpDemo();
    target = { url: server.url, key: demoKey(server.keys, 'acme-support') };
  }
  session = await connectEliciting(library, target, onElicit);
  return { session, seen };
}

function call(session, name, args) {
  return session.client.callTool({ name, arguments: args });
}

function assertResult(result, what) {
  assert.notEqual(result.isError, true, `${what}: expected a result, got a refusal: ${JSON.stringify(result.content)}`);
  return result.structuredContent;
}

function assertRefusal(result, code) {
  assert.equal(result.isError, true, `expected ${code}, got ${JSON.stringify(result)}`);
  assert.equal(result.structuredContent?.error_code, code, JSON.stringify(result.structuredContent));
  assert.match(result.content[0].text, new RegExp(`^${code}: `));
  return result.structuredContent;
}

/** The dry_run part of a dry run's result. */
function dryRunOf(result, what) {
  const out = assertResult(result, what);
  assert.ok(out?.dry_run, `${what}: no dry_run in ${JSON.stringify(out)}`);
  return out.dry_run;
}

/**
 * Ticket's priority now, read from the "before" of a dry run of
 * update_ticket_priority (a dry run needs no confirmation, and changes nothing).
 */
async function priorityOf(session, id) {
  const dry = dryRunOf(
    await call(session, 'update_ticket_priority', { ticket_id: id, priority: 'normal', dry_run: true }),
    'update_ticket_priority dry run',
  );
  assert.equal(dry.changes.length, 1, JSON.stringify(dry));
  assert.equal(dry.changes[0].before.id, id);
  return dry.changes[0].before.priority;
}

/** The tools/call requests the client sent, and the results it received for them, in order. */
function toolCalls(traffic) {
  const sent = traffic.filter((m) => m.sent?.method === 'tools/call').map((m) => m.sent);
  return sent.map((request) => ({
    request,
    response: traffic.find((m) => m.received && m.received.id === request.id && !m.received.method)?.received,
  }));
}

/** The elicitation/create requests the server sent the client (2025-11-25 only). */
function elicitRequests(traffic) {
  return traffic.filter((m) => m.received?.method === 'elicitation/create').map((m) => m.received);
}

/** Checks the confirmation the user was shown for update_ticket_priority {ticket 3, priority}. */
function assertConfirmationShown(params, priority) {
  assert.equal(params.mode ?? 'form', 'form');
  const { message } = params;
  assert.match(message, /update_ticket_priority/);
  assert.match(message, /^\s*ticket_id: 3$/m);
  assert.match(message, new RegExp(`^\\s*priority: "${priority}"$`, 'm'));
  const effect = /^Expected effect \(from a dry run\): (.*)$/m.exec(message);
  assert.ok(effect, `the message shows no dry run:\n${message}`);
  const dry = JSON.parse(effect[1]);
  assert.equal(dry.rows_affected, 1);
  assert.equal(dry.changes[0].table, 'support_tickets');
  assert.equal(dry.changes[0].before.id, ticket);
  assert.equal(dry.changes[0].before.priority, 'high');
  assert.equal(dry.changes[0].after.priority, priority);
  assert.equal(params.requestedSchema?.properties?.confirm?.type, 'boolean', JSON.stringify(params.requestedSchema));
}

/**
 * Checks how the question travelled: over 2025-11-25 as one
 * elicitation/create request during the single tools/call; over 2026-07-28 as
 * an input_required result, answered by a second tools/call carrying the
 * answer and the requestState echoed byte for byte.
 */
function assertAskedInBand(library, traffic, answer) {
  const calls = toolCalls(traffic);
  if (library === sdkV1) {
    assert.equal(calls.length, 1, 'the 2025-11-25 client sent more than one tools/call');
    const asks = elicitRequests(traffic);
    assert.equal(asks.length, 1, 'no elicitation/create request reached the 2025-11-25 client');
    // Asked during the call: after the request, before its result, and
    // answered with the user's answer.
    const at = (entry) => traffic.indexOf(entry);
    const asked = traffic.find((m) => m.received === asks[0]);
    const answered = traffic.find((m) => m.sent && m.sent.id === asks[0].id && !m.sent.method);
    const done = traffic.find((m) => m.received === calls[0].response);
    assert.ok(answered, 'the client never answered the elicitation/create request');
    assert.deepEqual(answered.sent.result, answer);
    assert.ok(at(traffic.find((m) => m.sent === calls[0].request)) < at(asked), 'asked before the call');
    assert.ok(at(answered) < at(done), 'the call ended before the user answered');
    return;
  }
  assert.equal(elicitRequests(traffic).length, 0, 'a 2026-07-28 client was sent an elicitation/create request');
  assert.equal(calls.length, 2, `expected the call and its retry, got ${calls.length} tools/call`);
  const [first, retry] = calls;
  const asked = first.response?.result;
  assert.equal(asked?.resultType, 'input_required', JSON.stringify(first.response));
  assert.equal(asked.inputRequests?.[confirmId]?.method, 'elicitation/create', JSON.stringify(asked.inputRequests));
  assert.equal(typeof asked.requestState, 'string');
  assert.equal(retry.request.params.requestState, asked.requestState);
  assert.deepEqual(retry.request.params.inputResponses, { [confirmId]: answer });
  assert.deepEqual(retry.request.params.arguments, first.request.params.arguments);
}

for (const combination of combinations) {
  const { library, transport } = combination;
  const who = transport === 'http' ? ' (acme-support key)' : '';
  describe(`${library.label} over ${transport}${who}`, () => {
    test('a confirmed update_ticket_priority runs once, after the user saw the call and its dry run', async (t) => {
      const { session, seen } = await open(t, combination, confirmed);
      const result = await call(session, 'update_ticket_priority', { ticket_id: ticket, priority: 'low' });
      const out = assertResult(result, 'confirmed update_ticket_priority');
      assert.deepEqual(out.rows, [{ id: ticket, priority: 'low' }]);
      assert.equal(seen.length, 1, `the user was asked ${seen.length} times`);
      assertConfirmationShown(seen[0], 'low');
      assertAskedInBand(library, session.traffic, confirmed);

      assert.equal(await priorityOf(session, ticket), 'low');
      assert.equal(seen.length, 1, 'a dry run asked the user');
    });

    for (const { what, answer } of refusals) {
      test(`a confirmation answered "${what}" is refused as APPROVAL_DENIED and changes nothing`, async (t) => {
        const { session, seen } = await open(t, combination, answer);
        const refusal = assertRefusal(
          await call(session, 'update_ticket_priority', { ticket_id: ticket, priority: 'low' }),
          'APPROVAL_DENIED',
        );
        assert.match(refusal.message, /update_ticket_priority/);
        assert.equal(seen.length, 1, `the user was asked ${seen.length} times`);
        assertConfirmationShown(seen[0], 'low');
        assertAskedInBand(library, session.traffic, answer);
        assert.equal(await priorityOf(session, ticket), 'high');
      });
    }

    test('without the elicitation capability, update_ticket_priority is refused as CONFIRMATION_REQUIRED and changes nothing', async (t) => {
      const { session } = await open(t, combination);
      assertRefusal(
        await call(session, 'update_ticket_priority', { ticket_id: ticket, priority: 'low' }),
        'CONFIRMATION_REQUIRED',
      );
      assert.equal(elicitRequests(session.traffic).length, 0, 'a client without elicitation was asked');
      const calls = toolCalls(session.traffic);
      assert.equal(calls.length, 1);
      assert.notEqual(calls[0].response?.result?.resultType, 'input_required');
      assert.equal(await priorityOf(session, ticket), 'high');
    });

    test('close_ticket with dry_run shows the change and makes none', async (t) => {
      const { session, seen } = await open(t, combination, confirmed);
      const first = dryRunOf(await call(session, 'close_ticket', { ticket_id: ticket, dry_run: true }), 'close_ticket dry run');
      assert.equal(first.rows_affected, 1);
      assert.equal(first.changes.length, 1);
      const [change] = first.changes;
      assert.equal(change.table, 'support_tickets');
      assert.equal(change.op, 'update');
      assert.equal(change.before.id, ticket);
      assert.equal(change.before.status, 'open');
      assert.equal(change.after.status, 'closed');
      assert.deepEqual({ ...change.after, status: 'open' }, change.before, 'the dry run changes more than the status');

      // Nothing changed: the same dry run again sees the ticket still open,
      // and so does closing it for real.
      const second = dryRunOf(await call(session, 'close_ticket', { ticket_id: ticket, dry_run: true }), 'second dry run');
      assert.deepEqual(second, first);
      const closed = assertResult(await call(session, 'close_ticket', { ticket_id: ticket }), 'close_ticket');
      assert.deepEqual(closed.rows, [{ id: ticket, status: 'closed' }]);
      const after = dryRunOf(await call(session, 'close_ticket', { ticket_id: ticket, dry_run: true }), 'dry run once closed');
      assert.equal(after.rows_affected, 0, JSON.stringify(after));
      assert.equal(seen.length, 0, 'close_ticket asked the user');
    });

    test('delete_closed_tickets only ever runs as a dry run, even with dry_run: false', async (t) => {
      const { session, seen } = await open(t, combination, confirmed);
      for (const args of [{}, {}, { dry_run: false }]) {
        const dry = dryRunOf(await call(session, 'delete_closed_tickets', args), `delete_closed_tickets ${JSON.stringify(args)}`);
        assert.equal(dry.rows_affected, 2, JSON.stringify(dry));
        assert.deepEqual(
          dry.changes.map((c) => [c.table, c.op, c.before.id, c.before.status]),
          [
            ['support_tickets', 'delete', 1, 'closed'],
            ['support_tickets', 'delete', 2, 'closed'],
          ],
        );
      }
      assert.equal(seen.length, 0, 'delete_closed_tickets asked the user');
    });

    if (library.protocolVersion === '2026-07-28') {
      test('a confirmation cannot be replayed, nor reused for other arguments', async (t) => {
        const { session, seen } = await open(t, combination, confirmed);
        assertResult(await call(session, 'update_ticket_priority', { ticket_id: ticket, priority: 'low' }), 'confirmed call');
        const [, retry] = toolCalls(session.traffic);
        assert.ok(retry, 'the client sent no retry with the answer');
        // The retry exactly as the library sent it, minus the envelope it
        // adds to every request anyway.
        const { _meta, ...params } = retry.request.params;

        const replayed = assertRefusal(await session.client.request({ method: 'tools/call', params }), 'APPROVAL_DENIED');
        assert.match(replayed.message, /already used/);
        const moved = assertRefusal(
          await session.client.request({
            method: 'tools/call',
            params: { ...params, arguments: { ticket_id: ticket, priority: 'normal' } },
          }),
          'APPROVAL_DENIED',
        );
        assert.match(moved.message, /arguments differ/);
        assert.equal(await priorityOf(session, ticket), 'low');
        assert.equal(seen.length, 1, 'the replays asked the user');
      });
    }
  });
}
