// `iacnas trainer prune` (alias `derive`): the discrete cells from the search's final
// architecture parameters, written to <workdir>/genotype.json. No tensors, no GPU.
import { workdirLayout } from '../../../contract/src/index.ts';
import type { PhaseContext } from './context.ts';
import type { Genotype } from '../model/api.ts';
import type { ResultFields } from '../report/progress.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { readCheckpoint } from '../training/checkpoint.ts';
import { readHistory } from '../training/history.ts';
import { loadModelKit } from '../training/model-kit.ts';
import type { SearchState } from '../search/search.ts';
import { searchSpace } from '../search/search.ts';
import type { ArchSnapshot, StopReason } from '../search/stability.ts';
import { edgeCount } from '../model/topology.ts';
import { summariseGenotype } from '../search/summary.ts';
import { badInput } from '../util/bad-input.ts';

/** The content of genotype.json. */
export interface GenotypeFile {
  genotype: Genotype;
  operations: string[];
  nodes: number;
  /** Where the architecture parameters came from. */
  source: string;
  epoch: number;
  stoppedBy: StopReason | null;
  time: string;
}

/** The architecture at the end of the search, from a checkpoint or a history file. */
export function readFinalArchitecture(o: { workdir: string; history?: string; checkpoint?: string }): {
  arch: ArchSnapshot;
  epoch: number;
  stoppedBy: StopReason | null;
  source: string;
  stableEdges?: number;
} {
  if (o.history) {
    const lines = readHistory<{
      epoch: number;
      alphas?: number[][][];
      betas?: number[][];
      active?: number[][][];
      stable?: boolean[][];
      settled?: boolean[][];
      stoppedBy?: StopReason | null;
    }>(o.history);
    const last = lines.at(-1);
    if (!last) throw badInput('file', `--history ${o.history}: no complete epoch line (is it the search's history.jsonl?)`, { file: o.history });
    if (!last.alphas || !last.betas || !last.active)
      throw badInput('file', `--history ${o.history}: epoch ${last.epoch} has no alphas/betas/active; give the search's history.jsonl`, { file: o.history });
    // A history line holds that epoch's alphas and the active operations after its pruning.
    const stable = last.stable?.flat();
    const stableEdges = last.settled?.flat().filter((settled, i) => settled || stable?.[i]).length;
    return {
      arch: { alphas: last.alphas, betas: last.betas, active: last.active },
      epoch: last.epoch,
      stoppedBy: last.stoppedBy ?? null,
      source: o.history,
      stableEdges,
    };
  }
  const dir = o.checkpoint ?? workdirLayout(o.workdir).searchCheckpoint;
  let ck: ReturnType<typeof readCheckpoint<SearchState>>;
  try {
    ck = readCheckpoint<SearchState>(dir);
  } catch (e) {
    throw badInput('file', `cannot read the search checkpoint in ${dir}: ${(e as Error).message}`, { file: dir });
  }
  if (!ck) throw badInput('file', `${dir} holds no search checkpoint: run the search phase first, or give --history <history.jsonl>`, { file: dir });
  return { arch: ck.state.arch, epoch: ck.state.epoch, stoppedBy: ck.state.stoppedBy, source: dir, stableEdges: ck.state.stableEdges };
}

export async function runPrunePhase(ctx: PhaseContext): Promise<ResultFields> {
  const { config, workdir, reporter, options } = ctx;
  const started = performance.now();
  const final = readFinalArchitecture({ workdir, history: options.history, checkpoint: options.checkpoint });
  const space = searchSpace(config);
  const edges = edgeCount(space.nodes);
  if (final.arch.alphas.some((cell) => cell.length !== edges || cell.some((row) => row.length !== space.operations.length))) {
    throw badInput(
      'config',
      `${final.source}: the architecture parameters do not match search.operations (${space.operations.length}) and search.nodes (${space.nodes}); prune with the configuration the search ran with`,
      { file: final.source },
    );
  }
  if (!final.stoppedBy) reporter.log(`prune: the search in ${final.source} has not finished (epoch ${final.epoch}); deriving from its latest architecture`);
  const kit = await loadModelKit();
  const genotype = kit.deriveGenotype(final.arch, space);
  const file: GenotypeFile = {
    genotype,
    operations: [...space.operations],
    nodes: space.nodes,
    source: final.source,
    epoch: final.epoch,
    stoppedBy: final.stoppedBy,
    time: new Date().toISOString(),
  };
  writeFileAtomic(workdirLayout(workdir).genotype, `${JSON.stringify(file, null, 2)}\n`);
  const active = final.arch.active.reduce((s, c) => s + c.reduce((t, e) => t + e.length, 0), 0);
  reporter.log(
    `prune: ${genotype.cells.map((c, i) => `cell ${i}: ${c.nodes.map((n) => n.map((e) => `${e.op}(${e.input})`).join(' + ')).join(' | ')}`).join('; ')}`,
  );
  return {
    ok: true,
    epochs: final.epoch,
    seconds: (performance.now() - started) / 1000,
    ...(final.stoppedBy ? { stoppedBy: final.stoppedBy } : {}),
    activeOperations: active,
    ...(final.stableEdges !== undefined ? { stableEdges: final.stableEdges } : {}),
    totalOperations: final.arch.alphas.length * edges * space.operations.length,
    totalEdges: final.arch.alphas.length * edges,
    genotype: summariseGenotype(genotype),
  };
}
