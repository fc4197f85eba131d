// A generation's text as it grows, for streaming: each token decodes a short window of the latest tokens (as
// vLLM's incremental detokenizer does: the new text is what decoding the window with and without its newest
// tokens differs by), so a reply of n tokens costs O(n) decoding, not O(n²), and hands out only what is
// settled. It holds back trailing U+FFFDs (a character split across byte tokens) and any tail that could
// still become a stop string, and cuts the text where a stop string appears (OpenAI leaves it out).
import type { Tokenizer } from '../tokenizer/index.ts';

/** Tokens a streaming decode window grows to before it restarts, and the tokens it keeps for context. */
const WINDOW = 32;
const CONTEXT = 4;

export class TextStream {
  private readonly ids: number[] = [];
  private emitted = '';
  private stopped = false;
  /** The text of ids[0, read): settled (no split character at its end). */
  private head = '';
  /** Each token decodes the window ids[prefix, end); `before` is the text of ids[prefix, read). */
  private prefix = 0;
  private read = 0;
  private before = '';

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
    const full = this.decodeAll();
    let cut = -1;
    for (const s of this.stops) {
      const at = full.indexOf(s, Math.max(0, this.emitted.length - s.length + 1));
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      return this.advance(full.slice(0, cut));
    }
    // A character split across byte tokens decodes to one U+FFFD per byte so far: hold them all back.
    let settled = full.replace(/\uFFFD+$/, '');
    settled = settled.slice(0, settled.length - this.pendingStopPrefix(settled));
    return this.advance(settled);
  }

  /** The end of the generation: whatever was held back. */
  finish(): string {
    if (this.stopped) return '';
    return this.advance(this.tok.decode(this.ids, { skipSpecial: true }));
  }

  /**
   * The text of every id so far: the settled head plus what the window ids[prefix, end) adds past ids[prefix,
   * read). Once that ends in a whole character it is settled; a window past WINDOW tokens restarts at the last
   * CONTEXT tokens (which give the decoder its context, e.g. a word's leading space). Falls back to decoding
   * everything when the window's text does not extend its earlier text (a decoder that rewrites earlier text).
   */
  private decodeAll(): string {
    const opts = { skipSpecial: true };
    const after = this.tok.decode(this.ids.slice(this.prefix), opts);
    let full: string;
    if ((this.prefix === 0 || this.before !== '') && after.startsWith(this.before)) full = this.head + after.slice(this.before.length);
    else {
      full = this.tok.decode(this.ids, opts);
      this.prefix = 0;
      this.before = '';
    }
    if (!full.endsWith('\uFFFD')) {
      this.head = full;
      this.read = this.ids.length;
      if (this.read - this.prefix > WINDOW) {
        this.prefix = this.read - CONTEXT;
        this.before = this.tok.decode(this.ids.slice(this.prefix), opts);
      } else this.before = this.prefix === 0 ? full : after; // the text of ids[prefix, read) either way
    }
    return full;
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
