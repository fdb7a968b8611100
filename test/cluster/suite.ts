// Whether a cluster suite runs here. Outside CI a machine without the control-plane
// binaries skips the suite and says how to get them; in CI (CI=true) the suite always runs,
// so missing binaries fail it instead of passing silently.
import { findBinaries } from './binaries.ts';

export interface ClusterAvailability {
  skip: boolean;
  reason?: string;
}

export function clusterAvailability(): ClusterAvailability {
  const lookup = findBinaries();
  if (lookup.ok) return { skip: false };
  if (process.env.CI === 'true' || process.env.CI === '1') return { skip: false, reason: lookup.reason };
  console.warn(`skipping cluster suite: ${lookup.reason}`);
  return { skip: true, reason: lookup.reason };
}
