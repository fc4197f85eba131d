// Progress arithmetic: bytes, speed over a window, ETA, and the formatting the CLI prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DownloadProgress, formatBytes, formatDuration } from '../../src/hub/progress.ts';

test('overall and per-file bytes, speed and ETA from events', () => {
  let now = 0;
  const p = new DownloadProgress(() => now);
  p.handle({
    type: 'plan',
    repoId: 'r',
    revision: 'main',
    commit: 'c',
    files: [
      { path: 'a', size: 1000, status: 'cached', resumeFrom: 0 },
      { path: 'b', size: 10_000, status: 'download', resumeFrom: 2000 },
    ],
  });
  p.handle({ type: 'start', path: 'b', size: 10_000, resumeFrom: 2000 });
  now = 1000;
  p.handle({ type: 'bytes', path: 'b', bytesOnDisk: 4000 });
  assert.deepEqual(p.active(), [{ path: 'b', bytes: 4000, size: 10_000, speed: 2000, etaSeconds: 3 }]);
  const o = p.overall();
  assert.deepEqual([o.bytes, o.totalBytes, o.filesDone, o.filesTotal], [5000, 11_000, 1, 2]);
  assert.equal(o.speed, 2000); // resumed and cached bytes are not speed
  assert.equal(o.etaSeconds, 3);
  now = 2000;
  p.handle({ type: 'done', path: 'b', size: 10_000 });
  assert.deepEqual(p.active(), []);
  assert.deepEqual([p.overall().bytes, p.overall().filesDone], [11_000, 2]);
});

test('formatting', () => {
  assert.deepEqual([0, 999, 1000, 2050, 27_000_000, 1.5e9].map(formatBytes), ['0 B', '999 B', '1.00 kB', '2.05 kB', '27.0 MB', '1.50 GB']);
  assert.deepEqual([undefined, 0, 59.6, 61, 3725].map(formatDuration), ['?', '0:00', '1:00', '1:01', '1:02:05']);
});
