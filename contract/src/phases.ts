// The phases of a search, in the order they run. Each is one trainer command
// (`iacnas trainer <phase>`) and, in a cluster, one pod per attempt.
import { z } from 'zod';

export const PHASES = ['search', 'prune', 'retrain', 'evaluate'] as const;
export const Phase = z.enum(PHASES);
export type Phase = z.infer<typeof Phase>;
