// `sftkit download REPO_ID`: fetch a model from the Hugging Face hub into the cache shared with Python tools
// (or a plain folder), with progress bars on a terminal and plain lines otherwise; prints the local path.
import type { Command } from 'commander';
import { ConfigError } from '../../errors.ts';
import { snapshotDownload } from '../../hub/snapshot-download.ts';
import { DownloadProgress, formatBytes, formatDuration, type DownloadEvent, type FileProgress } from '../../hub/progress.ts';

interface DownloadFlags {
  revision: string;
  include?: string[];
  exclude?: string[];
  local_dir?: string;
  cache_dir?: string;
  token?: string;
}

const REDRAW_MS = 100;
const PLAIN_EVERY_MS = 5000;

function bar(fraction: number, width: number): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'#'.repeat(filled)}${' '.repeat(width - filled)}]`;
}

function pct(bytes: number, total: number): string {
  return `${total > 0 ? Math.floor((bytes * 100) / total) : 100}%`.padStart(4);
}

function rateText(p: { speed: number; etaSeconds: number | undefined }): string {
  if (p.speed <= 0) return '';
  return p.etaSeconds !== undefined && p.etaSeconds >= 0.5 ? `${formatBytes(Math.round(p.speed))}/s ETA ${formatDuration(p.etaSeconds)}` : `${formatBytes(Math.round(p.speed))}/s`;
}

/** Name and bar widths for a terminal this wide; the rest of a line (percent, bytes, files, speed, ETA) takes ~60. */
function widths(columns: number): { name: number; bar: number } {
  const avail = Math.max(0, columns - 60);
  const name = Math.max(12, Math.min(40, Math.floor(avail * 0.6)));
  return { name, bar: Math.max(10, Math.min(30, avail - name)) };
}

function fitName(path: string, width: number): string {
  return path.length > width ? `…${path.slice(-(width - 1))}` : path.padEnd(width);
}

function fileLine(f: FileProgress, w: { name: number; bar: number }): string {
  return `${fitName(f.path, w.name)} ${bar(f.bytes / Math.max(1, f.size), w.bar)} ${pct(f.bytes, f.size)} ${formatBytes(f.bytes)}/${formatBytes(f.size)} ${rateText(f)}`;
}

/** Draws progress on stderr: a redrawn block of bars on a terminal, occasional plain lines in logs. */
class ProgressView {
  private readonly progress = new DownloadProgress();
  private readonly tty: boolean;
  private drawnLines = 0;
  private lastDraw = 0;
  private lastPlain = 0;

  constructor(private readonly out: NodeJS.WriteStream) {
    this.tty = out.isTTY === true;
  }

  private write(text: string): void {
    this.out.write(text);
  }

  handle(event: DownloadEvent): void {
    this.progress.handle(event);
    const now = Date.now();
    switch (event.type) {
      case 'plan': {
        const todo = event.files.filter((f) => f.status === 'download');
        const bytes = todo.reduce((s, f) => s + f.size - f.resumeFrom, 0);
        const resumed = todo.filter((f) => f.resumeFrom > 0).length;
        this.line(
          `${event.repoId}@${event.revision} (commit ${event.commit.slice(0, 10)}): ${event.files.length} files, ` +
            `${todo.length} to fetch (${formatBytes(bytes)}${resumed > 0 ? `, ${resumed} resumed` : ''}), ${event.files.length - todo.length} already present`,
        );
        return;
      }
      case 'retry':
        this.line(`connection dropped on ${event.path} (${event.reason}); resuming, attempt ${event.attempt}`);
        return;
      case 'skipped':
        this.line(`warning: skipping ${event.path}: ${event.reason}`);
        return;
      case 'cache-fallback':
        this.line(`warning: ${event.reason}\nusing the cached snapshot ${event.commit}`);
        return;
      case 'done':
        if (!this.tty) this.line(`done ${event.path} (${formatBytes(event.size)}) ${this.totalText()}`);
        else this.draw(true);
        return;
      case 'start':
      case 'bytes':
        if (this.tty && now - this.lastDraw >= REDRAW_MS) this.draw(false);
        if (!this.tty && now - this.lastPlain >= PLAIN_EVERY_MS && event.type === 'bytes') {
          this.lastPlain = now;
          for (const f of this.progress.active()) this.line(`  ${f.path} ${pct(f.bytes, f.size).trim()} ${formatBytes(f.bytes)}/${formatBytes(f.size)} ${rateText(f)}`);
          this.line(`  ${this.totalText()}`);
        }
        return;
    }
  }

  private totalText(): string {
    const o = this.progress.overall();
    return `total ${pct(o.bytes, o.totalBytes).trim()} ${formatBytes(o.bytes)}/${formatBytes(o.totalBytes)}, ${o.filesDone}/${o.filesTotal} files ${rateText(o)}`.trimEnd();
  }

  /** A line above the progress block (terminal) or a log line. */
  private line(text: string): void {
    this.clear();
    this.write(`${text}\n`);
    if (this.tty) this.draw(true);
  }

  private clear(): void {
    if (this.drawnLines > 0) this.write(`\x1b[${this.drawnLines}A\x1b[0J`);
    this.drawnLines = 0;
  }

  private draw(force: boolean): void {
    if (!this.tty) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < REDRAW_MS) return;
    this.lastDraw = now;
    const columns = this.out.columns || 100; // 0 on a pseudo-terminal with no size
    const w = widths(columns);
    const o = this.progress.overall();
    const lines = this.progress.active().map((f) => fileLine(f, w));
    const files = `${o.filesDone}/${o.filesTotal} files`;
    lines.push(`${fitName('total', w.name)} ${bar(o.bytes / Math.max(1, o.totalBytes), w.bar)} ${pct(o.bytes, o.totalBytes)} ${formatBytes(o.bytes)}/${formatBytes(o.totalBytes)} ${files} ${rateText(o)}`);
    this.clear();
    this.write(lines.map((l) => l.slice(0, columns - 1)).join('\n') + '\n');
    this.drawnLines = lines.length;
  }

  finish(): void {
    if (this.tty) this.draw(true);
  }
}

export function registerDownload(program: Command): void {
  program
    .command('download')
    .description('download a model from the Hugging Face hub into the cache shared with Python tools (prints its local path)')
    .argument('<repo_id>', "model repo id, e.g. 'openai-community/gpt2'")
    .option('--revision <rev>', 'branch, tag or commit hash', 'main')
    .option('--include <glob...>', "only files matching these globs (e.g. '*.json' '*.safetensors')")
    .option('--exclude <glob...>', "skip files matching these globs (e.g. '*.bin')")
    .option('--local_dir <dir>', 'write real files into this folder instead of the cache')
    .option('--cache_dir <dir>', 'hub cache folder (default: HF_HUB_CACHE, else HF_HOME/hub)')
    .option('--token <token>', 'access token for private or gated repos (default: HF_TOKEN)')
    .addHelpText(
      'after',
      '\nEnvironment: HF_TOKEN, HF_ENDPOINT, HF_HUB_CACHE, HF_HOME, HF_HUB_OFFLINE=1 (use only the cache).',
    )
    .action(async (repoId: string, flags: DownloadFlags) => {
      if (flags.local_dir !== undefined && flags.cache_dir !== undefined) {
        throw new ConfigError('--local_dir and --cache_dir cannot be used together', { where: '--local_dir', hint: 'use --local_dir for a plain folder, --cache_dir for a hub cache' });
      }
      const view = new ProgressView(process.stderr);
      const result = await snapshotDownload({
        repoId,
        revision: flags.revision,
        include: flags.include ?? [],
        exclude: flags.exclude ?? [],
        ...(flags.local_dir !== undefined ? { localDir: flags.local_dir } : {}),
        ...(flags.cache_dir !== undefined ? { cacheDir: flags.cache_dir } : {}),
        ...(flags.token !== undefined ? { token: flags.token } : {}),
        onEvent: (e) => view.handle(e),
      });
      view.finish();
      if (result.fromCache && result.files.length === 0) process.stderr.write(`using the cached snapshot of ${repoId} (commit ${result.commit})\n`);
      console.log(result.path);
    });
}
