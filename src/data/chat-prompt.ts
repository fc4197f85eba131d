// Prompt ids for a multi-turn chat, built the way QA training built its samples (qa-tokenize.ts): one BOS,
// each earlier round as encode(prefix + reply) + EOS, then the new round's prefix through the assistant
// marker, so the model continues exactly where its trained replies began.
import type { Tokenizer } from '../tokenizer/index.ts';
import { trainedUserMessage } from './recorded-template.ts';
import { HfTemplateEncoder } from './hf-template.ts';
import { encodeParts } from './qa-tokenize.ts';
import { PART_TEMPLATES, checkTemplateName } from './templates.ts';

export interface ChatTurn {
  user: string;
  assistant: string;
}

export interface ChatPromptOptions {
  /** vicuna, alpaca, chatml, llama2, hf, or none (raw text). */
  template: string;
  /** null: the template's default system prompt. */
  system: string | null;
  /** The training data's user messages were whole Alpaca prompts: wrap each one the same way. */
  alpacaPrompts?: boolean;
}

export function chatPromptIds(tok: Tokenizer, history: readonly ChatTurn[], message: string, o: ChatPromptOptions): number[] {
  const wrap = (m: string): string => trainedUserMessage(m, { alpacaPrompts: o.alpacaPrompts === true });
  const turns = history.map((t) => ({ user: wrap(t.user), assistant: t.assistant }));
  const user = wrap(message);
  if (o.template === 'none') {
    const text = turns.map((t) => t.user + t.assistant).join('') + user;
    return tok.encode(text, { addBos: true, addEos: false });
  }
  const name = checkTemplateName(o.template);
  if (name === 'hf') return new HfTemplateEncoder(tok).chatPromptIds(o.system, turns, user);
  const tpl = PART_TEMPLATES[name]!;
  const rounds = tpl.rounds({ where: 'chat', system: o.system, rounds: [...turns, { user, assistant: '' }] });
  const ids = tok.bosId !== null ? [tok.bosId] : [];
  rounds.forEach((round, i) => {
    if (i === rounds.length - 1) {
      ids.push(...encodeParts(tok, round.prefix));
      return;
    }
    const full = encodeParts(tok, [...round.prefix, ...round.reply]);
    if (tok.eosId !== null && full[full.length - 1] !== tok.eosId) full.push(tok.eosId);
    ids.push(...full);
  });
  return ids;
}
