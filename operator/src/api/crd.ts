// The IACSearch CustomResourceDefinition, built from the zod schemas (the one source of
// truth). `npm run gen:crds` writes it to crds/; a test fails when the file is stale.
import { stringify } from 'yaml';
import { CATEGORIES, GROUP, KIND, LIST_KIND, MAX_NAME_LENGTH, PLURAL, SHORT_NAMES, SINGULAR, VERSION } from './index.ts';
import { IACSearchSpec, IMMUTABLE_SPEC_FIELDS, LABEL_KEY_PATTERN } from './spec.ts';
import { IACSearchStatus } from './status.ts';
import { jsonSchemaOf, type OpenAPISchema, toStructural } from './structural.ts';

export const CRD_FILE = `crds/${GROUP}_${PLURAL}.yaml`;

/** CEL rules on spec: the search definition is fixed at creation, as a Job's pod template is. */
function immutabilityRules(): Array<{ rule: string; message: string }> {
  return IMMUTABLE_SPEC_FIELDS.map((f) => ({
    rule: `has(self.${f}) == has(oldSelf.${f}) && (!has(self.${f}) || self.${f} == oldSelf.${f})`,
    message: `spec.${f} is immutable: it defines the search (and where its checkpoints are). Create a new IACSearch to change it; suspend, budget, backoffLimit, cost, the deadlines and queueName stay editable.`,
  }));
}

/**
 * CEL rules on the whole object. The name is the iac.dev/search label value of every child,
 * so it has the label-value limit. Checked at creation only (names never change), so a
 * search stored before the rule existed keeps its status writable and is told why it cannot
 * run by the operator instead.
 */
export function rootRules(): Array<Record<string, unknown>> {
  return [
    {
      rule: `oldSelf.hasValue() || self.metadata.name.size() <= ${MAX_NAME_LENGTH}`,
      optionalOldSelf: true,
      message: `metadata.name must be at most ${MAX_NAME_LENGTH} characters: it is the iac.dev/search label value of every pod, Secret and claim of the search`,
    },
  ];
}

export function specSchema(): OpenAPISchema {
  // No default for spec itself: it is required (see rootRules), so a search whose spec was
  // lost to a typo is refused instead of starting a full-length default search.
  const spec = toStructural(jsonSchemaOf(IACSearchSpec), { defaults: true, boundForCEL: true }, 'spec');
  spec['x-kubernetes-validations'] = immutabilityRules();
  const properties = spec.properties as Record<string, OpenAPISchema>;
  // What the Pod API would refuse with 422 only when the operator creates the first pod:
  // refused here, when the search is applied. (The operator checks the same, for searches
  // stored before these rules existed.)
  const resources = properties.resources.properties as Record<string, OpenAPISchema>;
  resources.nodeSelector['x-kubernetes-validations'] = [
    {
      rule: `self.all(k, k.matches('${LABEL_KEY_PATTERN}'))`,
      message:
        "resources.nodeSelector: every key must be a label key: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (e.g. nvidia.com/gpu.product)",
    },
  ];
  (resources.tolerations.items as OpenAPISchema)['x-kubernetes-validations'] = [
    {
      rule: "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
      message: 'a toleration without a key must have operator Exists',
    },
    {
      rule: `!has(self.key) || self.key == '' || self.key.matches('${LABEL_KEY_PATTERN}')`,
      message: 'toleration key must be a label key (e.g. nvidia.com/gpu)',
    },
    {
      rule: "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
      message: 'toleration value must be empty when operator is Exists',
    },
    {
      rule: "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
      message: 'tolerationSeconds is only allowed with effect NoExecute',
    },
  ];
  properties.search['x-kubernetes-validations'] = [
    {
      rule: '!has(self.warmupEpochs) || !has(self.maxEpochs) || self.warmupEpochs < self.maxEpochs',
      message: 'search.warmupEpochs must be below search.maxEpochs: the architecture would never be trained',
    },
  ];
  properties.dataset['x-kubernetes-validations'] = [
    {
      rule: "!has(self.format) || self.format == 'phantom' || has(self.path)",
      message: "dataset.path is required for formats 'msd' and 'nnunet': the directory that holds dataset.json (relative to the claim when dataset.pvc is set)",
    },
    {
      rule: '!has(self.split) || (self.split.train + self.split.val + self.split.test > 0.999999 && self.split.train + self.split.val + self.split.test < 1.000001)',
      message: 'dataset.split: train + val + test must be 1',
    },
  ];
  const evaluate = properties.evaluate.properties as Record<string, OpenAPISchema>;
  evaluate.external['x-kubernetes-validations'] = [
    {
      rule: 'self.all(a, self.exists_one(b, b.name == a.name))',
      message: 'evaluate.external: every external dataset needs its own name (its results go to <workdir>/external/<name>/)',
    },
  ];
  return spec;
}

