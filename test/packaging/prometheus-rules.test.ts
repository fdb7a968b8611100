// The alerting rules checked and unit-tested by the real promtool (built by
// test/packaging/build-tools.sh): deploy/prometheus/rules.test.yaml feeds synthetic series
// through every alert and states when it must and must not fire.
import { beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { repoRoot, requireTools, run } from './tools.ts';

const tools = requireTools('promtool');
const rules = join(repoRoot, 'deploy/prometheus/rules.yaml');
const unitTests = join(repoRoot, 'deploy/prometheus/rules.test.yaml');

describe.skipIf(tools.skip)('Prometheus alerting rules (promtool)', () => {
  beforeAll(() => tools.assertPresent());

  it('passes promtool check rules', () => {
    const r = run(tools.paths.promtool, ['check', 'rules', rules]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('passes its unit tests (promtool test rules)', () => {
    const r = run(tools.paths.promtool, ['test', 'rules', unitTests], { timeoutMs: 120_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('SUCCESS');
  });

  it('has a unit test for every alert', () => {
    const alerts = (parse(readFileSync(rules, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string }> }> }).groups.flatMap((g) =>
      g.rules.map((r) => r.alert),
    );
    const tested = new Set(
      (parse(readFileSync(unitTests, 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts: unknown[] }> }> }).tests.flatMap(
        (t) => (t.alert_rule_test ?? []).filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname),
      ),
    );
    expect(alerts.filter((a) => !tested.has(a))).toEqual([]);
  });

  it('the unit tests can fail: a threshold moved by one breaks them', () => {
    // Guards against tests that pass whatever the rules say.
    const dir = mkdtempSync(join(tmpdir(), 'iac-rules-'));
    const doc = parse(readFileSync(rules, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
    for (const g of doc.groups) for (const r of g.rules) if (r.alert === 'IACSearchPhaseFailures') r.expr = r.expr.replace('>= 3', '>= 4');
    writeFileSync(join(dir, 'rules.yaml'), stringify(doc));
    copyFileSync(unitTests, join(dir, 'rules.test.yaml'));
    const r = run(tools.paths.promtool, ['test', 'rules', join(dir, 'rules.test.yaml')], { timeoutMs: 120_000 });
    rmSync(dir, { recursive: true, force: true });
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toContain('IACSearchPhaseFailures');
  });
});
