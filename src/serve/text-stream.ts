// A generation's text as it grows, for streaming: each token re-decodes the reply so far and hands out only
// what is settled. It holds back a trailing U+FFFD (a character split across byte tokens) and any tail that
// could still become a stop string, and cuts the text where a stop string appears (OpenAI leaves it out).
import type { Tokenizer } from '../tokenizer/index.ts';

export class TextStream {
  private readonly ids: number[] = [];
  private emitted = '';
  private stopped = false;

  constructor(
    private readonly tok: Tokenizer,
    private readonly stops: readonly string[],
  ) {}

  /** The text handed out so far. */
  get text(): string {
    return this.emitted;
  }

  get hitStop(): boolean {
    return this.stopped;
  }

  /** Adds a token (never an EOS); returns the new settled text ('' when none). */
  push(id: number): string {
    if (this.stopped) return '';
    this.ids.push(id);
    const full = this.tok.decode(this.ids, { skipSpecial: true });
    let cut = -1;
    for (const s of this.stops) {
      const at = full.indexOf(s, Math.max(0, this.emitted.length - s.length + 1));
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      return this.advance(full.slice(0, cut));
    }
    let settled = full.endsWith('\uFFFD') ? full.slice(0, -1) : full;
    settled = settled.slice(0, settled.length - this.pendingStopPrefix(settled));
    return this.advance(settled);
  }

  /** The end of the generation: whatever was held back. */
  finish(): string {
    if (this.stopped) return '';
    return this.advance(this.tok.decode(this.ids, { skipSpecial: true }));
  }

  /** Length of the longest tail of `text` that begins some stop string. */
  private pendingStopPrefix(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
        if (text.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }

  private advance(text: string): string {
    // Decoding is prefix-stable for the tokenizers sftkit reads; should it ever rewrite earlier text, the
    // stream keeps what it already sent.
    if (!text.startsWith(this.emitted) || text.length <= this.emitted.length) return '';
    const delta = text.slice(this.emitted.length);
    this.emitted = text;
    return delta;
  }
}
