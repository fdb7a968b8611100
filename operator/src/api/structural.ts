// Converts zod 4's JSON Schema (draft 2020-12) into a Kubernetes structural OpenAPI v3
// schema: every node typed, no $schema/$ref/anyOf at type level, OpenAPI 3.0 forms of
// nullable and exclusive bounds, and no +-2^53 bounds that zod adds to integers.
import { z } from 'zod';

export type OpenAPISchema = { [key: string]: unknown };

export interface StructuralOptions {
  /** Keep `default` values (spec: yes, so the API server fills them in; status: no). */
  defaults: boolean;
  /**
   * Give every string and array a bound so CEL rules over them have a bounded cost
   * (the API server rejects rules whose estimated cost is too high).
   */
  boundForCEL: boolean;
}

const SAFE_INTEGER = Number.MAX_SAFE_INTEGER;
const DEFAULT_MAX_LENGTH = 4096;
const DEFAULT_MAX_ITEMS = 64;
const DEFAULT_MAX_PROPERTIES = 64;

/** JSON Schema of a zod schema as the API server sees its input (defaults make fields optional). */
export function jsonSchemaOf(schema: z.ZodType): OpenAPISchema {
  return z.toJSONSchema(schema, { io: 'input', reused: 'inline', cycles: 'throw', unrepresentable: 'any' }) as OpenAPISchema;
}

export function toStructural(node: OpenAPISchema, opts: StructuralOptions, path = '(root)'): OpenAPISchema {
  for (const unsupported of ['$ref', 'anyOf', 'oneOf', 'allOf', 'prefixItems', 'not', 'if']) {
    if (unsupported in node) {
      throw new Error(`${path}: '${unsupported}' cannot be expressed in a structural schema; use a plain object, enum or record instead`);
    }
  }
  const out: OpenAPISchema = {};
  let type = node.type;
  if (Array.isArray(type)) {
    const nonNull = type.filter((t) => t !== 'null');
    if (nonNull.length !== 1) throw new Error(`${path}: a value of several types (${type.join(', ')}) is not structural`);
    type = nonNull[0];
    if (nonNull.length !== (node.type as unknown[]).length) out.nullable = true;
  }
  if ('const' in node) {
    out.enum = [node.const];
    type ??= typeof node.const === 'number' ? 'number' : typeof node.const;
  }
  if (node.description !== undefined) out.description = node.description;

  // An unknown value (z.unknown(), z.any()) keeps whatever it is given.
  if (type === undefined) {
    if (Object.keys(node).some((k) => !['description', 'default'].includes(k))) {
      throw new Error(`${path}: schema without a type: ${JSON.stringify(node)}`);
    }
    out['x-kubernetes-preserve-unknown-fields'] = true;
    return out;
  }
  out.type = type;
  if (opts.defaults && node.default !== undefined) out.default = node.default;
  if (node.enum !== undefined) out.enum = node.enum;

  switch (type) {
    case 'integer':
    case 'number': {
      if (typeof node.minimum === 'number' && node.minimum > -SAFE_INTEGER) out.minimum = node.minimum;
      if (typeof node.maximum === 'number' && node.maximum < SAFE_INTEGER) out.maximum = node.maximum;
      if (typeof node.exclusiveMinimum === 'number') {
        out.minimum = node.exclusiveMinimum;
        out.exclusiveMinimum = true;
      }
      if (typeof node.exclusiveMaximum === 'number') {
        out.maximum = node.exclusiveMaximum;
        out.exclusiveMaximum = true;
      }
      if (type === 'integer') out.format = 'int64';
      break;
    }
    case 'string': {
      for (const k of ['minLength', 'maxLength', 'pattern', 'format'] as const) if (node[k] !== undefined) out[k] = node[k];
      if (opts.boundForCEL && out.maxLength === undefined) {
        out.maxLength = Array.isArray(out.enum) ? Math.max(...out.enum.map((e) => String(e).length)) : DEFAULT_MAX_LENGTH;
      }
      break;
    }
    case 'boolean':
      break;
    case 'array': {
      if (node.items === undefined || Array.isArray(node.items)) throw new Error(`${path}: an array needs one item schema`);
      out.items = toStructural(node.items as OpenAPISchema, opts, `${path}[]`);
      for (const k of ['minItems', 'maxItems'] as const) if (node[k] !== undefined) out[k] = node[k];
      if (opts.boundForCEL && out.maxItems === undefined) out.maxItems = DEFAULT_MAX_ITEMS;
      break;
    }
    case 'object': {
      const props = node.properties as Record<string, OpenAPISchema> | undefined;
      const additional = node.additionalProperties;
      if (props && Object.keys(props).length > 0) {
        out.properties = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, toStructural(v, opts, `${path}.${k}`)]));
        const required = (node.required as string[] | undefined)?.filter((r) => r in props);
        if (required && required.length > 0) out.required = required;
      } else if (additional !== undefined && additional !== false && additional !== true) {
        const value = additional as OpenAPISchema;
        if (Object.keys(value).filter((k) => k !== 'description').length === 0) {
          out['x-kubernetes-preserve-unknown-fields'] = true; // a record of unknown values
        } else {
          out.additionalProperties = toStructural(value, opts, `${path}.*`);
          if (opts.boundForCEL) out.maxProperties = DEFAULT_MAX_PROPERTIES;
        }
      } else {
        out['x-kubernetes-preserve-unknown-fields'] = true;
      }
      break;
    }
    default:
      throw new Error(`${path}: unsupported type '${String(type)}'`);
  }
  return out;
}
