// The IACSearchSet API (nas.iac.dev/v1alpha1): a fleet of IACSearches generated from one
// template and a matrix of datasets, seeds and search variants (docs/fleets.md). The CRD is
// generated from these schemas, as IACSearch's is from spec.ts and status.ts.
import { z } from 'zod';
import { Condition } from './status.ts';
import { Budget, IACSearchDataset, IACSearchSpec, QueueName } from './spec.ts';
import { SearchConfig } from '../../../trainer/src/config/index.ts';

export const SET_KIND = 'IACSearchSet';
export const SET_LIST_KIND = 'IACSearchSetList';
export const SET_PLURAL = 'iacsearchsets';
export const SET_SINGULAR = 'iacsearchset';
export const SET_SHORT_NAMES = ['iacss'];

/** Children a set may have: the product of the matrix's axes is refused above this. */
export const MAX_CHILDREN = 64;
/** Items of one matrix axis. */
export const MAX_AXIS_ITEMS = 64;
/**
 * Longest set name: a child is named `<set>-<key>`, and at worst `<set>-<8 hex digits>`,
 * which must fit the 63 characters of a search name (MAX_NAME_LENGTH).
 */
export const MAX_SET_NAME_LENGTH = 54;
/** Names of children (search names). */
const CHILD_NAME = 63;
/** Names of matrix items (part of the children's names). */
export const MAX_ITEM_NAME_LENGTH = 20;

const ItemName = z
  .string()
  .min(1)
  .max(MAX_ITEM_NAME_LENGTH)
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
    'must be a DNS label (lowercase letters, digits and "-"), at most 20 characters: it becomes part of the children\'s names',
  );

export const MatrixDataset = IACSearchDataset.partial()
  .extend({ name: ItemName.describe("Name of this dataset in the children's names and the status table (e.g. acdc).") })
  .describe('A dataset: its fields are merged onto template.dataset.');

export const MatrixSearch = SearchConfig.partial()
  .extend({ name: ItemName.describe("Name of this search variant in the children's names and the status table (e.g. lth, full).") })
  .describe('A search variant: its fields are merged onto template.search.');

const uniqueNames = (axis: string) => (items: Array<{ name: string }>, ctx: z.RefinementCtx) => {
  items.forEach((item, i) => {
    const first = items.findIndex((other) => other.name === item.name);
    if (first < i)
      ctx.addIssue({
        code: 'custom',
        path: [i, 'name'],
        message: `'${item.name}' is also the name of matrix.${axis}[${first}]; every item needs its own name`,
      });
  });
};

export const Matrix = z
  .object({
    datasets: z
      .array(MatrixDataset)
      .min(1)
      .max(MAX_AXIS_ITEMS)
      .superRefine(uniqueNames('datasets'))
      .optional()
      .describe('Datasets, each merged onto template.dataset.'),
    seeds: z
      .array(z.int().min(0).max(2147483647))
      .min(1)
      .max(MAX_AXIS_ITEMS)
      .refine((seeds) => new Set(seeds).size === seeds.length, 'every seed at most once')
      .optional()
      .describe('Seeds, each replacing template.seed.'),
    search: z
      .array(MatrixSearch)
      .min(1)
      .max(MAX_AXIS_ITEMS)
      .superRefine(uniqueNames('search'))
      .optional()
      .describe('Search variants, each merged onto template.search.'),
  })
  .describe(`Axes of the fleet: one child per combination of the axes given (their product, at most ${MAX_CHILDREN}). No axis: one child, the template.`);
export type Matrix = z.infer<typeof Matrix>;

export const IACSearchSetSpec = z
  .object({
    template: IACSearchSpec.describe(
      'The spec of every child (an IACSearch spec, checked as one). Editing it never changes an existing child: only children created afterwards get it.',
    ),
    matrix: Matrix.prefault({}),
    maxParallel: z
      .int()
      .min(1)
      .max(MAX_CHILDREN)
      .optional()
      .describe('Children running at once; the others are created with spec.suspend true and released in matrix order. Unset: all run at once.'),
    budget: Budget.describe(
      'Limits on what all children together may spend (the sum of their status.cost). Suspend: running children are suspended until the budget is raised; Fail: the set fails and suspends its children.',
    ).prefault({}),
    queueName: QueueName.optional().describe(
      "Kueue LocalQueue of every child (the children's spec.queueName): their pods wait, gated, until Kueue admits them within the queue's quota. Give it here or in template.queueName, not both. Like the template, it applies to children created after it is set.",
    ),
    removedChildren: z
      .enum(['Delete', 'Orphan'])
      .default('Delete')
      .describe('What happens to a child whose combination left the matrix: Delete it, or Orphan it (it loses the set label and owner reference and stays).'),
  })
  .describe('A fleet of IACSearches: one per combination of the matrix, each the template with the combination merged onto it.');
