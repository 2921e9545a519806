// Lets the adapter run under `node --test`: imports of the WIT interfaces
// (`wasmhook:adapter/log@0.2.0`, `.../signing@0.2.0`) resolve to wit-stubs.mjs, which logs
// to an array and signs with the secrets a test sets. Loaded with `node --import`.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
