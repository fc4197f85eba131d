// Conversation inputs: the converted schema / ShareGPT (`conversations: [{from, value}]`) and OpenAI-style
// `messages: [{role, content}]`, validated into one shape: an optional system prompt and user/assistant rounds.
import { DataError } from '../errors.ts';
import type { SourcedRecord } from './json-input.ts';

export interface Round {
  user: string;
  assistant: string;
}

export interface Conversation {
  /** Where the sample came from (file:line or file[index]), for errors and reports. */
  where: string;
  /** The sample's own system prompt, or null to use the template's default. */
  system: string | null;
  rounds: Round[];
}

type Role = 'system' | 'user' | 'assistant';

// ShareGPT exports use several speaker names; each maps to one role. Anything else is an error.
const FROM_ROLES: Record<string, Role> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  chatgpt: 'assistant',
  bard: 'assistant',
  bing: 'assistant',
  model: 'assistant',
  system: 'system',
};
const MESSAGE_ROLES: Record<string, Role> = { system: 'system', user: 'user', assistant: 'assistant' };

function kind(v: unknown): string {
  return v === undefined ? 'missing' : v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** One sample, in any of the supported schemas, as a validated Conversation. */
export function parseConversation(rec: SourcedRecord): Conversation {
  const obj = rec.value;
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new DataError(`${rec.where}: expected an object with "conversations" or "messages"`, { where: rec.where });
  }
  const o = obj as Record<string, unknown>;
  const field = Array.isArray(o['conversations']) ? 'conversations' : Array.isArray(o['messages']) ? 'messages' : null;
  if (field === null) {
    throw new DataError(`${rec.where}: expected a "conversations" array ([{from, value}]) or a "messages" array ([{role, content}])`, {
      where: rec.where,
      hint: 'run `sftkit data alpaca` first for Stanford Alpaca {instruction, input, output} records',
    });
  }
  const [roleKey, textKey, roles] = field === 'conversations' ? (['from', 'value', FROM_ROLES] as const) : (['role', 'content', MESSAGE_ROLES] as const);
  const turns: Array<{ role: Role; text: string; at: string }> = [];
  if (o['system'] !== undefined) {
    if (typeof o['system'] !== 'string') throw new DataError(`${rec.where}: field "system" must be a string (${kind(o['system'])})`, { where: `${rec.where}.system` });
    turns.push({ role: 'system', text: o['system'], at: `${rec.where}.system` });
  }
  const list = o[field] as unknown[];
  list.forEach((m, i) => {
    const at = `${rec.where}.${field}[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new DataError(`${at}: expected an object with "${roleKey}" and "${textKey}"`, { where: at });
    const mm = m as Record<string, unknown>;
    const r = mm[roleKey];
    const text = mm[textKey];
    if (typeof r !== 'string') throw new DataError(`${at}.${roleKey}: must be a string (${kind(r)})`, { where: `${at}.${roleKey}` });
    const role = Object.hasOwn(roles, r) ? roles[r] : undefined;
    if (role === undefined) {
      throw new DataError(`${at}.${roleKey}: unknown role "${r}" (expected one of ${Object.keys(roles).join(', ')})`, { where: `${at}.${roleKey}` });
    }
    if (typeof text !== 'string') throw new DataError(`${at}.${textKey}: must be a string (${kind(text)})`, { where: `${at}.${textKey}` });
    turns.push({ role, text, at });
  });
  let system: string | null = null;
  const rounds: Round[] = [];
  let pendingUser: string | null = null;
  turns.forEach((t, i) => {
    if (t.role === 'system') {
      if (i !== 0) throw new DataError(`${t.at}: a system turn must come first`, { where: t.at });
      system = t.text;
      return;
    }
    const expected = pendingUser === null ? 'user' : 'assistant';
    if (t.role !== expected) {
      throw new DataError(`${t.at}: roles out of order: expected a ${expected} turn, got ${t.role}`, {
        where: t.at,
        hint: 'conversations alternate user, assistant, user, assistant, ... after an optional system turn',
      });
    }
    if (t.role === 'user') {
      pendingUser = t.text;
      return;
    }
    if (t.text.trim() === '') throw new DataError(`${t.at}: empty assistant reply`, { where: t.at, hint: 'remove the sample or give it a reply' });
    rounds.push({ user: pendingUser as unknown as string, assistant: t.text });
    pendingUser = null;
  });
  if (pendingUser !== null) {
    throw new DataError(`${rec.where}: the conversation ends with a user turn that has no assistant reply`, { where: rec.where });
  }
  if (rounds.length === 0) throw new DataError(`${rec.where}: the conversation has no user/assistant round`, { where: rec.where });
  return { where: rec.where, system, rounds };
}
