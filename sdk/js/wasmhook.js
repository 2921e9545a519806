// wasmhook.js: helpers for writing wasmhook adapters in JavaScript, for the WIT world
// wasmhook:adapter@0.2.0 built with componentize-js. Types are in wasmhook.d.ts.
//
//   import { defineAdapter, deliver, skip, log } from './wasmhook.js';
//
//   const adapter = defineAdapter({
//     name: 'chat', version: '0.1.0', description: 'Posts events to a chat room.',
//     settings: {
//       room: { type: 'string', required: true, description: 'The room to post to.' },
//       max_fields: { type: 'integer', default: '10', description: 'Most fields shown.' },
//     },
//     transform(event, settings, context) {
//       return deliver({ json: { room: settings.room, text: event.type } });
//     },
//   });
//   export const manifest = adapter.manifest;
//   export const transform = adapter.transform;
//
// `defineAdapter` parses the payload and the settings (typed as the manifest says), and
// checks what `transform` returns: a wrong return type fails the attempt with a message
// saying what to return, instead of an empty body. Throwing fails the attempt with the
// error's message, retried on the subscription's schedule.

import { log as witLog } from 'wasmhook:adapter/log@0.2.0';
import { hmacSha256 as witHmacSha256 } from 'wasmhook:adapter/signing@0.2.0';

const SETTING_TYPES = ['string', 'integer', 'number', 'boolean', 'url', 'list'];

/** Log lines for the operator: the engine's log, and `wasmhook plugin run`'s output. */
export const log = {
  trace: (message) => witLog('trace', String(message)),
  debug: (message) => witLog('debug', String(message)),
  info: (message) => witLog('info', String(message)),
  warn: (message) => witLog('warn', String(message)),
  error: (message) => witLog('error', String(message)),
};

const encoder = new TextEncoder();

function bytes(value, what) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new AdapterError(`${what} must be a string or a Uint8Array, not ${describe(value)}`);
}

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'a Uint8Array';
  if (typeof value === 'object') return `an object (keys: ${Object.keys(value).join(', ') || 'none'})`;
  return `a ${typeof value}`;
}

/**
 * HMAC-SHA256 of `message` (a string is UTF-8 encoded) under each of the subscription's
 * active signing secrets, newest first: one MAC normally, two during a rotation's grace
 * period. The engine computes it; the secret never enters the adapter.
 */
export function hmacSha256(message) {
  return witHmacSha256(bytes(message, 'the message to sign'));
}

