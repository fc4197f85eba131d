// sftkit's part templates (src/data/templates.ts) as Jinja chat templates, for `tokenizer.chat_template` of a
// GGUF export: a model fine-tuned with vicuna, alpaca, chatml or llama2 then gets prompts in llama.cpp as
// training built them (one BOS, each earlier round followed by EOS, the new round through the assistant
// marker). test/convert/gguf-export.test.ts renders them and compares the ids with chatPromptIds.
import { PART_TEMPLATES } from '../data/templates.ts';

const ALPACA_HEAD = 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n';

// Jinja's statement delimiters in template text would be read as code; none of these literals has them.
const SPLIT_SYSTEM =
  "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% set loop_messages = messages[1:] %}" +
  '{% else %}{% set system_message = none %}{% set loop_messages = messages %}{% endif %}';
const BOS = '{% if bos_token %}{{ bos_token }}{% endif %}';
const EOS = '{% if eos_token %}{{ eos_token }}{% endif %}';

/** The Jinja source for a part template, or null for names that have none (hf, none). */
export function partTemplateJinja(name: string, alpacaPrompts: boolean): string | null {
  const tpl = PART_TEMPLATES[name];
  if (tpl === undefined) return null;
  const user = alpacaPrompts ? `${ALPACA_HEAD}{{ m['content'] }}\n\n### Response:` : "{{ m['content'] }}";
  const defaultSystem = tpl.defaultSystem ?? '';
  const system = `{% if system_message is not none %}{{ system_message }}{% else %}${defaultSystem}{% endif %}`;
  const rounds = (userPart: string, assistantPart: string): string =>
    `{% for m in loop_messages %}{% if m['role'] == 'user' %}${userPart}{% elif m['role'] == 'assistant' %}${assistantPart}{% endif %}{% endfor %}`;
  switch (name) {
    case 'vicuna':
      return `${SPLIT_SYSTEM}${BOS}${system} ${rounds(`USER: ${user} ASSISTANT:`, ` {{ m['content'] }}${EOS}`)}`;
    case 'alpaca': {
      const sys = `{% if system_message is not none %}{% if system_message != '' %}{{ system_message }}\n\n{% endif %}{% else %}${defaultSystem}\n\n{% endif %}`;
      // The reply's leading newline is an expression: chat templates render with trim_blocks, which would drop
      // a newline right after the {% elif %} tag.
      return `${SPLIT_SYSTEM}${BOS}${sys}${rounds(`### Instruction:\n${user}\n\n### Response:`, `{{ '\\n' }}{{ m['content'] }}${EOS}`)}`;
    }
    case 'chatml': {
      const sys = '{% if system_message is not none %}<|im_start|>system\n{{ system_message }}<|im_end|>\n{% endif %}';
      // EOS follows the reply's <|im_end|> unless it is that very token.
      const eos = "{% if eos_token and eos_token != '<|im_end|>' %}{{ eos_token }}{% endif %}";
      return `${SPLIT_SYSTEM}${BOS}${sys}${rounds(`<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`, `{{ m['content'] }}<|im_end|>${eos}`)}`;
    }
    case 'llama2': {
      // Every round opens with BOS; the system prompt sits inside the first [INST].
      const sys = '{% if loop.first and system_message is not none %}<<SYS>>\n{{ system_message }}\n<</SYS>>\n\n{% endif %}';
      return `${SPLIT_SYSTEM}${rounds(`${BOS}[INST] ${sys}${user} [/INST]`, ` {{ m['content'] }} ${EOS}`)}`;
    }
    default:
      return null;
  }
}
