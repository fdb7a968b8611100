// Registers tfjs-core's own gradient functions. The CommonJS build of tfjs-core that
// Node loads (dist/tf-core.node.js) has the gradient registry but none of the
// gradients: they ship only as tfjs-core's unbundled ES modules
// (dist/register_all_gradients.js), which the @tensorflow/tfjs union package pulls
// in. That package is not a dependency here, and those modules use extensionless
// relative imports in a package without "type": "module", which Node cannot load as
// they are. A resolve/load hook limited to tfjs-core's dist folder adds the
// extension and loads them as ES modules. The registry, engine and tensor class are
// process globals in tfjs-core, so the gradients registered this way serve the
// CommonJS build as well.
import { registerHooks } from 'node:module';

const DIST = '/@tensorflow/tfjs-core/dist/';
const BUNDLE = /\/tf-core\.[a-z0-9.]*js$/;

let loaded: Promise<void> | undefined;

function inUnbundledCore(url: string | undefined): boolean {
  return typeof url === 'string' && url.includes(DIST) && !BUNDLE.test(url);
}

export function registerCoreGradients(): Promise<void> {
  loaded ??= (async () => {
    const hooks = registerHooks({
      resolve(specifier, context, next) {
        if (inUnbundledCore(context.parentURL) && specifier.startsWith('.') && !specifier.endsWith('.js')) {
          try {
            return next(`${specifier}.js`, context);
          } catch {
            return next(`${specifier}/index.js`, context);
          }
        }
        return next(specifier, context);
      },
      load(url, context, next) {
        if (inUnbundledCore(url)) return { ...next(url, { ...context, format: 'module' }), format: 'module' };
        return next(url, context);
      },
    });
    try {
      const spec: string = '@tensorflow/tfjs-core/dist/register_all_gradients.js';
      await import(spec);
    } finally {
      hooks.deregister();
    }
  })();
  return loaded;
}