/** Lower-case hex of bytes, as GitHub-style signatures use. */
export function hex(data) {
  return Array.from(data, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Standard base64 of bytes. */
export function base64(data) {
  let text = '';
  for (const b of data) text += String.fromCharCode(b);
  return btoa(text);
}

/** Fails the attempt with this message; it is retried on the subscription's schedule. */
export class AdapterError extends Error {}

const DELIVER = Symbol('wasmhook.deliver');
const SKIP = Symbol('wasmhook.skip');

/**
 * The request to send. Give the body as exactly one of `json` (serialised, with
 * `content-type: application/json`), `text` (`text/plain; charset=utf-8`) or `body`
 * (a string or Uint8Array, sent byte for byte, with `contentType` if given).
 */
export function deliver({ json, text, body, contentType, method = 'POST', url, headers = {} } = {}) {
  const given = [json !== undefined, text !== undefined, body !== undefined].filter(Boolean).length;
  if (given !== 1) {
    throw new AdapterError('deliver() takes exactly one of { json }, { text } or { body }');
  }
  let payload;
  let type = contentType;
  if (json !== undefined) {
    payload = encoder.encode(JSON.stringify(json));
    type ??= 'application/json';
  } else if (text !== undefined) {
    if (typeof text !== 'string') throw new AdapterError(`deliver({ text }) needs a string, not ${describe(text)}`);
    payload = encoder.encode(text);
    type ??= 'text/plain; charset=utf-8';
  } else {
    payload = bytes(body, 'deliver({ body })');
  }
  const pairs = Array.isArray(headers) ? headers.map(([k, v]) => [String(k), String(v)]) : Object.entries(headers).map(([k, v]) => [k, String(v)]);
  if (type !== undefined && !pairs.some(([k]) => k.toLowerCase() === 'content-type')) {
    pairs.unshift(['content-type', type]);
  }
  if (url !== undefined && typeof url !== 'string') throw new AdapterError(`deliver({ url }) needs a string, not ${describe(url)}`);
  return { [DELIVER]: true, method: String(method).toUpperCase(), url, headers: pairs, body: payload };
}

/** Send nothing for this event; the delivery is recorded as skipped with this reason. */
export function skip(reason) {
  return { [SKIP]: true, reason: String(reason) };
}

function settingList(settings) {
  const list = Array.isArray(settings)
    ? settings
    : Object.entries(settings ?? {}).map(([name, s]) => ({ name, ...s }));
  return list.map((s) => {
    if (!SETTING_TYPES.includes(s.type ?? 'string')) {
      throw new Error(`setting ${s.name}: type must be one of ${SETTING_TYPES.join(', ')}`);
    }
    return {
      name: s.name,
      type: s.type ?? 'string',
      required: Boolean(s.required),
      secret: Boolean(s.secret),
      default: s.default === undefined ? undefined : String(s.default),
      allowed: (s.allowed ?? []).map(String),
      description: s.description ?? '',
    };
  });
}

function typed(spec, text) {
  switch (spec.type) {
    case 'integer':
    case 'number':
      return Number(text);
    case 'boolean':
      return text === 'true';
    case 'list':
      return text.split(',').map((s) => s.trim()).filter((s) => s !== '');
    default:
      return text;
  }
}

/** The settings as an object: typed by the manifest, defaults filled, unset ones absent. */
function parseSettings(specs, pairs) {
  const raw = new Map(pairs.filter(([, v]) => v.trim() !== '').map(([k, v]) => [k, v.trim()]));
  const out = {};
  for (const spec of specs) {
    const text = raw.get(spec.name) ?? spec.default;
    if (text === undefined) {
      if (spec.required) throw new AdapterError(`setting ${spec.name} is required`);
      out[spec.name] = spec.type === 'list' ? [] : undefined;
    } else {
      out[spec.name] = typed(spec, text);
    }
  }
  return out;
}

function toAction(answer) {
  if (answer && answer[DELIVER]) {
    const { method, url, headers, body } = answer;
    return { tag: 'deliver', val: { method, url, headers, body } };
  }
  if (answer && answer[SKIP]) return { tag: 'skip', val: answer.reason };
  if (answer instanceof Promise) {
    throw new AdapterError('transform returned a Promise: adapters run synchronously, so drop `async` and return deliver(...) or skip(...)');
  }
  throw new AdapterError(
    `transform returned ${answer === undefined ? 'nothing' : describe(answer)}; ` +
      'return deliver({ json }) / deliver({ text }) / deliver({ body }) to send a request, or skip(reason) to send nothing',
  );
}

/**
 * Wraps an adapter into the two exports the world needs. `transform(event, settings,
 * context)` gets the payload parsed (`event.data`, with the raw text in `event.dataJson`)
 * and the settings typed; it returns `deliver(...)` or `skip(...)`, or throws.
 */
export function defineAdapter({ name, version = '0.1.0', description = '', settings = {}, transform }) {
  const specs = settingList(settings);
  if (typeof transform !== 'function') throw new Error('defineAdapter needs a transform function');
  return {
    manifest() {
      return { name, version, description, settings: specs };
    },
    transform(event, context) {
      try {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch (e) {
          throw new AdapterError(`event ${event.id}: data is not valid JSON: ${e.message}`);
        }
        const parsed = { id: event.id, type: event.type, timestamp: event.timestamp, data, dataJson: event.data };
        const typedSettings = parseSettings(specs, context.settings);
        return toAction(transform(parsed, typedSettings, context));
      } catch (e) {
        // componentize-js turns a thrown `{ message }` into err(adapter-error).
        throw { message: e instanceof Error ? e.message : String(e) };
      }
    },
  };
}
