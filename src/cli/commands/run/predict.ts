// `sftkit run --run_mode predict`: generates a reply to each prompt of --predict_data (a prompt, or a file of
// one prompt per line) in the template of the training data, into output_dir/predict_results.jsonl.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promptIds } from '../../../data/prompt.ts';
import { generationTemplate, trainedUserMessage } from '../../../data/recorded-template.ts';
import { ConfigError } from '../../../errors.ts';
import { writeFileAtomicSync } from '../../../formats/write-file.ts';
import { defaultEosIds, generate, generationText } from '../../../generate/index.ts';
import { autocast } from '../../../tensor/index.ts';
import type { RunContext } from './context.ts';

function readPrompts(data: string | undefined): string[] {
  if (!data) throw new ConfigError('run_mode predict needs --predict_data (a prompt, or a file with one prompt per line)', { where: '--predict_data' });
  return existsSync(data) && statSync(data).isFile() ? readFileSync(data, 'utf8').split('\n').filter((l) => l.trim() !== '') : [data];
}

export async function runPredict(ctx: RunContext): Promise<void> {
  const { cfg, model } = ctx;
  const prompts = readPrompts(ctx.flags.predict_data);
  const tok = ctx.needTokenizer('predict');
  ctx.output.ensure();

  // The template recorded with the training data unless one is configured (and its Alpaca wrapping).
  const tpl = generationTemplate(cfg.generation.template, ctx.modelDir);
  if (tpl.source !== 'config') {
    ctx.out.line(`template: ${tpl.template}${tpl.alpacaPrompts ? ' with Alpaca prompts' : ''} (${tpl.source === 'recorded' ? `recorded with the training data, ${tpl.manifest}` : 'default'})`);
  }
  const ids = prompts.map((p) => promptIds(tok, tpl.template, trainedUserMessage(p, tpl)));
  const eos = defaultEosIds(model, tok);
  const gens = autocast(cfg.model.dtype, () => generate(model, ids, { ...ctx.generationOptions(), eosTokenIds: eos, padTokenId: tok.padId ?? eos[0] ?? 0 }));

  const lines = gens.map((g, i) => ({ prompt: prompts[i] as string, output: generationText(tok, g) }));
  if (ctx.pg.rank === 0) {
    writeFileAtomicSync(join(cfg.output_dir, 'predict_results.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    for (const l of lines) console.log(`${l.prompt}\n=> ${l.output}\n`);
  }
}
