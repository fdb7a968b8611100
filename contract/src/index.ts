// The contract between the operator and the trainer: what a trainer phase is called,
// what it prints and POSTs, how it exits, which environment it reads, and the names
// both sides derive from a search. It imports neither side (test/architecture checks it).
export * from './bad-input.ts';
export * from './command-line.ts';
export * from './env.ts';
export * from './events.ts';
export * from './exit-codes.ts';
export * from './names.ts';
export * from './phases.ts';
export * from './workdir.ts';
