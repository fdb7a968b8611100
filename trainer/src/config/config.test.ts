import { describe, expect, it } from 'vitest';
import { ConfigError, parseTrainerConfig } from './index.ts';
import { OPERATIONS } from './search.ts';

describe('trainer configuration', () => {
  it('fills in the documented defaults', () => {
    const c = parseTrainerConfig({});
    expect(c.search.maxEpochs).toBe(200);
    expect(c.search.operations).toEqual([...OPERATIONS]); // every candidate
    expect(c.search.stability).toMatchObject({ enabled: true, autoScale: 1, window: 5, pruneTo: [3, 1], patience: 10 });
    expect(c.search.stability.threshold).toBeUndefined(); // the automatic test
    expect(c.search.weights).toMatchObject({ learningRate: 0.025, momentum: 0.9, weightDecay: 3e-4, gradClip: 5 });
    expect(c.search.architecture).toMatchObject({ learningRate: 6e-4, beta1: 0.5, beta2: 0.999, weightDecay: 1e-3 });
    expect(c.dataset.split).toEqual({ train: 0.6, val: 0.2, test: 0.2 });
  });

  it('names the offending field', () => {
    expect(() => parseTrainerConfig({ search: { stability: { threshold: -1 } } })).toThrow(/search\.stability\.threshold/);
    expect(() => parseTrainerConfig({ search: { operations: ['conv_7x7'] } })).toThrow(/search\.operations\.0/);
  });

  it('requires the split to sum to 1 and a path for file datasets', () => {
    expect(() => parseTrainerConfig({ dataset: { split: { train: 0.5, val: 0.2, test: 0.2 } } })).toThrow(ConfigError);
    expect(() => parseTrainerConfig({ dataset: { format: 'msd' } })).toThrow(/dataset\.path/);
  });
});
