// Environment variables a trainer reads. The operator sets the first four on every phase
// pod; the others are for people running the trainer by hand (docs/trainer-phases.md).
export const ENV = {
  /** `<namespace>/<name>` of the search the pod belongs to (the x-iacsearch header of its progress POSTs). */
  search: 'IACNAS_SEARCH',
  /** Where progress events are POSTed (the operator's /v1/progress). */
  progressURL: 'IACNAS_PROGRESS_URL',
  /** The bearer token of those POSTs (key `token` of the search's progress Secret). */
  progressToken: 'IACNAS_PROGRESS_TOKEN',
  /** Where the JSON result goes when --result-file is not given. */
  resultFile: 'IACNAS_RESULT_FILE',
  /** --simulate's default: do no training, report progress for this many seconds. */
  simulateSeconds: 'IACNAS_SIMULATE_SECONDS',
  /** Forces a tfjs backend (tensorflow-gpu, tensorflow, wasm, cpu). */
  backend: 'IACNAS_BACKEND',
  /** The memory the trainer plans its batches for, in MiB (default: the cgroup limit). */
  memoryLimitMB: 'IACNAS_MEMORY_LIMIT_MB',
  /** Largest NIfTI image read, in voxels. */
  maxVoxels: 'IACNAS_MAX_VOXELS',
  /** Largest decompressed NIfTI file read, in MiB. */
  maxDecompressedMB: 'IACNAS_MAX_DECOMPRESSED_MB',
} as const;
