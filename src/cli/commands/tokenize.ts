// `sftkit tokenize`: one JSON array of token ids (or pieces) per input line, like `spm_encode --output_format=id`.
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { ConfigError } from '../../errors.ts';
import { resolveModelDir } from '../../hub/index.ts';
import { Tokenizer } from '../../tokenizer/index.ts';

interface TokenizeFlags {
  model_file?: string;
  tokenizer?: string;
  input?: string;
  pieces?: boolean;
  add_bos?: boolean;
  add_eos?: boolean;
}

/** Yields the lines of `stream` as raw bytes, split on "\n" only (a "\r" stays in the line, as spm_encode keeps it). */
async function* lines(stream: Readable): AsyncGenerator<Uint8Array> {
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of stream) {
    const buf: Buffer = carry.length > 0 ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
    let from = 0;
    for (let nl = buf.indexOf(10, from); nl >= 0; nl = buf.indexOf(10, from)) {
      yield buf.subarray(from, nl);
      from = nl + 1;
    }
    carry = buf.subarray(from);
  }
  if (carry.length > 0) yield carry;
}

async function tokenize(flags: TokenizeFlags): Promise<void> {
  if ((flags.model_file === undefined) === (flags.tokenizer === undefined)) {
    throw new ConfigError('tokenize: give exactly one of --model_file PATH (a SentencePiece tokenizer.model) or --tokenizer DIR', {
      where: 'tokenize',
    });
  }
  // --tokenizer takes a folder or a hub repo id (resolved through the cache, downloaded when missing).
  const tok = flags.model_file !== undefined ? Tokenizer.fromModelFile(flags.model_file) : Tokenizer.fromDir((await resolveModelDir(flags.tokenizer!)).path);
  const input = flags.input !== undefined ? createReadStream(flags.input) : process.stdin;
  const options = { addBos: flags.add_bos === true, addEos: flags.add_eos === true };
  let out: string[] = [];
  const flush = async (): Promise<void> => {
    if (out.length === 0) return;
    const text = out.join('');
    out = [];
    if (!process.stdout.write(text)) await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
  };
  try {
    for await (const line of lines(input)) {
      // User text is never parsed for special tokens: "<s>" in a line is three characters.
      const ids = tok.encode(line, options);
      const row = flags.pieces === true ? ids.map((id) => tok.idToPiece(id)) : ids;
      out.push(JSON.stringify(row), '\n');
      if (out.length >= 2048) await flush();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ConfigError(`tokenize: cannot read --input ${flags.input}`, { where: flags.input });
    throw err;
  }
  await flush();
}

export function registerTokenize(program: Command): void {
  program
    .command('tokenize')
    .description('print the token ids of each input line as a JSON array (text such as <s> is ordinary text)')
    .option('--model_file <path>', 'a SentencePiece tokenizer.model (with the tokenizer_config.json beside it, if any)')
    .option('--tokenizer <dir>', 'a model folder (or hub repo id) with tokenizer.json or tokenizer.model (and tokenizer_config.json)')
    .option('--input <file>', 'read lines from this file instead of stdin')
    .option('--pieces', 'print pieces instead of ids')
    .option('--add_bos', 'prepend the BOS id to each line')
    .option('--add_eos', 'append the EOS id to each line')
    .action(async (flags: TokenizeFlags) => tokenize(flags));
}
