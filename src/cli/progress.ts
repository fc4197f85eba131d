// The live training line: one line rewritten in place on a terminal, plain lines otherwise.
import type { StepInfo } from '../train/trainer.ts';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

export function formatStep(s: StepInfo): string {
  const width = String(s.totalSteps).length;
  return (
    `step ${String(s.step).padStart(width)}/${s.totalSteps}  epoch ${s.epoch}  loss ${s.loss.toFixed(4)}  lr ${s.lr.toExponential(2)}  ` +
    `grad ${s.gradNorm.toFixed(3)}  ${Math.round(s.tokensPerSecond)} tok/s  elapsed ${formatDuration(s.elapsedSeconds)}  ETA ${formatDuration(s.etaSeconds)}`
  );
}

export class StepPrinter {
  private readonly tty: boolean;
  private pending = false;

  constructor(private readonly stream: NodeJS.WriteStream = process.stdout) {
    this.tty = stream.isTTY === true;
  }

  step(info: StepInfo, logEvery: number): void {
    if (this.tty) {
      this.stream.write(`\r\x1b[2K${formatStep(info)}`);
      this.pending = true;
      if (info.step === info.totalSteps) this.flush();
    } else if (info.step % logEvery === 0 || info.step === info.totalSteps) {
      this.stream.write(`${formatStep(info)}\n`);
    }
  }

  /** Ends the in-place line before other output. */
  flush(): void {
    if (this.pending) {
      this.stream.write('\n');
      this.pending = false;
    }
  }

  line(text: string): void {
    this.flush();
    this.stream.write(`${text}\n`);
  }
}
