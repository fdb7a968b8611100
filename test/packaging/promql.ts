// Small, deliberately partial PromQL reading for the packaging tests: which metrics and
// label matchers a query uses, and how Grafana's variables are filled in for Prometheus.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { panels } from '../../deploy/grafana/gen-dashboard.ts';
import { repoRoot } from './tools.ts';

export interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}
export interface Selector {
  metric: string;
  matchers: Matcher[];
}

const METRIC = /\b(iacsearch_[a-z_]+|iacsearchset_[a-z_]+|iac_operator_[a-z_]+|node_gpu_hourly_cost|up)\b/g;
const SELECTOR = /([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^{}]*)\}/g;
const MATCHER = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g;

/** Every metric name a query mentions (also inside {__name__=~"a|b"}). */
export function metricNames(expr: string): Set<string> {
  return new Set([...expr.matchAll(METRIC)].map((m) => m[1]));
}

/** The selectors with their matchers; a {__name__=~"a|b", ...} selector yields one per name. */
export function selectors(expr: string): Selector[] {
  const out: Selector[] = [];
  for (const m of expr.matchAll(SELECTOR)) {
    // "by (...)" / "on (...)" lists use parentheses, so {...} here is always a selector;
    // skip template braces such as {{ $labels.name }}.
    if (m[2].includes('$labels')) continue;
    const matchers: Matcher[] = [...m[2].matchAll(MATCHER)].map((x) => ({ label: x[1], op: x[2] as Matcher['op'], value: x[3] }));
    const name = matchers.find((x) => x.label === '__name__');
    const rest = matchers.filter((x) => x.label !== '__name__');
    if (m[1]) out.push({ metric: m[1], matchers: rest });
    else if (name) for (const n of name.value.split('|')) out.push({ metric: n, matchers: rest });
  }
  return out;
}

/** Grafana variables -> values Prometheus accepts (all namespaces, searches and sets, 5 m windows). */
export function fillGrafanaVariables(expr: string, range = '5m'): string {
  return expr
    .replaceAll('$namespace', '.*')
    .replaceAll('$search', '.*')
    .replaceAll('$set', '.*')
    .replaceAll('$__rate_interval', range)
    .replaceAll('$__range', range);
}

export interface Query {
  source: string;
  expr: string;
  /** Needs something outside the operator (OpenCost). */
  optional: boolean;
  /** Asks for IACSearchSets or their children: empty where no set exists. */
  fleet?: boolean;
}

export function dashboardQueries(): Query[] {
  return panels.flatMap((p) =>
    p.targets.map((t, i) => ({ source: `dashboard panel "${p.title}" #${i + 1}`, expr: t.expr, optional: p.optional === true, fleet: p.fleet === true })),
  );
}

export function ruleQueries(file = 'deploy/prometheus/rules.yaml'): Query[] {
  const doc = parse(readFileSync(join(repoRoot, file), 'utf8')) as {
    groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string }> }>;
  };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ source: `rule ${g.name}/${r.alert ?? r.record}`, expr: r.expr, optional: false })));
}
