// report.html: one self-contained page (inline SVG and CSS, no scripts, no network)
// that shows what a search did and found: the JS-divergence curve of every edge, the
// evolution of the operation importances, the found cells as diagrams, the training
// curves of every phase and the results table.
//
// It reads whatever the work directory holds and tolerates missing files and fields:
// a report of a search that has not been evaluated yet simply lacks the results.
import { CHECKPOINT_STATE_FILE, trainingFiles, workdirLayout } from '../../../contract/src/index.ts';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OPERATIONS } from '../config/index.ts';
import { readHistory } from '../training/history.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import type { Genotype, GenotypeCell } from '../model/api.ts';
import { genotypeFromJson } from '../model/genotype.ts';
import { cellDiagram } from './cell-diagram.ts';
import { type Series, escapeXml, heatMap, lineChart } from './charts.ts';

/** One line of <workdir>/search/history.jsonl (every field optional: older or partial runs). */
export interface SearchEpoch {
  epoch: number;
  alphas?: number[][][];
  betas?: number[][];
  jsd?: number[][];
  active?: number[][][];
  stable?: boolean[][];
  settled?: boolean[][];
  kept?: boolean[][];
  /** Automatic stability test: per edge, the window's net divergence over its path (null: not judged). */
  drift?: Array<Array<number | null>>;
  prunes?: { cell: number; edge: number; keep: number[] }[];
  genotype?: Genotype;
  archUpdates?: boolean;
  trainLoss?: number;
  valLoss?: number;
  valDice?: number;
  epochSeconds?: number;
  stoppedBy?: string | null;
}

/** One line of a supervised training history (backbone or retrain). */
export interface TrainEpoch {
  epoch: number;
  trainLoss?: number;
  valLoss?: number;
  valDice?: number;
  bestValDice?: number;
  epochSeconds?: number;
}

export interface PatientResultsLike {
  id: string;
  dice: number[];
  hd95: (number | null)[];
  /** Dice on the slice grid (results.grid 'native': the secondary figure). */
  sliceDice?: number[];
}

export interface ModelResultsLike {
  dicePerClass?: Record<string, number>;
  meanDice?: number;
  hd95PerClass?: Record<string, number | null>;
  meanHd95?: number | null;
  /** Mean Dice on the slice grid (results.grid 'native': the secondary figure). */
  sliceMeanDice?: number;
  patients?: PatientResultsLike[];
}

/** <workdir>/baseline/training.json: how the U-Net without cells was trained. */
export interface BaselineTrainingLike {
  cells?: string;
  startedFrom?: 'backbone' | 'scratch' | string;
  epochs?: number;
  maxEpochs?: number;
  stepsPerEpoch?: number;
  batchSize?: number;
  learningRate?: number;
  seed?: number;
  bestValDice?: number;
}

export interface ExternalResultsLike {
  name: string;
  path?: string;
  cases?: number;
  model?: ModelResultsLike;
  baseline?: ModelResultsLike;
}

export interface ResultsLike {
  dataset?: string;
  classNames?: string[];
  conventions?: string[];
  /** 'native': Dice and HD95 on each scan's own voxel grid; absent in older runs (slice grid). */
  grid?: string;
  model?: ModelResultsLike;
  baseline?: ModelResultsLike;
  /** Present when the baseline is the U-Net trained with the cell model's budget. */
  baselineTraining?: BaselineTrainingLike;
  diceGain?: number;
  external?: ExternalResultsLike[];
}

export interface ReportInputs {
  title: string;
  operations: string[];
  search: SearchEpoch[];
  backbone: TrainEpoch[];
  retrain: TrainEpoch[];
  /** <workdir>/baseline/history.jsonl: the U-Net trained with the retraining budget. */
  baseline?: TrainEpoch[];
  genotype?: Genotype;
  results?: ResultsLike;
  /** The absolute stability threshold drawn on the JSD charts (unset: the automatic test). */
  threshold?: number;
  /** The automatic test's bound on the drift ratio (search.stability.autoScale). */
  autoScale?: number;
}

export interface ReportOptions {
  title?: string;
  operations?: readonly string[];
  threshold?: number;
  autoScale?: number;
}

