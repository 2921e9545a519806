// Types for wasmhook.js and for the WIT world wasmhook:adapter@0.2.0 as componentize-js
// binds it. Editors pick them up for `import ... from './wasmhook.js'`.

/** How loud a log line is. */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** The type of a setting's value; values always arrive as text and are typed by wasmhook.js. */
export type SettingType = 'string' | 'integer' | 'number' | 'boolean' | 'url' | 'list';

/** One setting, as declared in `defineAdapter({ settings })`. */
export interface SettingDeclaration {
  /** What the value must parse as; default `string`. */
  type?: SettingType;
  /** A subscription without it is refused. */
  required?: boolean;
  /** A credential: never shown back by the engine. */
  secret?: boolean;
  /** Used when a subscription leaves it unset. */
  default?: string | number | boolean;
  /** When given, the only values (for a list, items) accepted. */
  allowed?: string[];
  /** For the operator; `wasmhook plugin check` prints it. */
  description?: string;
}

/** The event, with its payload parsed. */
export interface Event {
  /** The event id, stable across retries. */
  id: string;
  /** The event type, such as `host.down`. */
  type: string;
  /** When the engine accepted it, RFC 3339 in UTC. */
  timestamp: string;
  /** The payload. */
  data: any;
  /** The payload as the producer sent it, byte for byte. */
  dataJson: string;
}

/** Where and for whom this delivery is made (the WIT `context` record). */
export interface Context {
  subscriptionId: string;
  url: string;
  /** The raw settings, sorted by key, defaults filled in. */
  settings: [string, string][];
  /** The `webhook-id` of this delivery. */
  messageId: string;
  /** 1 for the first attempt. */
  attempt: number;
  /** Unix seconds of this attempt (`webhook-timestamp`), as a BigInt. */
  timestamp: bigint;
}

/** What `deliver()` and `skip()` return; opaque. */
export interface Answer {
  readonly __wasmhookAnswer: unique symbol;
}

export interface DeliverOptions {
  /** Serialised with JSON.stringify; content-type application/json. */
  json?: unknown;
  /** Sent as UTF-8; content-type text/plain. */
  text?: string;
  /** Sent byte for byte. */
  body?: string | Uint8Array | ArrayBuffer;
  /** The content-type header, overriding the default of `json` and `text`. */
  contentType?: string;
  /** POST (default), PUT or PATCH. */
  method?: 'POST' | 'PUT' | 'PATCH';
  /** Send here instead of the subscription's URL. */
  url?: string;
  /** Extra headers. */
  headers?: Record<string, string> | [string, string][];
}

/** The request to send; exactly one of `json`, `text`, `body`. */
export function deliver(options: DeliverOptions): Answer;
/** Send nothing; recorded as skipped with this reason. */
export function skip(reason: string): Answer;

/** Throw it (or any Error) to fail the attempt with its message. */
export class AdapterError extends Error {}

export const log: Record<LogLevel, (message: string) => void>;

/** HMAC-SHA256 under each active signing secret, newest first, computed by the engine. */
export function hmacSha256(message: string | Uint8Array): Uint8Array[];
export function hex(data: Uint8Array): string;
export function base64(data: Uint8Array): string;

export interface AdapterDefinition<S> {
  name: string;
  version?: string;
  description?: string;
  settings?: Record<string, SettingDeclaration>;
  transform(event: Event, settings: S, context: Context): Answer;
}

/** The world's two exports, to re-export from the adapter's module. */
export interface Exports {
  manifest(): unknown;
  transform(event: unknown, context: Context): unknown;
}

export function defineAdapter<S = Record<string, any>>(definition: AdapterDefinition<S>): Exports;
