// Lists native sources for binding.gyp: argv[2] is a folder, argv[3] an optional sub-folder filter ("simd" or "base").
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
const base = files.filter((f) => !f.startsWith('native/kernels/simd/'));
process.stdout.write((which === 'simd' ? simd : base).sort().join(' '));
