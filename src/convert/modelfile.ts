// The ollama Modelfile written beside an exported GGUF: FROM the file, the stop token, and, when the model
// was trained with one of sftkit's part templates, that template in ollama's Go-template syntax (otherwise
// ollama reads the GGUF's own tokenizer.chat_template).
import { PART_TEMPLATES } from '../data/templates.ts';

export interface ModelfileOptions {
  /** File name of the GGUF, relative to the Modelfile. */
  ggufFile: string;
  eosText: string | null;
  /** The training template (vicuna, alpaca, chatml, llama2, hf, none), or null when unknown. */
  template: string | null;
  /** Training prompts were whole Stanford Alpaca prompts. */
  alpacaPrompts: boolean;
}

const ALPACA_HEAD = 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n';

/** Ollama templates equivalent to sftkit's part templates (src/data/templates.ts), by name. */
function goTemplate(name: string, prompt: string): string | null {
  switch (name) {
    case 'vicuna':
      return `{{ if .System }}{{ .System }} {{ end }}{{ if .Prompt }}USER: ${prompt} {{ end }}ASSISTANT: {{ .Response }}`;
    case 'alpaca':
      return `{{ if .System }}{{ .System }}\n\n{{ end }}### Instruction:\n${prompt}\n\n### Response:\n{{ .Response }}`;
    case 'chatml':
      return `{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n${prompt}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n`;
    case 'llama2':
      return `[INST] {{ if .System }}<<SYS>>\n{{ .System }}\n<</SYS>>\n\n{{ end }}${prompt} [/INST] {{ .Response }}`;
    case 'none':
      return prompt;
    default:
      return null;
  }
}

export function modelfileText(o: ModelfileOptions): string {
  const lines = [`# ollama Modelfile written by sftkit: ollama create <name> -f ${'Modelfile'}`, `FROM ./${o.ggufFile}`];
  // Alpaca-converted data wrapped each instruction in the full Alpaca prompt inside the template's user turn.
  const prompt = o.alpacaPrompts ? `${ALPACA_HEAD}{{ .Prompt }}\n\n### Response:` : '{{ .Prompt }}';
  const tpl = o.template === null ? null : goTemplate(o.template, prompt);
  if (tpl !== null) {
    lines.push(`TEMPLATE """${tpl}"""`);
    const system = PART_TEMPLATES[o.template as string]?.defaultSystem ?? null;
    if (system !== null) lines.push(`SYSTEM """${system}"""`);
  } else {
    lines.push('# no TEMPLATE: ollama uses the chat template stored in the GGUF (tokenizer.chat_template)');
  }
  if (o.eosText !== null) lines.push(`PARAMETER stop ${JSON.stringify(o.eosText)}`);
  if (o.template === 'chatml') lines.push('PARAMETER stop "<|im_end|>"');
  return `${lines.join('\n')}\n`;
}
