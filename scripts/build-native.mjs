// Builds the native addon with npm's bundled node-gyp against the running Node's own headers,
// so that `npm ci` works offline (no header download) and needs no system libraries.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';

const nodePrefix = dirname(dirname(process.execPath));
const headers = join(nodePrefix, 'include', 'node');
if (!existsSync(join(headers, 'node_api.h'))) {
  console.error(`sftkit: Node's headers are missing (${headers}/node_api.h); install Node with its headers (e.g. the official tarball or Debian's nodejs + libnode-dev).`);
  process.exit(1);
}

// npm puts its node-gyp on PATH for lifecycle scripts; outside npm, find the one bundled with npm.
function nodeGypCommand() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(nodePrefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally: fine
  }
  for (const c of candidates) if (c && existsSync(c)) return c;
  return null;
}

const gyp = nodeGypCommand();
if (!gyp) {
  console.error('sftkit: node-gyp not found (it ships with npm); run the build through `npm ci` or `npm run build`.');
  process.exit(1);
}
const jobs = process.env.SFTKIT_BUILD_JOBS ?? 'max';
const result = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodePrefix}`, `--jobs=${jobs}`], {
  stdio: 'inherit',
  env: { ...process.env, npm_config_nodedir: nodePrefix },
});
process.exit(result.status ?? 1);
