// Builds teams.wasm from teams.js with the componentize-js JS API. The `jco componentize` CLI
// is not used: on this machine it fails with "failed to get path metadata (os error 44)".
// `http` and `fetch-event` are disabled so the component imports no wasi:http, which the
// engine does not link; it still imports wasi:cli/io/clocks/random, which the engine provides.

import { componentize } from '@bytecodealliance/componentize-js';
import { copyFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

// componentize-js reads only the source's own folder, so the helper module is copied in
// from sdk/js at every build (and ignored by git) rather than kept as a second copy.
await copyFile(here('../../../sdk/js/wasmhook.js'), here('./wasmhook.js'));

const { component } = await componentize({
  sourcePath: here('./teams.js'),
  witPath: here('../../../wit/v0.2.0'),
  worldName: 'adapter',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(here('./teams.wasm'), component);
console.log(`wrote teams.wasm (${component.length} bytes)`);
