// The model package: what the training loops import.
export type * from './api.ts';
export { createNetwork } from './network.ts';
export { deriveGenotype, operationWeights, softmax } from './genotype.ts';
export { accumulateDiceCounts, diceCrossEntropyLoss, diceFromCounts, emptyCounts, hardDice, type DiceCounts } from './loss.ts';
export { loadNamedTensors, loadWeights, saveNamedTensors, saveWeights, type LoadReport } from './serialize.ts';
export { edgeCount, edgeIndex, edgeList } from './topology.ts';
export { initBackend, type BackendChoice, type BackendInfo } from '../backend/index.ts';
export { assertFitsInMemory, estimateTrainingMemory, memoryBudget, WASM_HEAP_BYTES, type MemoryEstimate } from './memory.ts';
