// The IACSearchSet CustomResourceDefinition, built from the zod schemas of set.ts.
// `npm run gen:crds` writes it next to the IACSearch CRD; a test fails when it is stale.
import { stringify } from 'yaml';
import { crdOf, HEADER } from './crd.ts';
import { GROUP } from './index.ts';
import { IACSearchSetStatus, MAX_SET_NAME_LENGTH, IACSearchSetSpec, SET_KIND, SET_LIST_KIND, SET_PLURAL, SET_SHORT_NAMES, SET_SINGULAR } from './set.ts';
import { jsonSchemaOf, type OpenAPISchema, toStructural } from './structural.ts';

export const SET_CRD_FILE = `crds/${GROUP}_${SET_PLURAL}.yaml`;

/**
 * The spec without defaults: the template stays as the user wrote it (each child gets the
 * defaults when it is created, as an IACSearch applied by hand), and the set's own defaults
 * (removedChildren Delete, budget.action Suspend) are the operator's.
 */
export function setSpecSchema(): OpenAPISchema {
  return toStructural(jsonSchemaOf(IACSearchSetSpec), { defaults: false, boundForCEL: true }, 'spec');
}

export function buildSetCRD(): Record<string, unknown> {
  return crdOf({
    names: { kind: SET_KIND, listKind: SET_LIST_KIND, plural: SET_PLURAL, singular: SET_SINGULAR, shortNames: SET_SHORT_NAMES },
    printerColumns: [
      { name: 'Ready', type: 'string', jsonPath: '.status.ready', description: 'Succeeded children / all children.' },
      { name: 'Running', type: 'integer', jsonPath: '.status.running', description: 'Children running.' },
      { name: 'Failed', type: 'integer', jsonPath: '.status.failed', description: 'Children that failed.' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Where the set is.', priority: 1 },
      { name: 'Best-Dice', type: 'number', jsonPath: '.status.bestChild.testDice', description: 'Highest test mean Dice of a succeeded child.' },
      { name: 'GPU-Hours', type: 'number', jsonPath: '.status.gpuHours', description: 'GPU-hours of all children.' },
      { name: 'Cost', type: 'number', jsonPath: '.status.estimatedUSD', description: 'Estimated cost of all children in USD.' },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
    description:
      'A fleet of IACSearches: one per combination of a matrix of datasets, seeds and search variants, each the template with its combination merged onto it; run at most maxParallel at once, within one budget.',
    rules: [
      {
        rule: `oldSelf.hasValue() || self.metadata.name.size() <= ${MAX_SET_NAME_LENGTH}`,
        optionalOldSelf: true,
        message: `metadata.name must be at most ${MAX_SET_NAME_LENGTH} characters: a child is named <set>-<combination> or <set>-<8-digit hash>, and a search name has at most 63`,
      },
    ],
    spec: setSpecSchema(),
    status: toStructural(jsonSchemaOf(IACSearchSetStatus), { defaults: false, boundForCEL: false }, 'status'),
  });
}

export function renderSetCRD(): string {
  return HEADER + stringify(buildSetCRD(), { lineWidth: 0 });
}
