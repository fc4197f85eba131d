// `sftkit chat`: an interactive terminal chat with a checkpoint, HF folder or hub repo id, in the model's own
// template (the one recorded with its training data unless --template says otherwise), streaming each reply
// as it is generated, with multi-turn history, /reset and /exit. Reads one message per line from stdin when
// it is not a terminal, so it can be scripted and tested. A LoRA run's checkpoint chats as its base with its adapter.
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { chatPromptIds, type ChatTurn } from '../../data/chat-prompt.ts';
import { generationTemplate } from '../../data/recorded-template.ts';
import { COMPUTE_DTYPES, type ComputeDtype } from '../../dtype.ts';
import { ConfigError } from '../../errors.ts';
import { defaultEosIds, generateStream } from '../../generate/index.ts';
import { Tokenizer } from '../../tokenizer/index.ts';
import { autocast } from '../../tensor/index.ts';
import { hasTokenizerFiles } from '../../formats/checkpoint-dir.ts';
import { BASE_MODEL_FLAG_HINT, loadModelFolder, modelFolderOf } from '../../train/lora-io.ts';
import { modelDirOf } from './run/context.ts';
import { ckptConfigDir, isMindSporeCkpt, loadMindSporeModel } from '../../convert/mindspore-convert.ts';

interface ChatFlags {
  load_checkpoint: string;
  base_model?: string;
  tokenizer?: string;
  template?: string;
  system?: string;
  max_new_tokens: string;
  do_sample?: boolean;
  top_k?: string;
  top_p?: string;
  temperature?: string;
  repetition_penalty?: string;
  seed: string;
  dtype: string;
}

const HELP = 'commands: /reset (forget the conversation), /exit (or Ctrl-D)';

function numberFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new ConfigError(`${flag} ${JSON.stringify(value)} is not a number`, { where: flag });
  return n;
}

/**
 * Prints decoded text as tokens arrive. Each step decodes the whole reply so far and prints what is new,
 * holding back a trailing U+FFFD: a character split across byte tokens is printed once it is complete.
 */
class ReplyPrinter {
  private ids: number[] = [];
  private printed = '';
  constructor(
    private readonly tok: Tokenizer,
    private readonly eos: ReadonlySet<number>,
    private readonly write: (s: string) => void,
  ) {}
  add(id: number): void {
    if (this.eos.has(id)) return;
    this.ids.push(id);
    const text = this.tok.decode(this.ids, { skipSpecial: true });
    if (text.endsWith('\uFFFD')) return;
    this.write(text.slice(this.printed.length));
    this.printed = text;
  }
  /** The whole reply (what the history keeps). */
  finish(): string {
    const text = this.tok.decode(this.ids, { skipSpecial: true });
    this.write(text.slice(this.printed.length));
    return text;
  }
}

