// The `hf` template: the model's own Jinja chat_template (tokenizer_config.json) rendered with @huggingface/jinja.
// Assistant tokens are found by rendering the conversation cut before and after each reply (that renderer drops
// `{% generation %}`), and the template's own special-token text is what becomes BOS/EOS/markers.
import { Template } from '@huggingface/jinja';
import { ConfigError, DataError } from '../errors.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import type { Conversation } from './conversation.ts';
import { commonPrefix, IGNORE_ID, type ChatEncoder, type DroppedSample, type EncodedSample } from './qa-tokenize.ts';

interface Message {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export class HfTemplateEncoder implements ChatEncoder {
  readonly template = 'hf';
  private readonly jinja: Template;
  private readonly specials: Record<string, string | null>;

  constructor(
    private readonly tok: Tokenizer,
    source: string | null = tok.chatTemplate,
  ) {
    if (source === null) {
      throw new ConfigError('--template hf: the tokenizer has no chat_template in tokenizer_config.json', {
        where: '--template',
        hint: 'choose a built-in template: vicuna, alpaca, chatml or llama2',
      });
    }
    try {
      this.jinja = new Template(source);
    } catch (err) {
      throw new ConfigError(`--template hf: cannot parse the chat_template: ${(err as Error).message}`, { where: 'tokenizer_config.json chat_template' });
    }
    const piece = (id: number | null): string | null => (id === null ? null : tok.idToPiece(id));
    this.specials = { bos_token: piece(tok.bosId), eos_token: piece(tok.eosId), unk_token: piece(tok.unkId), pad_token: piece(tok.padId) };
  }

  private render(messages: Message[], addGenerationPrompt: boolean, where: string): number[] {
    let text: string;
    try {
      text = this.jinja.render({ messages, add_generation_prompt: addGenerationPrompt, ...this.specials });
    } catch (err) {
      throw new DataError(`${where}: the chat_template refused the conversation: ${(err as Error).message}`, { where });
    }
    // The rendered text is the template's: its "<s>" or "<|im_end|>" are meant as special tokens. User text
    // with special-token text never gets here (see encode).
    return this.tok.encode(text, { addBos: false, addEos: false, parseSpecial: true });
  }

  encode(conv: Conversation): EncodedSample | DroppedSample {
    const messages: Message[] = [];
    if (conv.system !== null) messages.push({ role: 'system', content: conv.system });
    for (const r of conv.rounds) messages.push({ role: 'user', content: r.user }, { role: 'assistant', content: r.assistant });
    for (const msg of messages) {
      const literal = this.tok.encode(msg.content, { addBos: false, addEos: false, parseSpecial: false });
      const parsed = this.tok.encode(msg.content, { addBos: false, addEos: false, parseSpecial: true });
      if (commonPrefix(literal, parsed) !== literal.length || literal.length !== parsed.length) return { drop: 'special-token text in a message (hf template)' };
    }
    const ids = this.render(messages, false, conv.where);
    const labels = new Array<number>(ids.length).fill(IGNORE_ID);
    messages.forEach((msg, k) => {
      if (msg.role !== 'assistant') return;
      const before = this.render(messages.slice(0, k), true, conv.where);
      const through = this.render(messages.slice(0, k + 1), false, conv.where);
      if (commonPrefix(through, ids) !== through.length) {
        throw new DataError(`${conv.where}: the chat_template renders the conversation cut after message ${k} differently from the whole; cannot locate the assistant reply`, {
          where: conv.where,
          hint: 'use a built-in template (vicuna, alpaca, chatml, llama2)',
        });
      }
      for (let i = commonPrefix(before, through); i < through.length; i++) labels[i] = ids[i] as number;
    });
    return labels.some((l) => l !== IGNORE_ID) ? { ids, labels } : { drop: 'nothing to train' };
  }

  /** Prompt ids for a multi-turn chat: earlier rounds, then `user`, rendered with the generation prompt. */
  chatPromptIds(system: string | null, history: ReadonlyArray<{ user: string; assistant: string }>, user: string, where = 'prompt'): number[] {
    const messages: Message[] = system === null ? [] : [{ role: 'system', content: system }];
    for (const r of history) messages.push({ role: 'user', content: r.user }, { role: 'assistant', content: r.assistant });
    messages.push({ role: 'user', content: user });
    return this.render(messages, true, where);
  }

  /** Prompt ids for generation: the messages rendered with the template's generation prompt. */
  promptIds(system: string | null, user: string, where = 'prompt'): number[] {
    const messages: Message[] = system === null ? [] : [{ role: 'system', content: system }];
    messages.push({ role: 'user', content: user });
    return this.render(messages, true, where);
  }
}
