// Unit tests of wasmhook.js itself: typed settings, the answers `deliver` builds, and the
// clear errors for wrong return types. `node --import ./test/register.mjs --test
// test/wasmhook.test.mjs` from sdk/js (scripts/test runs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { defineAdapter, deliver, skip, hmacSha256, hex, AdapterError } from '../wasmhook.js';
import { setSigningSecrets, logs } from './wit-stubs.mjs';

const event = { id: 'evt_1', type: 'a.b', timestamp: '2026-06-13T12:00:00Z', data: '{"n":1}' };
const context = (settings = []) => ({
  subscriptionId: 's', url: 'https://r.example/', settings, messageId: 'msg_1', attempt: 1, timestamp: 1n,
});
const adapter = (transform, settings = {}) => defineAdapter({ name: 't', settings, transform });
const failure = (fn) => {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('expected a failure');
};

test('settings arrive typed, with defaults', () => {
  let seen;
  const a = adapter((e, s) => { seen = s; return skip('x'); }, {
    n: { type: 'integer', default: '3' }, on: { type: 'boolean' }, items: { type: 'list' }, name: { type: 'string' },
  });
  a.transform(event, context([['on', 'true'], ['items', 'a, b,,c']]));
  assert.deepEqual(seen, { n: 3, on: true, items: ['a', 'b', 'c'], name: undefined });
  assert.deepEqual(a.manifest().settings.map((s) => [s.name, s.type, s.default]), [
    ['n', 'integer', '3'], ['on', 'boolean', undefined], ['items', 'list', undefined], ['name', 'string', undefined],
  ]);
});

test('deliver encodes json, text and string bodies', () => {
  const json = adapter(() => deliver({ json: { a: 1 } })).transform(event, context());
  assert.equal(json.tag, 'deliver');
  assert.equal(new TextDecoder().decode(json.val.body), '{"a":1}');
  assert.deepEqual(json.val.headers, [['content-type', 'application/json']]);
  const body = adapter(() => deliver({ body: 'raw text', contentType: 'text/csv' })).transform(event, context());
  assert.equal(new TextDecoder().decode(body.val.body), 'raw text', 'a string body is not lost');
  assert.deepEqual(body.val.headers, [['content-type', 'text/csv']]);
  assert.deepEqual(adapter(() => skip('quiet')).transform(event, context()), { tag: 'skip', val: 'quiet' });
});

test('wrong return types fail with a message saying what to return', () => {
  for (const [answer, said] of [
    ['a string', 'transform returned a string'],
    [{ tag: 'deliver', val: { body: 'x' } }, 'transform returned an object (keys: tag, val)'],
    [undefined, 'transform returned nothing'],
    [Promise.resolve(1), 'transform returned a Promise'],
  ]) {
    const e = failure(() => adapter(() => answer).transform(event, context()));
    assert.ok(e.message.includes(said), e.message);
    assert.ok(e.message.includes('deliver') && e.message.includes('skip'), e.message);
    assert.ok(!(e instanceof Error), 'thrown as { message } so componentize-js makes it an adapter-error');
  }
  const e = failure(() => adapter(() => deliver({ body: { a: 1 } })).transform(event, context()));
  assert.ok(e.message.includes('deliver({ body }) must be a string or a Uint8Array'), e.message);
  const thrown = failure(() => adapter(() => { throw new AdapterError('no route'); }).transform(event, context()));
  assert.deepEqual(thrown, { message: 'no route' });
});

test('a missing required setting and bad JSON data say so', () => {
  const e = failure(() => adapter(() => skip('x'), { room: { required: true } }).transform(event, context()));
  assert.equal(e.message, 'setting room is required');
  const bad = failure(() => adapter(() => skip('x')).transform({ ...event, data: '{' }, context()));
  assert.ok(bad.message.startsWith('event evt_1: data is not valid JSON'), bad.message);
});

test('signing and logging go through the imports', () => {
  setSigningSecrets(["It's a Secret to Everybody"]);
  assert.equal(hex(hmacSha256('Hello, World!')[0]), '757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17');
  adapter(() => skip('x')).transform(event, context());
  assert.ok(Array.isArray(logs));
});
