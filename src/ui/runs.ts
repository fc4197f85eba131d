// The Runs page's API: every training run under the root (a folder with metrics.jsonl, checkpoint/meta.json or
// a run the dashboard started), its checkpoints, eval results and report, and metrics.jsonl read from an offset
// so the page gains the new points of a live run without re-reading the file.
import { closeSync, fstatSync, lstatSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { openConfined, readConfinedText } from '../formats/confined-file.ts';
import { HttpError, MAX_DEPTH, nesting } from './http.ts';
import type { UiRoot } from './root-paths.ts';

/** A marker the dashboard writes into the folder of a run it starts (argv, start time). */
export const UI_RUN_FILE = 'sftkit-ui-run.json';
/** Where a started run's stdout and stderr go. */
export const UI_LOG_FILE = 'sftkit-ui-run.log';

export interface RunSummary {
  /** The run's folder relative to the root. */
  id: string;
  hasMetrics: boolean;
  checkpoints: number;
  updated: number;
}

function has(entries: readonly { name: string; isFile(): boolean; isDirectory(): boolean }[], name: string, dir = false): boolean {
  return entries.some((e) => e.name === name && (dir ? e.isDirectory() : e.isFile()));
}

/** Run folders under the root, to 4 levels deep. */
export function listRuns(root: UiRoot): RunSummary[] {
  const out: RunSummary[] = [];
  root.walk(root.path, 4, (dir, entries) => {
    const metrics = has(entries, 'metrics.jsonl');
    const ckpt = has(entries, 'checkpoint', true);
    const started = has(entries, UI_RUN_FILE);
    if (!metrics && !started && !(ckpt && isTrainingRoot(join(dir, 'checkpoint')))) return false;
    let updated = 0;
    let count = 0;
    try {
      updated = fstatMtime(join(dir, metrics ? 'metrics.jsonl' : started ? UI_RUN_FILE : 'checkpoint'));
    } catch {
      // a file that vanished between the listing and the stat: the run still shows
    }
    if (ckpt) count = readCheckpointMeta(root, join(dir, 'checkpoint'))?.checkpoints.length ?? 0;
    out.push({ id: root.relative(dir), hasMetrics: metrics, checkpoints: count, updated });
    return true;
  });
  return out;
}

function fstatMtime(path: string): number {
  return lstatSync(path).mtimeMs;
}

function isTrainingRoot(dir: string): boolean {
  try {
    readConfinedText(join(dir, 'meta.json'));
    return true;
  } catch {
    return false;
  }
}

/** A JSON file of a run, or null when it is missing, unreadable, not JSON or nested too deeply to answer with. */
function readJson(root: UiRoot, path: string): unknown {
  try {
    const v: unknown = JSON.parse(readConfinedText(path, { root: root.path }));
    return nesting(v) > MAX_DEPTH ? null : v;
  } catch {
    return null;
  }
}

function readCheckpointMeta(root: UiRoot, dir: string): { latest: string; checkpoints: string[] } | null {
  const meta = readJson(root, join(dir, 'meta.json')) as { latest?: unknown; checkpoints?: unknown } | null;
  if (meta === null || typeof meta.latest !== 'string' || !Array.isArray(meta.checkpoints)) return null;
  // Names only: meta.json is data from disk, and a name like '../x' must not become a path.
  const plain = (n: unknown): n is string => typeof n === 'string' && /^[A-Za-z0-9_.-]+$/.test(n) && n !== '.' && n !== '..';
  return { latest: plain(meta.latest) ? meta.latest : '', checkpoints: meta.checkpoints.filter(plain) };
}

export interface RunDetail {
  id: string;
  checkpoints: { name: string; path: string; step: number | null; latest: boolean }[];
  evalResults: unknown;
  report: string | null;
  started: unknown;
  config: unknown;
}

/** What the page shows beside the curves. */
export function runDetail(root: UiRoot, id: string): RunDetail {
  const dir = root.resolve(id);
  const meta = readCheckpointMeta(root, join(dir, 'checkpoint'));
  const checkpoints = (meta?.checkpoints ?? []).map((name) => {
    const state = readJson(root, join(dir, 'checkpoint', name, 'trainer_state.json')) as { step?: unknown } | null;
    return { name, path: root.relative(join(dir, 'checkpoint', name)), step: typeof state?.step === 'number' ? state.step : null, latest: name === meta?.latest };
  });
  let report: string | null = null;
  try {
    report = readConfinedText(join(dir, 'report.md'), { root: root.path });
  } catch {
    report = null;
  }
  const latest = checkpoints.find((c) => c.latest);
  const state = latest ? (readJson(root, join(dir, 'checkpoint', latest.name, 'trainer_state.json')) as { config?: unknown } | null) : null;
  return {
    id: root.relative(dir),
    checkpoints,
    evalResults: readJson(root, join(dir, 'eval_results.json')),
    report,
    started: readJson(root, join(dir, UI_RUN_FILE)),
    config: state?.config ?? null,
  };
}

/** Most bytes of metrics.jsonl one request returns (the page asks again from the new offset). */
const MAX_CHUNK = 1 << 20;

export interface MetricsChunk {
  /** The offset to ask from next time (just past the last complete line returned). */
  offset: number;
  /** The file's size now. */
  size: number;
  /** True when the file is shorter than the offset asked for (it was replaced): the points start over. */
  reset: boolean;
  points: Record<string, unknown>[];
}

/** The complete lines of `<run>/metrics.jsonl` from byte `offset`, parsed (lines that are not JSON objects are skipped). */
export function readMetrics(root: UiRoot, id: string, offset: number): MetricsChunk {
  const dir = root.resolve(id);
  let fd: number;
  try {
    fd = openConfined(join(dir, 'metrics.jsonl'), { root: root.path });
  } catch {
    return { offset: 0, size: 0, reset: offset > 0, points: [] };
  }
  try {
    const size = fstatSync(fd).size;
    const reset = offset > size;
    const from = reset ? 0 : offset;
    const want = Math.min(MAX_CHUNK, size - from);
    const buf = Buffer.alloc(want);
    let got = 0;
    while (got < want) {
      const n = readSync(fd, buf, got, want - got, from + got);
      if (n === 0) break;
      got += n;
    }
    const end = buf.lastIndexOf(0x0a, got - 1);
    if (end < 0) {
      if (got === MAX_CHUNK) throw new HttpError(422, `${id}/metrics.jsonl has a line longer than ${MAX_CHUNK} bytes`);
      return { offset: from, size, reset, points: [] };
    }
    const points: Record<string, unknown>[] = [];
    for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      try {
        const v: unknown = JSON.parse(line);
        if (typeof v === 'object' && v !== null && !Array.isArray(v) && nesting(v) <= MAX_DEPTH) points.push(v as Record<string, unknown>);
      } catch {
        // a damaged line (a crash mid-write): the rest of the curve still shows
      }
    }
    return { offset: from + end + 1, size, reset, points };
  } finally {
    closeSync(fd);
  }
}
