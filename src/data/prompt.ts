// Generation prompts that match training: BOS and the template's first-round prefix (through the assistant
// marker), so the model continues exactly where its trained replies began.
import type { Tokenizer } from '../tokenizer/index.ts';
import { HfTemplateEncoder } from './hf-template.ts';
import { encodeParts } from './qa-tokenize.ts';
import { PART_TEMPLATES, checkTemplateName } from './templates.ts';

/** Token ids of a one-turn prompt for `message` under `template` ('none': the raw text after BOS). */
export function promptIds(tok: Tokenizer, template: string, message: string, system: string | null = null): number[] {
  if (template === 'none') return tok.encode(message, { addBos: true, addEos: false });
  const name = checkTemplateName(template);
  if (name === 'hf') return new HfTemplateEncoder(tok).promptIds(system, message);
  const tpl = PART_TEMPLATES[name];
  if (!tpl) return tok.encode(message, { addBos: true, addEos: false });
  const [round] = tpl.rounds({ where: 'prompt', system, rounds: [{ user: message, assistant: '' }] });
  const ids = tok.bosId !== null ? [tok.bosId] : [];
  return ids.concat(encodeParts(tok, round?.prefix ?? []));
}
