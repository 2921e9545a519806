// Unit tests for adapter.js, run natively: `npm test`. The WIT imports resolve to
// test/wit-stubs.mjs (see test/register.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { manifest, transform } from '../adapter.js';

const event = {
  id: 'evt_1',
  type: 'host.down',
  timestamp: '2026-06-13T12:00:00Z',
  data: JSON.stringify({ summary: 'web-1 stopped answering', host: 'web-1', tags: ['x'] }),
};
const context = (settings) => ({
  subscriptionId: 'sub_test', url: 'https://receiver.example.com/hook', settings,
  messageId: 'msg_test', attempt: 1, timestamp: 1781352000n,
});

test('posts the summary and the fields', () => {
  const action = transform(event, context([['channel', '#ops']]));
  assert.equal(action.tag, 'deliver');
  assert.deepEqual(action.val.headers, [['content-type', 'application/json']]);
  const body = JSON.parse(new TextDecoder().decode(action.val.body));
  assert.deepEqual(body, { channel: '#ops', text: 'host.down: web-1 stopped answering', fields: { host: 'web-1' } });
});

test('the manifest declares a required channel', () => {
  const channel = manifest().settings.find((s) => s.name === 'channel');
  assert.equal(channel.required, true);
});
