// What a trainer phase runs with: the validated configuration, the work directory
// the phases share, where its progress goes, and the options of its command line.
import type { TrainerConfig } from '../config/index.ts';
import type { ProgressReporter } from '../report/progress.ts';

/** Command-line options only some phases read (prune: --history, --checkpoint). */
export interface PhaseOptions {
  history?: string;
  checkpoint?: string;
}

export interface PhaseContext {
  config: TrainerConfig;
  workdir: string;
  reporter: ProgressReporter;
  options: PhaseOptions;
}
