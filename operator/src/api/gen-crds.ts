// `npm run gen:crds`: writes the IACSearch and IACSearchSet CRDs from the zod schemas.
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CRD_FILE, renderCRD } from './crd.ts';
import { renderSetCRD, SET_CRD_FILE } from './set-crd.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
for (const [file, text] of [
  [CRD_FILE, renderCRD()],
  [SET_CRD_FILE, renderSetCRD()],
] as const) {
  const target = join(root, file);
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text);
  console.log(`wrote ${file}`);
}
