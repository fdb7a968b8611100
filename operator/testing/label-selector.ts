// Equality- and existence-based label selectors ("a", "!a", "a=b", "a==b", "a!=b"),
// the subset the operator uses; set-based selectors ("a in (x,y)") are rejected.

export type LabelMatcher = (labels: Record<string, string> | undefined) => boolean;

export function parseLabelSelector(selector: string | undefined): LabelMatcher {
  const terms = (selector ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((term): LabelMatcher => {
      if (/\s(in|notin)\s/.test(term)) throw new Error(`label selector '${selector}': set-based terms are not supported`);
      let m = /^([^!=]+)!=(.*)$/.exec(term);
      if (m) {
        const [, k, v] = m;
        return (l) => l?.[k.trim()] !== v.trim();
      }
      m = /^([^!=]+)==?(.*)$/.exec(term);
      if (m) {
        const [, k, v] = m;
        return (l) => l?.[k.trim()] === v.trim();
      }
      if (term.startsWith('!')) {
        const k = term.slice(1).trim();
        return (l) => l?.[k] === undefined;
      }
      return (l) => l?.[term] !== undefined;
    });
  return (labels) => terms.every((t) => t(labels));
}