function readJson<T>(file: string): T | undefined {
  try {
    return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as T) : undefined;
  } catch {
    return undefined;
  }
}

function toGenotype(raw: unknown): Genotype | undefined {
  const g = genotypeFromJson(raw);
  return 'error' in g ? undefined : g;
}

/** Gathers the report's inputs from a work directory. */
export function readReportInputs(workdir: string, o: ReportOptions = {}): ReportInputs {
  const layout = workdirLayout(workdir);
  const search = readHistory<SearchEpoch>(layout.searchHistory);
  const state = readJson<{ state?: { operations?: string[] } }>(join(layout.searchCheckpoint, CHECKPOINT_STATE_FILE));
  const genotypeFile = readJson<{ operations?: string[] }>(layout.genotype);
  const opCount = search.find((e) => e.alphas?.[0]?.[0])?.alphas?.[0]?.[0]?.length ?? 0;
  let operations = o.operations ? [...o.operations] : (state?.state?.operations ?? genotypeFile?.operations);
  if (!operations || (opCount && operations.length !== opCount)) {
    operations = opCount === OPERATIONS.length || opCount === 0 ? [...OPERATIONS] : Array.from({ length: opCount }, (_, i) => `op ${i}`);
  }
  const genotype = toGenotype(genotypeFile) ?? search.at(-1)?.genotype;
  return {
    title: o.title ?? readJson<{ name?: string }>(join(workdir, 'config.json'))?.name ?? workdir.split('/').filter(Boolean).at(-1) ?? 'search',
    operations,
    search,
    backbone: readHistory<TrainEpoch>(trainingFiles(layout.backboneTraining).history),
    retrain: readHistory<TrainEpoch>(trainingFiles(layout.retrain).history),
    baseline: readHistory<TrainEpoch>(trainingFiles(layout.baseline).history),
    genotype,
    results: readJson<ResultsLike>(layout.results),
    threshold: o.threshold,
    autoScale: o.autoScale,
  };
}

/** Per cell and edge, the epochs of its pruning steps (from each epoch's prunes). */
export function decisionEpochs(s: SearchEpoch[]): number[][][] {
  const out: number[][][] = [];
  for (const e of s) {
    for (const p of e.prunes ?? []) {
      out[p.cell] ??= [];
      out[p.cell][p.edge] ??= [];
      out[p.cell][p.edge].push(e.epoch);
    }
  }
  const cells = Math.max(out.length, s.at(-1)?.jsd?.length ?? 0);
  return Array.from({ length: cells }, (_, c) => Array.from({ length: s.at(-1)?.jsd?.[c]?.length ?? out[c]?.length ?? 0 }, (_, e) => out[c]?.[e] ?? []));
}

