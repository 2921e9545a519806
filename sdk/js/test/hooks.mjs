// Module resolution hook for register.mjs: maps the WIT interface imports onto stand-ins.
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('wasmhook:adapter/')) {
    return { url: new URL('./wit-stubs.mjs', import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
