// Builds {{name}}.wasm from adapter.js with componentize-js (`npm run build`, or
// `wasmhook plugin build`, which also installs the tools on first use). The library is
// called directly: the `jco componentize` command line cannot read the sources on some
// machines ("failed to get path metadata (os error 44)"). `http` and `fetch-event` are
// disabled so the component imports no wasi:http, which the engine does not provide.

import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

const { component } = await componentize({
  sourcePath: here('./adapter.js'),
  witPath: here('./wit'),
  worldName: 'adapter',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(here('./{{name}}.wasm'), component);
console.log(`wrote {{name}}.wasm (${component.length} bytes)`);
