// Lists native sources for binding.gyp: argv[2] picks "simd" (kernels/simd/, built once per ISA), "bf16"
// (kernels/bf16/, built with -mavx512bf16), "amx" (kernels/amx/, built with -mamx-tile -mamx-bf16) or "base"
// (everything else).
const fs = require('node:fs');
const path = require('node:path');
const root = path.join(__dirname, '..');
const which = process.argv[2];
const files = [];
function walk(dir) {
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.posix.join(dir, e.name);
    if (e.isDirectory()) walk(rel);
    else if (e.name.endsWith('.cc')) files.push(rel);
  }
}
walk('native');
const simd = files.filter((f) => f.startsWith('native/kernels/simd/'));
const bf16 = files.filter((f) => f.startsWith('native/kernels/bf16/'));
const amx = files.filter((f) => f.startsWith('native/kernels/amx/'));
const base = files.filter((f) => !simd.includes(f) && !bf16.includes(f) && !amx.includes(f));
process.stdout.write((which === 'simd' ? simd : which === 'bf16' ? bf16 : which === 'amx' ? amx : base).sort().join(' '));
