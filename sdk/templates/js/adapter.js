// {{name}}: a wasmhook adapter. It posts each event to a chat channel as
// {"channel": ..., "text": "<type>: <summary>", "fields": {...}}.
//
// Build: wasmhook plugin build (or npm install && npm run build).
// Try:   wasmhook plugin run {{name}}.wasm --event sample-event.json --set channel=#ops
// Test:  npm test

// @ts-check
import { defineAdapter, deliver, log } from './wasmhook.js';

const SUMMARY_FIELDS = ['summary', 'message', 'title'];

/** A JSON scalar as text; undefined for objects, arrays and null. */
function scalarText(value) {
  return ['string', 'number', 'boolean'].includes(typeof value) ? String(value) : undefined;
}

const adapter = defineAdapter({
  name: '{{name}}',
  version: '0.1.0',
  description: 'Posts each event to a chat channel.',
  // The engine refuses a subscription whose settings do not fit, before the first delivery.
  settings: {
    channel: { type: 'string', required: true, description: 'The channel to post to, such as #ops.' },
    title: { type: 'string', description: 'The line before the summary; the event type when unset.' },
    max_fields: { type: 'integer', default: '10', description: 'How many payload fields to show.' },
  },
  transform(event, settings) {
    const data = event.data ?? {};
    const summary = SUMMARY_FIELDS.map((k) => scalarText(data[k])).find((s) => s) ?? `event ${event.id}`;
    const fields = Object.fromEntries(
      Object.entries(data)
        .filter(([k]) => k !== 'summary')
        .map(([k, v]) => [k, scalarText(v)])
        .filter(([, v]) => v !== undefined)
        .slice(0, settings.max_fields),
    );
    log.debug(`${Object.keys(fields).length} fields for ${event.id}`);
    return deliver({
      json: { channel: settings.channel, text: `${settings.title ?? event.type}: ${summary}`, fields },
    });
  },
});

export const manifest = adapter.manifest;
export const transform = adapter.transform;
