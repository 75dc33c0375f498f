// Builds the UI into ../static (app.js and style.css), which is committed:
// `go build` and `go run ./cmd/chatd` embed it and need no Node.js. The
// output depends only on the sources and the locked packages (no dates, no
// absolute paths), so CI rebuilds it and fails when it differs.
import * as esbuild from 'esbuild';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'static');

const common = {
  bundle: true,
  minify: true,
  target: ['es2022'],
  legalComments: 'eof',
  logLevel: 'warning',
  absWorkingDir: here,
};

await esbuild.build({
  ...common,
  entryPoints: ['src/main.tsx'],
  outfile: join(out, 'app.js'),
  format: 'iife',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  define: { 'process.env.NODE_ENV': '"production"' },
});
await esbuild.build({
  ...common,
  entryPoints: ['src/style.css'],
  outfile: join(out, 'style.css'),
});
