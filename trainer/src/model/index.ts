// The model package: what the training loops import.
export type * from './api.ts';
export { createNetwork } from './network.ts';
export { initBackend } from '../backend/index.ts';
