// Stand-ins for the engine's imports in unit tests: `log` collects lines in `logs`, and
// `hmacSha256` signs with the secrets given to `setSigningSecrets` (newest first):
// `whsec_` secrets by their base64-decoded key, plain ones by their text, as the engine does.
import { createHmac } from 'node:crypto';

export const logs = [];
let keys = [];

export function log(level, message) {
  logs.push(`${level}: ${message}`);
}

export function hmacSha256(message) {
  return keys.map((key) => new Uint8Array(createHmac('sha256', key).update(message).digest()));
}

export function setSigningSecrets(secrets) {
  keys = secrets.map((s) => (s.startsWith('whsec_') ? Buffer.from(s.slice(6), 'base64') : Buffer.from(s)));
}
