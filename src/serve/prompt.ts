// Request prompts to token ids, rendered exactly as `sftkit chat` and `sftkit predict` render theirs (the
// template recorded with the training data unless --template says otherwise), so the server's greedy output
// equals predict's for the same message. Chat messages must read as a conversation the template can express:
// optional system (or developer) messages first, then user and assistant turns alternating, ending with user.
import { chatPromptIds, type ChatTurn } from '../data/chat-prompt.ts';
import { promptIds } from '../data/prompt.ts';
import type { GenerationTemplate } from '../data/recorded-template.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { badField } from './errors.ts';
import { CHAT_ENDPOINT, COMPLETIONS_ENDPOINT, type ChatMessage } from './request.ts';

export function chatRequestIds(tok: Tokenizer, tpl: GenerationTemplate, messages: readonly ChatMessage[]): number[] {
  const bad = (i: number, field: string, message: string): Error => badField(CHAT_ENDPOINT, `messages[${i}].${field}`, message);
  let i = 0;
  const system: string[] = [];
  for (; i < messages.length; i++) {
    const m = messages[i] as ChatMessage;
    if (m.role !== 'system' && m.role !== 'developer') break;
    system.push(m.content);
  }
  const history: ChatTurn[] = [];
  let user: string | null = null;
  for (; i < messages.length; i++) {
    const m = messages[i] as ChatMessage;
    const want = user === null ? 'user' : 'assistant';
    if (m.role !== want) {
      const where = m.role === 'system' || m.role === 'developer' ? 'system messages must come first' : `expected a ${want} message after ${user === null ? 'the system messages or an assistant turn' : 'a user turn'}`;
      throw bad(i, 'role', `${where}, got ${m.role}`);
    }
    if (user === null) user = m.content;
    else {
      history.push({ user, assistant: m.content });
      user = null;
    }
  }
  if (user === null) throw bad(messages.length - 1, 'role', 'the conversation must end with a user message');
  if (tpl.template === 'hf') {
    // The model's Jinja template renders text that is then parsed for special tokens: user text must not
    // smuggle them in.
    messages.forEach((m, k) => {
      const literal = tok.encode(m.content, { addBos: false, addEos: false, parseSpecial: false });
      const parsed = tok.encode(m.content, { addBos: false, addEos: false, parseSpecial: true });
      if (literal.length !== parsed.length || literal.some((id, j) => id !== parsed[j])) throw bad(k, 'content', 'holds special-token text, which the hf template would turn into control tokens');
    });
  }
  return chatPromptIds(tok, history, user, { template: tpl.template, system: system.length > 0 ? system.join('\n') : null, alpacaPrompts: tpl.alpacaPrompts });
}

/** A completion prompt: text after BOS (predict's `none` template), or token ids checked against the vocabulary. */
export function completionRequestIds(tok: Tokenizer, vocabSize: number, prompt: string | readonly number[]): number[] {
  if (typeof prompt === 'string') return promptIds(tok, 'none', prompt);
  const bad = prompt.findIndex((id) => id >= vocabSize);
  if (bad >= 0) throw badField(COMPLETIONS_ENDPOINT, `prompt[${bad}]`, `token id ${prompt[bad]} is outside the vocabulary of ${vocabSize}`);
  return [...prompt];
}