export function statusSchema(): OpenAPISchema {
  return toStructural(jsonSchemaOf(IACSearchStatus), { defaults: false, boundForCEL: false }, 'status');
}

/** A kind's names, printer columns and schema: what differs between the two CRDs. */
export interface CRDParts {
  names: { kind: string; listKind: string; plural: string; singular: string; shortNames: string[] };
  printerColumns: Array<Record<string, unknown>>;
  description: string;
  rules: Array<Record<string, unknown>>;
  spec: OpenAPISchema;
  status: OpenAPISchema;
}

/** A namespaced CRD of this group, one served and stored version with a status subresource. */
export function crdOf(parts: CRDParts): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${parts.names.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'iac-operator', 'app.kubernetes.io/part-of': 'iac-operator' },
    },
    spec: {
      group: GROUP,
      names: { ...parts.names, categories: CATEGORIES },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: parts.printerColumns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: parts.description,
              required: ['spec'],
              'x-kubernetes-validations': parts.rules,
              properties: {
                apiVersion: { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' },
                kind: { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' },
                metadata: { type: 'object' },
                spec: parts.spec,
                status: parts.status,
              },
            },
          },
        },
      ],
    },
  };
}

export function buildCRD(): Record<string, unknown> {
  return crdOf({
    names: { kind: KIND, listKind: LIST_KIND, plural: PLURAL, singular: SINGULAR, shortNames: SHORT_NAMES },
    printerColumns: [
      { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Where the search is.' },
      { name: 'Epoch', type: 'integer', jsonPath: '.status.progress.epoch', description: 'Epoch of the running phase.' },
      { name: 'Stable', type: 'string', jsonPath: '.status.progress.stable', description: 'Stable cell edges / all cell edges.' },
      { name: 'Dice', type: 'number', jsonPath: '.status.results.meanDice', description: 'Mean test-set Dice.' },
      {
        name: 'Gain',
        type: 'number',
        jsonPath: '.status.results.diceGain',
        description: 'Gain of the cells over the U-Net trained with the same budget (test-set Dice; with spec.evaluate.baseline).',
        priority: 1,
      },
      { name: 'GPU-Hours', type: 'number', jsonPath: '.status.cost.gpuHours', description: 'GPU-hours used.' },
      { name: 'Cost', type: 'number', jsonPath: '.status.cost.estimatedUSD', description: 'Estimated cost in USD.' },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
    description:
      'A neural-architecture search of Implantable Adaptive Cells (IAC-LTH) for a U-Net on a medical segmentation dataset, run as one pod per phase: search, prune, retrain, evaluate.',
    rules: rootRules(),
    spec: specSchema(),
    status: statusSchema(),
  });
}

export const HEADER = '# Generated by `npm run gen:crds` from operator/src/api. Do not edit by hand.\n';

export function renderCRD(): string {
  return HEADER + stringify(buildCRD(), { lineWidth: 0 });
}
