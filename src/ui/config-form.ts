// The New-run form's server side: the form is drawn from the one run-config schema (its JSON Schema, with
// defaults and bounds), the submitted values are validated by that same schema, shown back as the YAML and the
// equivalent `sftkit run` command, and started as `sftkit run --config <file>`: argv built here from fixed
// parts, never a shell string, and no part of the request names what runs.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { writeFileAtomicSync } from '../formats/write-file.ts';
import { type RunConfig, configKeys, parseRunConfig, runConfigSchema } from '../train/config.ts';
import { HttpError } from './http.ts';
import type { UiRoot } from './root-paths.ts';
import { UI_LOG_FILE, UI_RUN_FILE } from './runs.ts';

/** The config file a started run is given, in its output folder. */
export const UI_CONFIG_FILE = 'sftkit-ui-config.yaml';
/** Keys that name files or folders: resolved inside the root, like every path of the API. */
const PATH_KEYS = ['load_checkpoint', 'tokenizer', 'model.arch', 'train_dataset.dataset_dir', 'eval_dataset.dataset_dir'];
/** The form sets output_dir from the run name; predict needs a prompt file the form does not take. */
const FORM_MODES = ['train', 'finetune', 'eval'];
const RUN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(\/[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}){0,2}$/;

/** The schema the page builds its form from (JSON Schema of the config's input side: defaults, enums, bounds). */
export function configFormSchema(): unknown {
  return z.toJSONSchema(runConfigSchema, { io: 'input' });
}

function getKey(obj: unknown, key: string): unknown {
  let node = obj;
  for (const p of key.split('.')) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[p];
  }
  return node;
}

function setKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = obj;
  for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
  node[parts[parts.length - 1] as string] = value;
}

export interface RunPlan {
  /** The run's folder relative to the root (its output_dir). */
  name: string;
  config: RunConfig;
  /** The config file's text: the keys that differ from the defaults. */
  yaml: string;
  /** The equivalent command lines, for the page (relative paths are relative to the root). */
  command: string;
  overridesCommand: string;
}

