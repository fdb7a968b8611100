// The packaging files that are copies or renderings of a source (deploy/generate.ts)
// must be current: the CRD in the chart and in kustomize is byte for byte crds/'s, the
// dashboard is what gen-dashboard.ts writes, the rules file and the kustomize manifests are
// what the chart renders.
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dashboardJSON } from '../../deploy/grafana/gen-dashboard.ts';
import { renderedFiles } from '../../deploy/generate.ts';
import { repoRoot, requireTools } from './tools.ts';

const read = (p: string) => readFileSync(join(repoRoot, p), 'utf8');
const fix = 'run `scripts/with-node node deploy/generate.ts` and commit the result';

describe('copied packaging files', () => {
  it.each(
    ['nas.iac.dev_iacsearches.yaml', 'nas.iac.dev_iacsearchsets.yaml'].flatMap((crd) => [
      [`charts/iac-operator/crds/${crd}`, `crds/${crd}`],
      [`deploy/kustomize/crd/${crd}`, `crds/${crd}`],
    ]),
  )('%s is byte for byte %s', (copy, source) => {
    expect(read(copy) === read(source), `${copy} is stale: ${fix}`).toBe(true);
  });

  it.each(['deploy/grafana/iac-operator.json', 'charts/iac-operator/files/iac-operator.json'])('%s is the generated dashboard', (p) => {
    expect(read(p) === dashboardJSON(), `${p} is stale: ${fix}`).toBe(true);
  });
});

const tools = requireTools('helm');

describe.skipIf(tools.skip)('files rendered from the chart', () => {
  let files: Map<string, string>;
  beforeAll(() => {
    tools.assertPresent();
    files = renderedFiles(tools.paths.helm);
  });

  it('deploy/prometheus/rules.yaml and deploy/kustomize/ are what the chart renders', () => {
    const stale = [...files].filter(([p, content]) => {
      try {
        return read(p) !== content;
      } catch {
        return true;
      }
    });
    expect(
      stale.map(([p]) => p),
      fix,
    ).toEqual([]);
    expect([...files.keys()]).toEqual(expect.arrayContaining(['deploy/prometheus/rules.yaml', 'deploy/kustomize/base/deployment.yaml']));
  });

  it('the kustomize base carries no Helm bookkeeping labels', () => {
    for (const [p, content] of files) {
      if (!p.startsWith('deploy/kustomize/')) continue;
      expect(content, p).not.toContain('helm.sh/chart');
      expect(content, p).not.toContain('managed-by: Helm');
    }
  });
});
