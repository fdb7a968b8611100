import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseIACSearch } from '../api/index.ts';
import { invalidSetSpec } from '../fleet/index.ts';
import { loadSearchFile } from './cli.ts';

const root = resolve(import.meta.dirname, '..', '..', '..');
const examples = join(root, 'deploy', 'examples');

describe('deploy/examples', () => {
  const files = readdirSync(examples).filter((f) => f.endsWith('.yaml'));

  it('has the quick phantom and the hippocampus example', () => {
    expect(files).toEqual(expect.arrayContaining(['phantom-quick.yaml', 'msd-hippocampus.yaml']));
  });

  const kindOf = (file: string) => (parse(readFileSync(join(examples, file), 'utf8')) as { kind?: string }).kind;
  // Sets are checked as the operator checks them: the set's schema, then every child the
  // matrix makes, each as an IACSearch (`iacnas run` runs them: fleet.test.ts).
  const sets = files.filter((f) => kindOf(f) === 'IACSearchSet');

  it('has the fleet examples: the phantom with three seeds, and the phantom beside the hippocampus', () => {
    expect(sets).toEqual(expect.arrayContaining(['fleet-phantom-seeds.yaml', 'fleet-phantom-hippocampus.yaml']));
  });

  it.each(files.filter((f) => !sets.includes(f)))('%s is a valid IACSearch', (file) => {
    const r = parseIACSearch(parse(readFileSync(join(examples, file), 'utf8')));
    expect(r.ok ? 'valid' : r.message).toBe('valid');
  });

  it.each(sets)('%s is a valid IACSearchSet, every child a valid IACSearch', (file) => {
    const set = parse(readFileSync(join(examples, file), 'utf8'));
    set.metadata.namespace = 'default';
    expect(invalidSetSpec(set) ?? 'valid').toBe('valid');
  });

  it('npm start runs the phantom example', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(pkg.scripts.start).toBe('node bin/iacnas.ts run deploy/examples/phantom-quick.yaml');
  });

  it('finds the hippocampus data next to the repository, or says where it looked', () => {
    const expected = resolve(root, '..', 'shared', 'data', 'msd-hippocampus');
    const file = join(examples, 'msd-hippocampus.yaml');
    if (existsSync(expected)) {
      expect((loadSearchFile({ file, out: 'runs' }).spec as { dataset: { path: string } }).dataset.path).toBe(expected);
    } else {
      expect(() => loadSearchFile({ file, out: 'runs' })).toThrow(expected);
    }
  });
});