function shellWord(v: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

/** Validates the form's values against the schema and the root; throws a 400 naming the field. */
export function planRun(root: UiRoot, body: unknown): RunPlan {
  if (typeof body !== 'object' || body === null) throw new HttpError(400, 'expected {"name": ..., "config": {...}}');
  const { name, config } = body as { name?: unknown; config?: unknown };
  if (typeof name !== 'string' || !RUN_NAME.test(name)) {
    throw new HttpError(400, `run name ${JSON.stringify(name)}: use letters, digits, '_', '.', '-' (up to 3 folders deep), it becomes the run's folder under the root`, 'name');
  }
  const raw = structuredClone((config ?? {}) as Record<string, unknown>);
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new HttpError(400, 'config must be an object', 'config');
  raw['output_dir'] = name;
  let cfg: RunConfig;
  try {
    cfg = parseRunConfig(raw, 'form');
  } catch (err) {
    if (err instanceof ConfigError) throw new HttpError(400, err.message, err.where?.replace(/^form: /, ''));
    throw err;
  }
  if (!FORM_MODES.includes(cfg.run_mode)) throw new HttpError(400, `run_mode ${cfg.run_mode}: the form starts ${FORM_MODES.join(', ')} runs`, 'run_mode');
  for (const key of PATH_KEYS) {
    const value = getKey(cfg, key);
    if (typeof value !== 'string' || value === '') continue;
    const candidates = key === 'model.arch' && !value.includes('/') && !value.endsWith('.json') ? [`configs/tiny/${value}.json`] : [value];
    let ok: unknown = null;
    for (const c of candidates) {
      try {
        root.resolve(c);
        ok = true;
        break;
      } catch (err) {
        ok = err;
      }
    }
    if (ok !== true) {
      const e = ok as HttpError;
      throw new HttpError(e.status ?? 400, `${key}: ${e.message}`, key);
    }
  }
  // The file holds what differs from the defaults, so it reads like the configs under configs/.
  const defaults = parseRunConfig({}, 'defaults');
  const minimal: Record<string, unknown> = {};
  const words: string[] = [];
  for (const key of configKeys()) {
    const v = getKey(cfg, key);
    if (v === undefined || JSON.stringify(v) === JSON.stringify(getKey(defaults, key))) continue;
    setKey(minimal, key, v);
    words.push(`--${key}`, shellWord(typeof v === 'string' ? v : JSON.stringify(v)));
  }
  return {
    name,
    config: cfg,
    yaml: toYaml(minimal),
    command: `sftkit run --config ${shellWord(`${name}/${UI_CONFIG_FILE}`)}`,
    overridesCommand: ['sftkit', 'run', ...words].join(' '),
  };
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

export interface StartedRun {
  name: string;
  pid: number | undefined;
  status: 'running' | 'exited';
  exitCode: number | null;
  signal: string | null;
}

/** Runs the dashboard started, while it runs: their status, and a stop on request or at shutdown. */
export class RunLauncher {
  private readonly children = new Map<string, { child: ChildProcess; info: StartedRun }>();

  constructor(
    private readonly root: UiRoot,
    /** bin/sftkit.js of this package: the only program the dashboard starts. */
    private readonly bin: string,
  ) {}

  start(plan: RunPlan): StartedRun {
    const existing = this.children.get(plan.name);
    if (existing?.info.status === 'running') throw new HttpError(409, `run ${plan.name} is already running`, 'name');
    const dir = join(this.root.path, ...plan.name.split('/'));
    if (existsSync(join(dir, 'metrics.jsonl'))) {
      throw new HttpError(409, `${plan.name} already holds a run (metrics.jsonl); choose another name`, 'name');
    }
    // Every part of the name that exists already must stay inside the root (a link among them would make
    // mkdir create folders elsewhere).
    const parts = plan.name.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (existsSync(join(this.root.path, prefix)) || isLink(join(this.root.path, prefix))) this.root.resolve(prefix);
    }
    mkdirSync(dir, { recursive: true });
    // Created by us just now or already a folder under the root; re-check that no link leads it out.
    this.root.resolve(plan.name);
    const configPath = join(dir, UI_CONFIG_FILE);
    writeFileAtomicSync(configPath, plan.yaml);
    const argv = [this.bin, 'run', '--config', configPath];
    const log = openSync(join(dir, UI_LOG_FILE), 'a');
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, argv, { cwd: this.root.path, stdio: ['ignore', log, log], env: process.env });
    } finally {
      closeSync(log);
    }
    const info: StartedRun = { name: plan.name, pid: child.pid, status: 'running', exitCode: null, signal: null };
    child.on('exit', (code, signal) => {
      info.status = 'exited';
      info.exitCode = code;
      info.signal = signal;
    });
    child.on('error', () => {
      info.status = 'exited';
    });
    writeFileAtomicSync(join(dir, UI_RUN_FILE), `${JSON.stringify({ argv: ['sftkit', 'run', '--config', `${plan.name}/${UI_CONFIG_FILE}`], started: new Date().toISOString(), pid: child.pid }, null, 2)}\n`);
    this.children.set(plan.name, { child, info });
    return info;
  }

  status(name: string): StartedRun | null {
    return this.children.get(name)?.info ?? null;
  }

  all(): StartedRun[] {
    return [...this.children.values()].map((c) => c.info);
  }

  /** Asks a run this dashboard started to stop (SIGINT: it finishes the step and saves a checkpoint). */
  stop(name: string): boolean {
    const c = this.children.get(name);
    if (!c || c.info.status !== 'running') return false;
    c.child.kill('SIGINT');
    return true;
  }

  /** At shutdown: every child still running is asked to stop, and waited for (up to `ms`). */
  async stopAll(ms = 10_000): Promise<void> {
    const running = [...this.children.values()].filter((c) => c.info.status === 'running');
    await Promise.all(
      running.map(
        (c) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              c.child.kill('SIGKILL');
              resolve();
            }, ms);
            c.child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            c.child.kill('SIGINT');
          }),
      ),
    );
  }
}