export type IACSearchSetSpec = z.infer<typeof IACSearchSetSpec>;

export const SET_PHASES = ['Pending', 'Running', 'Suspended', 'Succeeded', 'Failed'] as const;

export const ChildRow = z
  .object({
    name: z.string().max(CHILD_NAME).describe('The child IACSearch.'),
    dataset: z.string().max(MAX_ITEM_NAME_LENGTH).optional().describe('matrix.datasets[].name of the child.'),
    seed: z.int().optional().describe('matrix.seeds[] of the child.'),
    search: z.string().max(MAX_ITEM_NAME_LENGTH).optional().describe('matrix.search[].name of the child.'),
    phase: z.string().max(32).optional().describe('status.phase of the child.'),
    held: z.enum(['Queued', 'Budget']).optional().describe('The set holds the child suspended: Queued (maxParallel) or Budget.'),
    searchEpochs: z.int().min(0).optional().describe('Search epochs the child ran (so far).'),
    speedup: z.number().min(0).optional().describe('status.cost.speedup of the child.'),
    testDice: z.number().optional().describe('status.results.meanDice of the child.'),
    gpuHours: z.number().min(0).optional().describe('status.cost.gpuHours of the child.'),
    costUSD: z.number().min(0).optional().describe('status.cost.estimatedUSD of the child.'),
    outdated: z.boolean().optional().describe('The child was created from an earlier template or matrix item (children never change once created).'),
  })
  .describe('One child of the set.');
export type ChildRow = z.infer<typeof ChildRow>;

export const IACSearchSetStatus = z
  .object({
    phase: z
      .enum(SET_PHASES)
      .optional()
      .describe('Pending, Running, Suspended (budget), Succeeded (every child) or Failed (a child, or the budget with action Fail).'),
    observedGeneration: z.int().min(0).optional().describe('metadata.generation the status was computed from.'),
    conditions: z.array(Condition).max(8).optional().describe('Ready, Reconciling, Stalled (kstatus) and BudgetExceeded.'),
    ready: z.string().max(16).optional().describe('Succeeded children / all children, for kubectl get.'),
    children: z.int().min(0).optional().describe('Children of the set.'),
    running: z.int().min(0).optional().describe('Children running (not held, not finished).'),
    queued: z.int().min(0).optional().describe('Children held by maxParallel.'),
    suspended: z.int().min(0).optional().describe('Children suspended (by the budget or by hand).'),
    succeeded: z.int().min(0).optional().describe('Children that succeeded.'),
    failed: z.int().min(0).optional().describe('Children that failed.'),
    gpuHours: z.number().min(0).optional().describe('GPU-hours of all children.'),
    estimatedUSD: z.number().min(0).optional().describe('Estimated cost of all children in US dollars.'),
    savedGPUHours: z.number().min(0).optional().describe('GPU-hours the children saved by ending their searches early on stability.'),
    bestChild: z
      .object({
        name: z.string().max(CHILD_NAME).describe('The child.'),
        testDice: z.number().describe('Its test mean Dice.'),
      })
      .optional()
      .describe('The succeeded child with the highest test mean Dice.'),
    table: z.array(ChildRow).max(MAX_CHILDREN).optional().describe('Every child, in matrix order.'),
  })
  .describe('What the operator observed of the children.');
export type IACSearchSetStatus = z.infer<typeof IACSearchSetStatus>;

export const IACSearchSetMetadata = z
  .object({
    name: z
      .string()
      .min(1)
      .max(
        MAX_SET_NAME_LENGTH,
        `at most ${MAX_SET_NAME_LENGTH} characters: a child is named <set>-<combination> or <set>-<8-digit hash>, and a search name has at most 63`,
      ),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    generation: z.int().optional(),
  })
  .loose();

export const IACSearchSet = z.object({
  apiVersion: z.string(),
  kind: z.literal(SET_KIND),
  metadata: IACSearchSetMetadata,
  spec: IACSearchSetSpec,
  status: IACSearchSetStatus.optional(),
});
export type IACSearchSet = z.infer<typeof IACSearchSet>;
