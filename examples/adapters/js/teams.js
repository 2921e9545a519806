// wasmhook adapter for Microsoft Teams, written in JavaScript with the wasmhook.js helpers
// (sdk/js, which build.mjs copies in) and built into a WebAssembly component with componentize-js (see build.mjs). It
// turns one event into an incoming-webhook message carrying an Adaptive Card 1.4: a title,
// a one-line summary and a FactSet of the payload's top-level scalar fields.

import { AdapterError, defineAdapter, deliver, log } from './wasmhook.js';

const MAX_FACTS = 10;
const SUMMARY_FIELDS = ['summary', 'message', 'title', 'description'];
const COLORS = ['default', 'dark', 'light', 'accent', 'good', 'warning', 'attention'];

// A JSON scalar as text; undefined for objects, arrays and null.
function scalarText(value) {
  return ['string', 'number', 'boolean'].includes(typeof value) ? String(value) : undefined;
}

const adapter = defineAdapter({
  name: 'teams',
  version: '0.2.0',
  description: 'Adaptive Card messages for Microsoft Teams incoming webhooks.',
  settings: {
    title: { description: "The card's title; the event type when unset." },
    theme_color: {
      description: `An Adaptive Card color for the title, in any case: ${COLORS.join(', ')} (no hex colors).`,
    },
  },
  transform(event, settings) {
    const data = event.data;
    const fields = data !== null && typeof data === 'object' && !Array.isArray(data) ? data : {};
    const color = settings.theme_color?.toLowerCase();
    if (color !== undefined && !COLORS.includes(color)) {
      throw new AdapterError(`setting theme_color: "${settings.theme_color}" is not one of ${COLORS.join(', ')}`);
    }
    const summary =
      SUMMARY_FIELDS.map((k) => scalarText(fields[k])).find((s) => s && s.trim()) ?? `${event.type} (${event.id})`;
    const facts = Object.entries(fields)
      .filter(([k]) => !SUMMARY_FIELDS.includes(k))
      .map(([k, v]) => ({ title: k, value: scalarText(v) }))
      .filter((fact) => fact.value !== undefined)
      .slice(0, MAX_FACTS);

    const titleBlock = { type: 'TextBlock', text: settings.title ?? event.type, weight: 'Bolder', size: 'Medium', wrap: true };
    if (color !== undefined) titleBlock.color = color;
    const body = [titleBlock, { type: 'TextBlock', text: summary, wrap: true }];
    if (facts.length > 0) body.push({ type: 'FactSet', facts });

    log.debug(`teams: card for ${event.type} ${event.id} with ${facts.length} facts`);
    return deliver({
      json: {
        type: 'message',
        attachments: [
          {
            contentType: 'application/vnd.microsoft.card.adaptive',
            content: {
              $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
              type: 'AdaptiveCard',
              version: '1.4',
              body,
            },
          },
        ],
      },
    });
  },
});

export const manifest = adapter.manifest;
export const transform = adapter.transform;
