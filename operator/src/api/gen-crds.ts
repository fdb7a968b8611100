// `npm run gen:crds`: writes the IACSearch CRD from the zod schemas.
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CRD_FILE, renderCRD } from './crd.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const target = join(root, CRD_FILE);
mkdirSync(dirname(target), { recursive: true });
writeFileSync(target, renderCRD());
console.log(`wrote ${CRD_FILE}`);
