// Download progress as data: the events a download emits and a tracker that turns them into bytes,
// speed and ETA per file and overall. Rendering (bars, plain lines) belongs to the CLI.

export interface PlannedFile {
  path: string;
  size: number;
  /** 'cached': already in place; 'download': to fetch (maybe resuming `resumeFrom` bytes). */
  status: 'cached' | 'download';
  resumeFrom: number;
}

export type DownloadEvent =
  | { type: 'plan'; repoId: string; revision: string; commit: string; files: PlannedFile[] }
  | { type: 'start'; path: string; size: number; resumeFrom: number }
  | { type: 'bytes'; path: string; bytesOnDisk: number }
  | { type: 'retry'; path: string; attempt: number; reason: string }
  | { type: 'done'; path: string; size: number }
  /** A listed file that is not written (a hidden path such as `.git/config`), and why. */
  | { type: 'skipped'; path: string; reason: string }
  /** The hub was unreachable; a cached snapshot of the revision is used instead. */
  | { type: 'cache-fallback'; commit: string; reason: string };

export interface Rate {
  /** Bytes per second over the last few seconds (0 until measurable). */
  speed: number;
  /** Seconds left at that speed; undefined while the speed is unknown. */
  etaSeconds: number | undefined;
}

export interface FileProgress extends Rate {
  path: string;
  bytes: number;
  size: number;
}

export interface OverallProgress extends Rate {
  bytes: number;
  totalBytes: number;
  filesDone: number;
  filesTotal: number;
}

const WINDOW_MS = 5000;

/** Speed over a sliding window of (time, bytes) samples. */
class RateMeter {
  private samples: Array<[number, number]> = [];
  add(now: number, bytes: number): void {
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - (this.samples[1]?.[0] ?? now) > WINDOW_MS) this.samples.shift();
  }
  rate(remaining: number): Rate {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first === undefined || last === undefined || last[0] - first[0] < 200) return { speed: 0, etaSeconds: undefined };
    const speed = ((last[1] - first[1]) * 1000) / (last[0] - first[0]);
    return { speed, etaSeconds: speed > 0 ? remaining / speed : undefined };
  }
}

interface FileState {
  path: string;
  size: number;
  bytes: number;
  meter: RateMeter;
}

export class DownloadProgress {
  private files = new Map<string, FileState>();
  private overallMeter = new RateMeter();
  private totalBytes = 0;
  private filesTotal = 0;
  private filesDone = 0;
  /** Bytes of finished and cached files (active ones are added from `files`). */
  private doneBytes = 0;
  /** Bytes received in this run: what speed is measured on (resumed and cached bytes are not speed). */
  private received = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  handle(event: DownloadEvent): void {
    const t = this.now();
    switch (event.type) {
      case 'plan':
        this.totalBytes = event.files.reduce((s, f) => s + f.size, 0);
        this.filesTotal = event.files.length;
        for (const f of event.files) {
          if (f.status === 'cached') {
            this.filesDone++;
            this.doneBytes += f.size;
          }
        }
        this.overallMeter.add(t, this.received);
        break;
      case 'start': {
        const state = { path: event.path, size: event.size, bytes: event.resumeFrom, meter: new RateMeter() };
        state.meter.add(t, state.bytes);
        this.files.set(event.path, state);
        break;
      }
      case 'bytes': {
        const state = this.files.get(event.path);
        if (state === undefined) break;
        // A restart from 0 (server ignored the range) must not count as negative speed.
        if (event.bytesOnDisk < state.bytes) state.meter = new RateMeter();
        else this.received += event.bytesOnDisk - state.bytes;
        state.bytes = event.bytesOnDisk;
        state.meter.add(t, state.bytes);
        this.overallMeter.add(t, this.received);
        break;
      }
      case 'done': {
        this.files.delete(event.path);
        this.filesDone++;
        this.doneBytes += event.size;
        this.overallMeter.add(t, this.received);
        break;
      }
      case 'retry':
      case 'skipped':
      case 'cache-fallback':
        break;
    }
  }

  private bytes(): number {
    let active = 0;
    for (const f of this.files.values()) active += f.bytes;
    return this.doneBytes + active;
  }

  overall(): OverallProgress {
    const bytes = this.bytes();
    return { bytes, totalBytes: this.totalBytes, filesDone: this.filesDone, filesTotal: this.filesTotal, ...this.overallMeter.rate(this.totalBytes - bytes) };
  }

  active(): FileProgress[] {
    return [...this.files.values()].map((f) => ({ path: f.path, bytes: f.bytes, size: f.size, ...f.meter.rate(f.size - f.bytes) }));
  }
}

/** 1 kB = 1000 B, as the hub's own progress bars count. */
export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

/** m:ss, or h:mm:ss past an hour; '?' when unknown. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}
