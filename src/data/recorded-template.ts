// The chat template a checkpoint was trained with, as recorded with its training data: a training checkpoint's
// trainer_state.json names the run config, whose train_dataset.dataset_dir holds the records manifest with
// the template (and whether the prompts were whole Alpaca prompts). Generation uses it by default.
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { alpacaPrompt } from './alpaca.ts';
import { RECORDS_MAGIC } from './records.ts';

export interface RecordedTemplate {
  /** A template name (vicuna, alpaca, chatml, llama2, hf) or 'none' for text data. */
  template: string;
  /** The samples' user messages were full Stanford Alpaca prompts: wrap prompts the same way. */
  alpacaPrompts: boolean;
  /** The records manifest it was read from. */
  manifest: string;
}

function readJson(path: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The template recorded for `modelDir`'s training data, or null when the directory is not a training
 * checkpoint or its records are gone. Best effort by design: a model without this history generates with
 * the configured template, so a missing or unreadable file is not an error here.
 */
export function recordedTemplate(modelDir: string, cwd: string = process.cwd()): RecordedTemplate | null {
  const state = readJson(join(modelDir, 'trainer_state.json'));
  const config = state?.['config'] as { train_dataset?: { dataset_dir?: unknown } } | undefined;
  const dataDir = config?.train_dataset?.dataset_dir;
  if (typeof dataDir !== 'string' || dataDir === '') return null;
  // Relative dataset paths were relative to where training ran; try there, then beside the run's output.
  const candidates = isAbsolute(dataDir) ? [dataDir] : [resolve(cwd, dataDir), resolve(modelDir, '..', '..', '..', dataDir)];
  for (const dir of candidates) {
    const path = join(dir, 'manifest.json');
    if (!existsSync(path)) continue;
    const m = readJson(path);
    if (m === null || m['magic'] !== RECORDS_MAGIC) continue;
    const template = typeof m['template'] === 'string' ? m['template'] : 'none';
    return { template, alpacaPrompts: m['prompt_format'] === 'alpaca', manifest: path };
  }
  return null;
}

/** The user message as the model saw it in training (wrapped in the Alpaca prompt when the data was). */
export function trainedUserMessage(message: string, recorded: Pick<RecordedTemplate, 'alpacaPrompts'> | null): string {
  return recorded?.alpacaPrompts === true ? alpacaPrompt(message, '') : message;
}

/** The template generation uses and why. */
export interface GenerationTemplate {
  template: string;
  alpacaPrompts: boolean;
  source: 'config' | 'recorded' | 'default';
  /** The records manifest, when recorded. */
  manifest?: string;
}

/** The template for generation: the configured one, else the one recorded with the training data, else vicuna. */
export function generationTemplate(configured: string | undefined, modelDir: string | null): GenerationTemplate {
  const recorded = modelDir === null ? null : recordedTemplate(modelDir);
  if (configured !== undefined) {
    // The alpaca wrapping belongs to the data: it still applies when the configured template is the recorded one.
    return { template: configured, alpacaPrompts: recorded?.template === configured && recorded.alpacaPrompts, source: 'config' };
  }
  if (recorded !== null) return { template: recorded.template, alpacaPrompts: recorded.alpacaPrompts, source: 'recorded', manifest: recorded.manifest };
  return { template: 'vicuna', alpacaPrompts: false, source: 'default' };
}