function medianOf(xs: number[]): number {
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** The decision epochs as a table: one row per cell, one column per edge, and their spread. */
function decisionTable(s: SearchEpoch[]): string {
  const d = decisionEpochs(s);
  if (!d.some((cell) => cell.some((e) => e.length))) return '';
  const kept = s.at(-1)?.kept;
  const edges = Math.max(...d.map((c) => c.length));
  const head = `<tr><th>cell</th>${Array.from({ length: edges }, (_, e) => `<th>edge ${e}</th>`).join('')}</tr>`;
  const rows = d
    .map(
      (cell, c) =>
        `<tr><td>${c}</td>${cell.map((ep, e) => `<td${kept?.[c]?.[e] ? ' style="font-weight:bold"' : ''}>${ep.length ? ep.join(', ') : '-'}</td>`).join('')}</tr>`,
    )
    .join('');
  const first = d
    .flat()
    .filter((e) => e.length)
    .map((e) => e[0]);
  const last = d
    .flat()
    .filter((e) => e.length > 1)
    .map((e) => e.at(-1)!);
  const range = (xs: number[]) => (xs.length ? `${Math.min(...xs)} to ${Math.max(...xs)} (median ${medianOf(xs)}, ${xs.length} edges)` : 'none');
  return `<h3>Decision epochs</h3><p class="note">The epochs at which each edge was pruned (first to its top operations, then to one); bold: edges of the found cells. First decisions: epochs ${range(first)}; last: ${range(last)}.</p><table class="results decisions">${head}${rows}</table>`;
}

function softmaxActive(logits: number[], active: number[] | undefined): number[] {
  const idx = active ?? logits.map((_, i) => i);
  const out = new Array<number>(logits.length).fill(0);
  if (idx.length === 0) return out;
  const max = Math.max(...idx.map((i) => logits[i]));
  const exps = idx.map((i) => Math.exp(logits[i] - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  for (const [k, i] of idx.entries()) out[i] = exps[k] / sum;
  return out;
}

/** Mean importance (softmax of alphas over active operations) of each operation over a cell's edges. */
export function operationImportance(epoch: SearchEpoch, cell: number, operations: number): number[] | undefined {
  const alphas = epoch.alphas?.[cell];
  if (!alphas || alphas.length === 0) return undefined;
  const mean = new Array<number>(operations).fill(0);
  alphas.forEach((edge, e) => {
    const w = softmaxActive(edge, epoch.active?.[cell]?.[e]);
    for (let k = 0; k < operations; k++) mean[k] += (w[k] ?? 0) / alphas.length;
  });
  return mean;
}

/** Edges that are stable now or settled earlier (pruned to their last candidates). */
function stableCount(e: SearchEpoch): number {
  const settled = e.settled?.flat() ?? [];
  return (e.stable ?? []).flat().filter((st, i) => st || settled[i]).length;
}

const fmt = (v: number | null | undefined, digits = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits));

const GAIN_NAME = 'gain of the cells over the U-Net trained with the same budget';

function foregroundClasses(r: ResultsLike, m: ModelResultsLike | undefined): string[] {
  return r.classNames ? r.classNames.slice(1) : Object.keys(m?.dicePerClass ?? {});
}

const mean = (v: number[]) => (v.length ? v.reduce((x, y) => x + y, 0) / v.length : undefined);

/** The baseline row's name: the same-budget U-Net, or (older runs) the backbone before the search. */
function baselineName(r: ResultsLike): string {
  return r.baselineTraining ? 'U-Net, same budget (baseline)' : 'U-Net backbone before the search';
}

/** Model minus baseline mean Dice; only for the same-budget baseline. */
function gainOf(r: ResultsLike, model: ModelResultsLike | undefined, baseline: ModelResultsLike | undefined, stored?: number): number | undefined {
  if (!r.baselineTraining || model?.meanDice === undefined || baseline?.meanDice === undefined) return undefined;
  return stored ?? model.meanDice - baseline.meanDice;
}

const points = (g: number) => `${g >= 0 ? '+' : ''}${(100 * g).toFixed(2)}`;

function gainLine(r: ResultsLike, model: ModelResultsLike | undefined, baseline: ModelResultsLike | undefined, stored?: number): string {
  const g = gainOf(r, model, baseline, stored);
  if (g === undefined) return '';
  return `<p class="gain">Dice ${GAIN_NAME}: <b>${points(g)}</b> points (mean Dice ${fmt(model!.meanDice)} against ${fmt(baseline!.meanDice)}).</p>`;
}

/** How the baseline was trained (baseline/training.json), in one sentence. */
function baselineTrainingLine(t: BaselineTrainingLike): string {
  const from =
    t.startedFrom === 'scratch'
      ? 'from scratch'
      : t.startedFrom === 'backbone'
        ? 'from the trained backbone'
        : t.startedFrom
          ? `from ${escapeXml(t.startedFrom)}`
          : '';
  const epochs = t.epochs !== undefined ? `${t.epochs}${t.maxEpochs !== undefined ? ` of at most ${t.maxEpochs}` : ''} epochs` : undefined;
  const facts = [
    epochs,
    t.stepsPerEpoch !== undefined ? `${t.stepsPerEpoch} steps per epoch` : undefined,
    t.batchSize !== undefined ? `batch size ${t.batchSize}` : undefined,
    t.learningRate !== undefined ? `learning rate ${t.learningRate}` : undefined,
    t.seed !== undefined ? `seed ${t.seed}` : undefined,
  ].filter(Boolean);
  return `<p class="note baseline-training">Baseline: the U-Net with identity skips (cells <code>${escapeXml(t.cells ?? 'none')}</code>) trained ${from} with the retraining budget, data, schedule, early stopping and seed of the cell model: ${facts.join(', ') || 'no details recorded'}${
    t.bestValDice !== undefined ? `; best validation Dice ${fmt(t.bestValDice)}` : ''
  }.</p>`;
}

function gridNote(r: ResultsLike, sliceColumn: boolean): string {
  if (r.grid === 'native') {
    return `Dice and HD95 on each scan's own voxel grid (the prediction resampled back from the slices)${sliceColumn ? '; the last column is the mean Dice on the slice grid, for comparison with older runs' : ''}.`;
  }
  return 'Dice and HD95 on the volume rebuilt from the 2-D slices at the slice resolution (results written before native-grid evaluation).';
}

function modelTable(r: ResultsLike, models: { name: string; m: ModelResultsLike }[]): string {
  const classes = foregroundClasses(r, models[0]?.m);
  const native = r.grid === 'native';
  const slice = models.some((x) => x.m.sliceMeanDice !== undefined);
  const row = ({ name, m }: { name: string; m: ModelResultsLike }) =>
    `<tr><th>${escapeXml(name)}</th>${classes.map((c) => `<td>${fmt(m.dicePerClass?.[c])}</td>`).join('')}<td><b>${fmt(m.meanDice)}</b></td>${classes
      .map((c) => `<td>${fmt(m.hd95PerClass?.[c], 2)}</td>`)
      .join('')}<td><b>${fmt(m.meanHd95, 2)}</b></td>${slice ? `<td>${fmt(m.sliceMeanDice)}</td>` : ''}</tr>`;
  const grid = native ? ', native grid' : '';
  const head = `<tr><th rowspan="2">model</th><th colspan="${classes.length + 1}">Dice${grid}</th><th colspan="${classes.length + 1}">HD95 (mm${grid})</th>${
    slice ? '<th rowspan="2">mean Dice,<br>slice grid</th>' : ''
  }</tr><tr>${classes.map((c) => `<th>${escapeXml(c)}</th>`).join('')}<th>mean</th>${classes.map((c) => `<th>${escapeXml(c)}</th>`).join('')}<th>mean</th></tr>`;
  return `<table class="results">${head}${models.map(row).join('')}</table><p class="note">${gridNote(r, slice)}</p>`;
}

function modelsOf(r: ResultsLike, model: ModelResultsLike | undefined, baseline: ModelResultsLike | undefined) {
  const models: { name: string; m: ModelResultsLike }[] = [];
  if (model) models.push({ name: 'U-Net + IAC cells', m: model });
  if (baseline) models.push({ name: baselineName(r), m: baseline });
  return models;
}

function resultsTable(r: ResultsLike): string {
  const n = r.model?.patients?.length;
  return `${modelTable(r, modelsOf(r, r.model, r.baseline))}<p class="note">${n ?? '?'} test patients (${escapeXml(r.dataset ?? '')}), means over patients.</p>${gainLine(r, r.model, r.baseline, r.diceGain)}${
    r.baselineTraining ? baselineTrainingLine(r.baselineTraining) : ''
  }${r.conventions?.length ? `<details><summary>conventions</summary><ul>${r.conventions.map((c) => `<li>${escapeXml(c)}</li>`).join('')}</ul></details>` : ''}`;
}

function patientsTable(r: ResultsLike, model: ModelResultsLike | undefined, baseline: ModelResultsLike | undefined, what = 'per patient'): string {
  const patients = model?.patients ?? [];
  if (patients.length === 0) return '';
  const classes = foregroundClasses(r, model);
  const base = new Map((baseline?.patients ?? []).map((p) => [p.id, p]));
  const slice = patients.some((p) => p.sliceDice);
  const head = `<tr><th>patient</th>${classes.map((c) => `<th>Dice ${escapeXml(c)}</th>`).join('')}${classes.map((c) => `<th>HD95 ${escapeXml(c)}</th>`).join('')}${
    slice ? '<th>mean Dice, slice grid</th>' : ''
  }${base.size ? '<th>baseline mean Dice</th>' : ''}</tr>`;
  const body = patients
    .map((p) => {
      const b = base.get(p.id);
      return `<tr><td>${escapeXml(p.id)}</td>${p.dice.map((d) => `<td>${fmt(d)}</td>`).join('')}${p.hd95.map((h) => `<td>${fmt(h, 2)}</td>`).join('')}${
        slice ? `<td>${fmt(mean(p.sliceDice ?? []))}</td>` : ''
      }${base.size ? `<td>${fmt(b ? mean(b.dice) : undefined)}</td>` : ''}</tr>`;
    })
    .join('');
  return `<details><summary>${escapeXml(what)}</summary><table class="results">${head}${body}</table></details>`;
}

function externalSection(r: ResultsLike, x: ExternalResultsLike): string {
  const cases = x.cases ?? x.model?.patients?.length;
  const models = modelsOf(r, x.model, x.baseline);
  const summary = x.model
    ? `<p>Mean Dice <b>${fmt(x.model.meanDice)}</b>, mean HD95 <b>${fmt(x.model.meanHd95, 2)}</b> mm over ${cases ?? '?'} cases.</p>`
    : '<p class="note">No results for the cell model.</p>';
  return `<section class="external"><h2>External dataset: ${escapeXml(x.name)}</h2><p class="note">${cases ?? '?'} cases${
    x.path ? ` from <code>${escapeXml(x.path)}</code>` : ''
  }, all evaluated (no split), with this run's slice size, classes and normalisation.</p>${summary}${models.length ? modelTable(r, models) : ''}${gainLine(r, x.model, x.baseline)}${patientsTable(
    r,
    x.model,
    x.baseline,
    'per case',
  )}</section>`;
}

const INPUT_NAMES = ['s0', 's1'];

/** The cell as text, under its diagram: "n0 = sep_conv_3x3(s0) + conv_5x5(s1); ...". */
function cellEdgeList(cell: GenotypeCell): string {
  return cell.nodes.map((edges, i) => `n${i} = ${edges.map((e) => `${escapeXml(e.op)}(${INPUT_NAMES[e.input] ?? `n${e.input - 2}`})`).join(' + ')}`).join('; ');
}

function trainingChart(title: string, h: TrainEpoch[]): string {
  const series: Series[] = [
    { name: 'train loss', points: h.filter((e) => e.trainLoss !== undefined).map((e) => [e.epoch, e.trainLoss!]) },
    { name: 'val loss', points: h.filter((e) => e.valLoss !== undefined).map((e) => [e.epoch, e.valLoss!]), dashed: true },
    { name: 'val Dice', points: h.filter((e) => e.valDice !== undefined).map((e) => [e.epoch, e.valDice!]), color: '#2ca02c' },
  ];
  return lineChart(series, { title, xLabel: 'epoch', yLabel: 'loss / Dice', width: 520, height: 260 });
}

/** The last epoch an edge's divergence was tracked (positive), and whether it has one candidate operation left after it. */
function edgeTracking(s: SearchEpoch[], c: number, e: number, noneIndex: number): { last?: number; single: boolean } {
  const last = s.findLast((h) => (h.jsd?.[c]?.[e] ?? 0) > 0);
  if (!last) return { single: false };
  const after = s.find((h) => h.epoch > last.epoch && h.active?.[c]?.[e]) ?? last;
  const active = after.active?.[c]?.[e];
  const candidates = active?.filter((k) => k !== noneIndex).length;
  return { last: last.epoch, single: candidates !== undefined && candidates <= 1 };
}

/** Says under a divergence plot which edges stopped being tracked, when, and why. */
function trackingCaption(
  c: number,
  nEdges: number,
  ended: { edge: number; last?: number; single: boolean }[],
  cellEnd: number,
  lastEpoch: number,
  allSingle: boolean,
): string {
  if (ended.length === 0) return '';
  const byEpoch = new Map<number, number[]>();
  for (const t of ended) byEpoch.set(t.last!, [...(byEpoch.get(t.last!) ?? []), t.edge]);
  const list = [...byEpoch.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([epoch, edges]) => `${edges.length === 1 ? 'edge' : 'edges'} ${edges.join(', ')} after epoch ${epoch}`)
    .join('; ');
  const why = ended.every((t) => t.single) ? 'pruned to a single operation' : 'pruned to a single operation, or no divergence recorded after that epoch';
  const cellNote =
    cellEnd < lastEpoch
      ? ` The plot of cell ${c} ends at epoch ${cellEnd}: ${allSingle ? 'by then every one of its edges was pruned to a single operation' : 'no edge of it has a divergence after that epoch'}, while the search ran until epoch ${lastEpoch}.`
      : '';
  return `<figcaption class="explain">Cell ${c}: ${ended.length === nEdges ? `all ${nEdges} of its edges` : `${ended.length} of its ${nEdges} edges`} stopped being tracked (${why}): ${list}.${cellNote}</figcaption>`;
}

/** Renders the report page. */
export function renderReport(inp: ReportInputs): string {
  const s = inp.search;
  const last = s.at(-1);
  const cells = Math.max(last?.alphas?.length ?? 0, last?.jsd?.length ?? 0, inp.genotype?.cells.length ?? 0);
  const sections: string[] = [];

  // Summary
  const searchSeconds = s.reduce((a, e) => a + (e.epochSeconds ?? 0), 0);
  const activeNow = last?.active?.flat().reduce((a, e) => a + e.length, 0);
  const totalOps = last?.alphas?.flat().reduce((a, e) => a + e.length, 0);
  const stableNow = last?.stable ? stableCount(last) : undefined;
  const edges = last?.stable?.flat().length;
  const facts: string[] = [];
  if (s.length)
    facts.push(
      `<li>cell search: <b>${s.length}</b> epochs in ${searchSeconds.toFixed(0)} s${last?.stoppedBy ? `, stopped by <b>${escapeXml(last.stoppedBy)}</b>` : ''}</li>`,
    );
  if (activeNow !== undefined && totalOps) facts.push(`<li>active operations at the end: <b>${activeNow}</b> of ${totalOps}</li>`);
  if (stableNow !== undefined && edges) facts.push(`<li>stable edges at the end: <b>${stableNow}</b> of ${edges}</li>`);
  if (inp.backbone.length) facts.push(`<li>backbone U-Net training: ${inp.backbone.length} epochs</li>`);
  if (inp.retrain.length)
    facts.push(
      `<li>retraining with the found cells: ${inp.retrain.length} epochs, best validation Dice ${fmt(Math.max(...inp.retrain.map((e) => e.bestValDice ?? e.valDice ?? 0)))}</li>`,
    );
  const r = inp.results;
  // Older results.json files have no `external`; a malformed one is left out.
  const external = (Array.isArray(r?.external) ? r.external : []).filter((x): x is ExternalResultsLike => typeof x?.name === 'string');
  if (r?.model?.meanDice !== undefined) {
    facts.push(
      `<li>test mean foreground Dice${r.grid === 'native' ? ' (native grid)' : ''}: <b>${fmt(r.model.meanDice)}</b>, HD95 ${fmt(r.model.meanHd95, 2)} mm</li>`,
    );
  }
  const gain = r ? gainOf(r, r.model, r.baseline, r.diceGain) : undefined;
  if (gain !== undefined) facts.push(`<li>Dice ${GAIN_NAME}: <b>${points(gain)}</b> points</li>`);
  for (const x of external) {
    if (x.model?.meanDice !== undefined)
      facts.push(
        `<li>external dataset ${escapeXml(x.name)}: mean Dice <b>${fmt(x.model.meanDice)}</b> over ${x.cases ?? x.model.patients?.length ?? '?'} cases</li>`,
      );
  }
  sections.push(`<section><h2>Summary</h2><ul>${facts.join('') || '<li>no search history yet</li>'}</ul></section>`);

  if (r?.model) sections.push(`<section><h2>Results on the test split</h2>${resultsTable(r)}${patientsTable(r, r.model, r.baseline)}</section>`);
  for (const x of external) sections.push(externalSection(r!, x));

  if (inp.genotype?.cells.length) {
    sections.push(
      `<section><h2>Found cells</h2><p class="note">One cell per U-Net skip connection, shallowest first. Each intermediate node sums its two kept incoming edges; the cell output concatenates the nodes.</p>${inp.genotype.cells
        .map((c, i) => `<figure>${cellDiagram(c, `cell ${i} (skip level ${i})`)}<figcaption>${cellEdgeList(c)}</figcaption></figure>`)
        .join('')}</section>`,
    );
  }

  const warmup = s.find((e) => e.archUpdates)?.epoch;
  const vlines = warmup && warmup > 1 ? [{ x: warmup, label: 'architecture updates start' }] : [];
  if (s.some((e) => e.jsd)) {
    const figures: string[] = [];
    const noneIndex = inp.operations.indexOf('none');
    const epochs = s.filter((e) => e.jsd).map((e) => e.epoch);
    const firstEpoch = Math.min(...epochs);
    const lastEpoch = Math.max(...epochs);
    for (let c = 0; c < cells; c++) {
      const nEdges = Math.max(0, ...s.map((e) => e.jsd?.[c]?.length ?? 0));
      const tracking = Array.from({ length: nEdges }, (_, e) => edgeTracking(s, c, e, noneIndex));
      const ended = tracking.map((t, e) => ({ ...t, edge: e })).filter((t) => t.last !== undefined && t.last < lastEpoch);
      const series: Series[] = Array.from({ length: nEdges }, (_, e) => ({
        name: `edge ${e}`,
        // Zero divergences (warm-up: the alphas do not move; one operation left: nothing to
        // compare) cannot be drawn on a log axis.
        points: s.filter((h) => (h.jsd?.[c]?.[e] ?? 0) > 0).map((h) => [h.epoch, h.jsd![c][e]] as [number, number]),
        endMark: tracking[e].last !== undefined && tracking[e].last! < lastEpoch,
      }));
      const cellEnd = Math.max(0, ...tracking.map((t) => t.last ?? 0));
      const allSingle = ended.length === nEdges && ended.every((t) => t.single);
      const endLines =
        cellEnd > 0 && cellEnd < lastEpoch ? [{ x: cellEnd, label: allSingle ? 'all edges pruned to one operation' : 'last divergence of this cell' }] : [];
      const chart = lineChart(series, {
        title: `cell ${c}: JS divergence per edge (between consecutive epochs)`,
        xLabel: 'epoch',
        yLabel: 'JSD (bits, log scale)',
        logY: true,
        xMin: firstEpoch,
        xMax: lastEpoch,
        hlines: inp.threshold ? [{ y: inp.threshold, label: `stability threshold ${inp.threshold}` }] : [],
        vlines: [...vlines, ...endLines],
        endMarkLabel: 'no longer tracked',
      });
      figures.push(`<figure>${chart}${trackingCaption(c, nEdges, ended, cellEnd, lastEpoch, allSingle)}</figure>`);
    }
    const automatic = inp.threshold === undefined && s.some((e) => e.drift);
    if (automatic) {
      const bound = inp.autoScale ?? 1;
      for (let c = 0; c < cells; c++) {
        const nEdges = Math.max(0, ...s.map((e) => e.drift?.[c]?.length ?? 0));
        const series: Series[] = Array.from({ length: nEdges }, (_, e) => ({
          name: `edge ${e}`,
          points: s.filter((h) => typeof h.drift?.[c]?.[e] === 'number').map((h) => [h.epoch, h.drift![c][e]!] as [number, number]),
          // A pruning step empties the window: no ratio until the next one is full.
          gapX: 1,
        }));
        figures.push(
          `<figure>${lineChart(series, {
            title: `cell ${c}: drift ratio per edge (net divergence of the window over its path)`,
            xLabel: 'epoch',
            yLabel: 'net / path',
            xMin: firstEpoch,
            xMax: lastEpoch,
            yMin: 0,
            hlines: [{ y: bound, label: `stable at or below ${bound}` }],
            vlines,
          })}</figure>`,
        );
      }
    }
    const rule = automatic
      ? 'The automatic test (no threshold set): an edge is stable when the net divergence of its window, from the distribution before the window to the current one, is at most the sum of its per-epoch divergences (a drift ratio of 1 or less: no common direction), so the scale of the divergences does not matter.'
      : 'An edge is stable when its divergence stays below the threshold over the window.';
    sections.push(
      `<section><h2>Stability: Jensen–Shannon divergence per edge</h2><p class="note">${rule} A stable edge is pruned to its strongest operations. An edge pruned to a single operation has no distribution left to compare, so its divergence is no longer tracked: its curve ends with a cross, and a cell whose edges all end early has a shorter plot than the search.</p>${figures.join('')}${decisionTable(s)}</section>`,
    );
  }

  if (s.some((e) => e.alphas)) {
    const charts: string[] = [];
    for (let c = 0; c < cells; c++) {
      const series: Series[] = inp.operations.map((op, k) => ({
        name: op,
        points: s.flatMap((e) => {
          const m = operationImportance(e, c, inp.operations.length);
          return m ? [[e.epoch, m[k]] as [number, number]] : [];
        }),
      }));
      charts.push(lineChart(series, { title: `cell ${c}: mean operation importance over edges`, xLabel: 'epoch', yLabel: 'softmax(alpha)', vlines, yMin: 0 }));
      const final = s.findLast((e) => e.alphas?.[c]);
      if (final?.alphas?.[c]) {
        const values = final.alphas[c].map((edge, e) => {
          const w = softmaxActive(edge, final.active?.[c]?.[e]);
          const active = new Set(final.active?.[c]?.[e] ?? edge.map((_, i) => i));
          return w.map((v, i) => (active.has(i) ? v : null));
        });
        const marks = values.map(() => new Array<boolean>(inp.operations.length).fill(false));
        inp.genotype?.cells[c]?.nodes.forEach((edgesOfNode, node) => {
          for (const ge of edgesOfNode) {
            const e = (node * (node + 3)) / 2 + ge.input;
            const k = inp.operations.indexOf(ge.op);
            if (marks[e] && k >= 0) marks[e][k] = true;
          }
        });
        charts.push(
          heatMap(values, {
            title: `cell ${c}: final importance per edge`,
            subtitle: 'hatched: pruned; red frame: in the found cell',
            width: 360,
            rowLabels: values.map((_, e) => `edge ${e}`),
            colLabels: inp.operations,
            marks,
          }),
        );
      }
    }
    sections.push(`<section><h2>Operation importance</h2>${charts.join('')}</section>`);
  }

  if (s.some((e) => e.active)) {
    const series: Series[] = [
      { name: 'active operations', points: s.filter((e) => e.active).map((e) => [e.epoch, e.active!.flat().reduce((a, x) => a + x.length, 0)]) },
      { name: 'stable edges', points: s.filter((e) => e.stable).map((e) => [e.epoch, stableCount(e)]) },
    ];
    sections.push(
      `<section><h2>Pruning</h2>${lineChart(series, { title: 'active operations and stable edges', xLabel: 'epoch', yLabel: 'count', vlines, yMin: 0 })}</section>`,
    );
  }

  const curves: string[] = [];
  if (inp.backbone.length) curves.push(trainingChart('backbone U-Net training', inp.backbone));
  if (s.length) curves.push(trainingChart('cell search', s));
  if (inp.retrain.length) curves.push(trainingChart('retraining with the found cells', inp.retrain));
  if (inp.baseline?.length) curves.push(trainingChart('U-Net without cells trained with the same budget (baseline)', inp.baseline));
  if (curves.length) sections.push(`<section><h2>Training curves</h2>${curves.join('')}</section>`);

  const css = `body{font-family:sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 12px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table.results{border-collapse:collapse;margin:8px 0}table.results th,table.results td{border:1px solid #ccc;padding:4px 8px;text-align:right}
table.results th{background:#f3f3f3}.note{color:#555;font-size:13px}figure{margin:8px 0;display:block}figcaption{font-family:monospace;font-size:12px;color:#333}figcaption.explain{font-family:sans-serif;color:#555;max-width:900px}.gain{font-size:15px}svg{display:block;margin:6px 0;max-width:100%;height:auto}`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(inp.title)}: IAC-LTH search report</title>
<style>${css}</style></head>
<body><h1>${escapeXml(inp.title)}: IAC-LTH search report</h1>
${sections.join('\n')}
<p class="note">Generated ${new Date().toISOString()}.</p>
</body></html>
`;
}

/** Writes <workdir>/report.html from whatever the work directory holds; returns its path. */
export function writeReport(workdir: string, o: ReportOptions = {}): string {
  const path = workdirLayout(workdir).report;
  writeFileAtomic(path, renderReport(readReportInputs(workdir, o)));
  return path;
}
