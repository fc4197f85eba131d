// QA tokenization (DESIGN.md contract): one BOS; each round encoded on its own plus EOS; labels mask BOS and
// each round's prompt (the longest common token prefix of encode(prefix) and encode(round)); reply + EOS trained.
import type { Tokenizer } from '../tokenizer/index.ts';
import type { Conversation } from './conversation.ts';
import type { Part, PartTemplate } from './templates.ts';

export const IGNORE_ID = -100;

/** Token ids and labels of one sample, before truncation and padding. */
export interface EncodedSample {
  ids: number[];
  labels: number[];
}

/** A sample that cannot be trained on, with the reason it is counted under. */
export interface DroppedSample {
  drop: string;
}

export interface ChatEncoder {
  readonly template: string;
  encode(conv: Conversation): EncodedSample | DroppedSample;
}

/** Length of the longest common prefix of two id lists. */
export function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Ids of template parts: adjacent text (and markers the tokenizer lacks) is one string, encoded as a whole
 * without parsing special tokens; a marker the tokenizer knows as a special token becomes its id.
 */
export function encodeParts(tok: Tokenizer, parts: readonly Part[]): number[] {
  const ids: number[] = [];
  let text = '';
  const flush = (): void => {
    if (text === '') return;
    for (const id of tok.encode(text, { addBos: false, addEos: false, parseSpecial: false })) ids.push(id);
    text = '';
  };
  for (const p of parts) {
    if ('text' in p) text += p.text;
    else if ('bos' in p) {
      flush();
      if (tok.bosId !== null) ids.push(tok.bosId);
    } else {
      const id = tok.pieceToId(p.marker);
      if (id !== null && tok.isSpecial(id)) {
        flush();
        ids.push(id);
      } else text += p.marker;
    }
  }
  flush();
  return ids;
}

/** The contract's encoder for the built-in templates. */
export class PartEncoder implements ChatEncoder {
  readonly template: string;
  constructor(
    private readonly tok: Tokenizer,
    private readonly tpl: PartTemplate,
  ) {
    this.template = tpl.name;
  }

  encode(conv: Conversation): EncodedSample | DroppedSample {
    const tok = this.tok;
    const ids: number[] = [];
    const labels: number[] = [];
    if (tok.bosId !== null) {
      ids.push(tok.bosId);
      labels.push(IGNORE_ID);
    }
    for (const round of this.tpl.rounds(conv)) {
      const full = encodeParts(tok, [...round.prefix, ...round.reply]);
      const masked = commonPrefix(encodeParts(tok, round.prefix), full);
      // EOS ends every round as an id (never as "</s>" text); a template whose end marker is EOS keeps one.
      if (tok.eosId !== null && full[full.length - 1] !== tok.eosId) full.push(tok.eosId);
      for (let i = 0; i < full.length; i++) {
        ids.push(full[i] as number);
        labels.push(i < masked ? IGNORE_ID : (full[i] as number));
      }
    }
    return ids.length > 0 && labels.some((l) => l !== IGNORE_ID) ? { ids, labels } : { drop: 'nothing to train' };
  }
}
