import { describe, expect, it } from 'vitest';
import { PHASES } from '../../../contract/src/index.ts';
import { PHASE_ALIASES, PHASE_COMMANDS, PHASE_DEFINITIONS, phaseDefinition } from './registry.ts';

describe('phase registry', () => {
  it("holds exactly the contract's phases, in their order, and the alias derive of prune", () => {
    expect(PHASE_DEFINITIONS.map((p) => p.name)).toEqual([...PHASES]);
    expect(PHASE_ALIASES).toEqual({ derive: 'prune' });
    expect(PHASE_COMMANDS).toEqual(['search', 'prune', 'derive', 'retrain', 'evaluate']);
    expect(phaseDefinition('derive')).toBe(phaseDefinition('prune'));
    expect(phaseDefinition('fly')).toBeUndefined();
  });

  it('gives every phase a summary, a description and a simulated result', () => {
    for (const p of PHASE_DEFINITIONS) {
      expect(p.summary.length).toBeGreaterThan(0);
      expect(p.description.length).toBeGreaterThan(0);
      expect(typeof p.simulate.result(1, p.simulate.epochs)).toBe('object');
    }
  });
});