async function chat(flags: ChatFlags): Promise<void> {
  // A MindFormers .ckpt holds weights only: config.json and the tokenizer come from its folder.
  const ckpt = isMindSporeCkpt(flags.load_checkpoint) ? flags.load_checkpoint : null;
  const dir = ckpt !== null ? ckptConfigDir(ckpt) : await modelDirOf(flags.load_checkpoint);
  if (ckpt !== null && flags.base_model !== undefined) {
    throw new ConfigError(`--base_model ${flags.base_model}: ${ckpt} is a MindFormers .ckpt, not a LoRA checkpoint`, { where: '--base_model', hint: 'drop --base_model' });
  }
  // A LoRA run's checkpoint chats as its recorded base (or --base_model) with its adapter, as predict loads it.
  const folder = ckpt !== null ? null : modelFolderOf(dir, BASE_MODEL_FLAG_HINT, flags.base_model ?? null);
  const tokDir = flags.tokenizer ?? folder?.tokenizerDir ?? dir;
  if (!hasTokenizerFiles(tokDir)) {
    throw new ConfigError(`${tokDir} has no tokenizer.model or tokenizer.json`, { where: '--tokenizer', hint: 'pass --tokenizer DIR' });
  }
  if (!(COMPUTE_DTYPES as readonly string[]).includes(flags.dtype)) throw new ConfigError(`--dtype ${flags.dtype}: ${COMPUTE_DTYPES.join(' or ')}`, { where: '--dtype' });
  const tok = Tokenizer.fromDir(tokDir);
  const model = folder === null ? loadMindSporeModel(flags.load_checkpoint, dir) : loadModelFolder(folder);
  const tty = process.stdin.isTTY === true;
  const out = (s: string): void => void process.stdout.write(s);
  try {
    const tpl = generationTemplate(flags.template, dir);
    const system = flags.system ?? null;
    const eosIds = defaultEosIds(model, tok);
    const opts = {
      maxNewTokens: numberFlag(flags.max_new_tokens, '--max_new_tokens')!,
      doSample: flags.do_sample === true,
      topK: numberFlag(flags.top_k, '--top_k'),
      topP: numberFlag(flags.top_p, '--top_p'),
      temperature: numberFlag(flags.temperature, '--temperature'),
      repetitionPenalty: numberFlag(flags.repetition_penalty, '--repetition_penalty'),
      eosTokenIds: eosIds,
    };
    const seed = numberFlag(flags.seed, '--seed')!;
    const source = tpl.source === 'recorded' ? `recorded with the training data (${tpl.manifest})` : tpl.source === 'config' ? '--template' : 'default';
    const from = folder !== null && folder.adapterDir !== null ? `${dir} (LoRA adapter over ${folder.weightsDir})` : dir;
    process.stderr.write(`chat with ${model.config.modelType} from ${from}; template ${tpl.template}${tpl.alpacaPrompts ? ' with Alpaca prompts' : ''} (${source}); ${HELP}\n`);
    const history: ChatTurn[] = [];
    const rl = createInterface({ input: process.stdin, terminal: tty, ...(tty ? { prompt: 'you> ' } : {}) });
    if (tty) rl.prompt();
    for await (const line of rl) {
      const message = line.trim();
      if (message === '/exit' || message === '/quit') break;
      if (message === '/reset') {
        history.length = 0;
        process.stderr.write('(conversation reset)\n');
      } else if (message.startsWith('/')) {
        process.stderr.write(`unknown command ${message}; ${HELP}\n`);
      } else if (message !== '') {
        const ids = chatPromptIds(tok, history, message, { template: tpl.template, system, alpacaPrompts: tpl.alpacaPrompts });
        if (tty) out('assistant> ');
        const printer = new ReplyPrinter(tok, new Set(eosIds), out);
        // Each turn draws from the same seed, so a conversation replays exactly.
        autocast(flags.dtype as ComputeDtype, () => generateStream(model, ids, { ...opts, seed }, (id) => printer.add(id)));
        history.push({ user: message, assistant: printer.finish() });
        out('\n');
      }
      if (tty) rl.prompt();
    }
    rl.close();
  } finally {
    model.release();
  }
}

export function registerChat(program: Command): void {
  program
    .command('chat')
    .description('chat with a model in the terminal (reads one message per line from stdin when it is not a terminal)')
    .requiredOption('--load_checkpoint <path>', 'model checkpoint, training checkpoint (a LoRA run\'s too: its base with its adapter), checkpoint/ root, HF folder, hub repo id, or a MindFormers .ckpt with config.json beside it')
    .option('--base_model <dir>', "with a LoRA run's checkpoint (or a PEFT adapter folder): the local folder of its base model, instead of the one it records")
    .option('--tokenizer <dir>', 'tokenizer folder (default: the checkpoint\'s)')
    .option('--template <name>', 'vicuna | alpaca | chatml | llama2 | hf | none (default: the one recorded with the training data, else vicuna)')
    .option('--system <text>', 'system prompt (default: the template\'s)')
    .option('--max_new_tokens <n>', 'most tokens per reply', '256')
    .option('--do_sample', 'sample instead of greedy decoding')
    .option('--top_k <k>', 'top-k sampling')
    .option('--top_p <p>', 'nucleus sampling')
    .option('--temperature <t>', 'sampling temperature')
    .option('--repetition_penalty <r>', 'HF repetition penalty')
    .option('--seed <n>', 'seed of sampling', '0')
    .option('--dtype <dtype>', `compute dtype: ${COMPUTE_DTYPES.join(' | ')}`, 'float32')
    .action(async (flags: ChatFlags) => {
      await chat(flags);
    });
}
