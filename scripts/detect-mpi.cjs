// Tells binding.gyp whether MPI can be linked: prints mpicc's compile flags ("cflags"), link flags ("libs"),
// or 1/0 ("have"). Prints nothing (or 0) without mpicc, or when SFTKIT_NO_MPI=1 forces a build without MPI.
const { execFileSync } = require('node:child_process');

function showme(what) {
  try {
    return execFileSync(process.env.MPICC || 'mpicc', [`--showme:${what}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

const which = process.argv[2];
const disabled = process.env.SFTKIT_NO_MPI === '1';
const compile = disabled ? null : showme('compile');
const link = compile === null ? null : showme('link');
const have = compile !== null && link !== null;
if (which === 'have') process.stdout.write(have ? '1' : '0');
else if (which === 'cflags') process.stdout.write(have ? compile : '');
else if (which === 'libs') {
  // The library directory also goes into the rpath, so a non-default prefix still loads at run time.
  const dirs = have ? link.split(/\s+/).filter((f) => f.startsWith('-L')).map((f) => `-Wl,-rpath,${f.slice(2)}`) : [];
  process.stdout.write(have ? [link, ...dirs].join(' ') : '');
}
