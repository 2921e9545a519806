// wasmhook adapter for Microsoft Teams, written in JavaScript and built into a WebAssembly
// component with componentize-js (see build.mjs). It turns one event into an incoming-webhook
// message carrying an Adaptive Card 1.4: a title, a one-line summary and a FactSet of the
// payload's top-level scalar fields.
//
// Settings (all optional):
//   title        the card's title; defaults to the event type
//   theme_color  an Adaptive Card color for the title: default, dark, light, accent, good,
//                warning or attention (Adaptive Cards have no hex colors)

import { log } from 'wasmhook:adapter/log@0.1.0';

const MAX_FACTS = 10;
const SUMMARY_FIELDS = ['summary', 'message', 'title', 'description'];
const COLORS = ['default', 'dark', 'light', 'accent', 'good', 'warning', 'attention'];

// A JSON scalar as text; undefined for objects, arrays and null.
function scalarText(value) {
  return ['string', 'number', 'boolean'].includes(typeof value) ? String(value) : undefined;
}

// A setting's value, or undefined when it is missing or blank.
function setting(settings, key) {
  const pair = settings.find(([k]) => k === key);
  const value = pair && pair[1].trim();
  return value || undefined;
}

// The export `transform(event, context) -> result<action, adapter-error>`. Returning gives
// `ok`; throwing `{ message }` gives `err(adapter-error)`.
export function transform(event, context) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch (e) {
    throw { message: `event ${event.id}: data is not valid JSON: ${e.message}` };
  }
  const fields = data !== null && typeof data === 'object' && !Array.isArray(data) ? data : {};

  const title = setting(context.settings, 'title') ?? event.type;
  const color = setting(context.settings, 'theme_color');
  if (color !== undefined && !COLORS.includes(color.toLowerCase())) {
    throw { message: `setting theme_color: "${color}" is not one of ${COLORS.join(', ')}` };
  }
  const summary =
    SUMMARY_FIELDS.map((k) => scalarText(fields[k])).find((s) => s && s.trim()) ??
    `${event.type} (${event.id})`;
  const facts = Object.entries(fields)
    .filter(([k]) => !SUMMARY_FIELDS.includes(k))
    .map(([k, v]) => ({ title: k, value: scalarText(v) }))
    .filter((fact) => fact.value !== undefined)
    .slice(0, MAX_FACTS);

  const titleBlock = { type: 'TextBlock', text: title, weight: 'Bolder', size: 'Medium', wrap: true };
  if (color !== undefined) titleBlock.color = color.toLowerCase();
  const body = [titleBlock, { type: 'TextBlock', text: summary, wrap: true }];
  if (facts.length > 0) body.push({ type: 'FactSet', facts });

  const message = {
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
  };
  log('debug', `teams: card for ${event.type} ${event.id} with ${facts.length} facts`);
  return {
    tag: 'deliver',
    val: {
      method: 'POST',
      url: undefined,
      headers: [['content-type', 'application/json']],
      body: new TextEncoder().encode(JSON.stringify(message)),
    },
  };
}
