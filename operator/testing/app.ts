// Test support: the HTTP app wired to a controller the way main.ts wires them.
import type { Controller } from '../src/controller/controller.ts';
import { OperatorMetrics } from '../src/metrics/registry.ts';
import { type AppOptions, buildApp } from '../src/http/app.ts';

export function appFor(controller: Controller, extra: Partial<AppOptions> = {}) {
  return buildApp({
    metrics: new OperatorMetrics({ searches: () => [], exportsSearchMetrics: () => true, queueDepth: () => 0 }),
    isReady: () => controller.hasSynced(),
    progress: {
      accepting: () => true,
      checkToken: (ns, name, token) => controller.checkProgressToken(ns, name, token),
      accept: (ns, name, event) => controller.acceptProgress(ns, name, event),
    },
    ...extra,
  });
}
