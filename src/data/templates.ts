// Chat templates as data: each turns a conversation into rounds, each round split into the prompt part
// (masked) and the reply part (trained). `hf` (the model's own Jinja chat_template) lives in hf-template.ts.
import { ConfigError } from '../errors.ts';
import type { Conversation } from './conversation.ts';

/** Text, a special token written by the template (an id when the tokenizer has it, else its text), or BOS. */
export type Part = { text: string } | { marker: string } | { bos: true };

export interface TemplateRound {
  /** Everything up to and including the assistant marker: masked in labels. */
  prefix: Part[];
  /** The reply (and the template's end-of-turn marker, if any): trained, and followed by EOS. */
  reply: Part[];
}

export interface PartTemplate {
  name: string;
  /** The system prompt used when a sample has none (null: no system text). */
  defaultSystem: string | null;
  rounds(conv: Conversation): TemplateRound[];
}

/** FastChat's vicuna_v1.1 system prompt, MindFormers' default. */
export const VICUNA_SYSTEM =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";
const ALPACA_SYSTEM = 'Below is an instruction that describes a task. Write a response that appropriately completes the request.';

const t = (text: string): Part => ({ text });
const m = (marker: string): Part => ({ marker });

// MindFormers' conversation text is `system + " USER: " + msg + " ASSISTANT: " + reply + "</s>" + "USER: " ...`;
// splitting at each "</s>" gives exactly these rounds (the "</s>" becomes the EOS id).
const vicuna: PartTemplate = {
  name: 'vicuna',
  defaultSystem: VICUNA_SYSTEM,
  rounds(conv) {
    const system = conv.system ?? VICUNA_SYSTEM;
    return conv.rounds.map((r, i) => ({
      prefix: [t((i === 0 ? `${system} ` : '') + 'USER: ' + r.user + ' ASSISTANT:')],
      reply: [t(' ' + r.assistant)],
    }));
  },
};

const alpaca: PartTemplate = {
  name: 'alpaca',
  defaultSystem: ALPACA_SYSTEM,
  rounds(conv) {
    const system = conv.system ?? ALPACA_SYSTEM;
    return conv.rounds.map((r, i) => ({
      prefix: [t((i === 0 && system !== '' ? `${system}\n\n` : '') + '### Instruction:\n' + r.user + '\n\n### Response:')],
      reply: [t('\n' + r.assistant)],
    }));
  },
};

const chatml: PartTemplate = {
  name: 'chatml',
  defaultSystem: null,
  rounds(conv) {
    return conv.rounds.map((r, i) => {
      const sys: Part[] = i === 0 && conv.system !== null ? [m('<|im_start|>'), t('system\n' + conv.system), m('<|im_end|>'), t('\n')] : [];
      return {
        prefix: [...sys, m('<|im_start|>'), t('user\n' + r.user), m('<|im_end|>'), t('\n'), m('<|im_start|>'), t('assistant\n')],
        reply: [t(r.assistant), m('<|im_end|>')],
      };
    });
  },
};

// Meta's Llama-2 chat format: every round opens with BOS and `[INST]`, the system prompt sits inside the
// first one, and each reply is followed by a space and EOS.
const llama2: PartTemplate = {
  name: 'llama2',
  defaultSystem: null,
  rounds(conv) {
    return conv.rounds.map((r, i) => {
      const sys = i === 0 && conv.system !== null ? `<<SYS>>\n${conv.system}\n<</SYS>>\n\n` : '';
      return {
        prefix: [...(i === 0 ? [] : [{ bos: true } as const]), t('[INST] ' + sys + r.user + ' [/INST]')],
        reply: [t(' ' + r.assistant + ' ')],
      };
    });
  },
};

export const PART_TEMPLATES: Record<string, PartTemplate> = { vicuna, alpaca, chatml, llama2 };
export const TEMPLATE_NAMES = ['vicuna', 'alpaca', 'chatml', 'llama2', 'hf'] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];

export function checkTemplateName(name: string): TemplateName {
  if (!(TEMPLATE_NAMES as readonly string[]).includes(name)) {
    throw new ConfigError(`unknown template "${name}" (expected one of ${TEMPLATE_NAMES.join(', ')})`, { where: '--template' });
  }
  return name as TemplateName;
}
