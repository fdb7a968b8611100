// Reading what the API server holds without trusting all of it: a top-level field that
// does not fit its schema is left out, the others are kept (with their defaults).
import type { z } from 'zod';

export function readFields<S extends z.ZodObject>(schema: S, raw: unknown): Partial<z.infer<S>> {
  const whole = schema.safeParse(raw ?? {});
  if (whole.success) return structuredClone(whole.data) as Partial<z.infer<S>>;
  if (typeof raw !== 'object' || raw === null) return {};
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(schema.shape) as [string, z.ZodType][]) {
    const parsed = field.safeParse((raw as Record<string, unknown>)[key]);
    if (parsed.success && parsed.data !== undefined) out[key] = structuredClone(parsed.data);
  }
  return out as Partial<z.infer<S>>;
}
