// LoRA (Hu et al. 2021) as PEFT defines it: a targeted linear with weight W gets two trainable matrices,
// A (r, in) and B (out, r), and computes y = base(x) + s·dropout(x)·Aᵀ·Bᵀ with s = alpha/r (alpha/√r with
// rsLoRA). A starts Kaiming-uniform (a = √5, i.e. U(±1/√in)), B at zero, so the adapted model starts equal to
// the base. The base weights are frozen (no gradient, no optimizer state); the adapters are the only trainable
// weights. Adapter weights are named `<module>.lora_A.weight` / `<module>.lora_B.weight` inside sftkit and
// `base_model.model.<module>.lora_A.weight` in PEFT's files (peftKey). Targets are matched as PEFT matches
// them: a list of names matches a module whose name is one of them or ends with `.<name>`; a single string is
// a regular expression the whole module name must match; 'all-linear' (as PEFT) selects every linear but the
// output head (sftkit never adapts embeddings or lm_head). A module's rank and alpha may differ from the
// adapter's by PEFT's rank_pattern / alpha_pattern (adapters PEFT wrote).
import { ConfigError } from '../errors.ts';
import type { Rng } from '../tensor/index.ts';
import type { LoraOptions, LoraModule, LoraState } from './lora-state.ts';
import type { ParameterSet } from './parameters.ts';

export type { LoraOptions, LoraModule, LoraState } from './lora-state.ts';

/** Base weights sftkit can adapt are those of its linears: every 2-D `.weight` but the embeddings. */
const NOT_LINEAR = /(^|\.)(embed_tokens|wte|wpe|lm_head)$/;

export const loraA = (module: string): string => `${module}.lora_A.weight`;
export const loraB = (module: string): string => `${module}.lora_B.weight`;
export const PEFT_PREFIX = 'base_model.model.';
/** PEFT's key of an adapter weight (`base_model.model.<module>.lora_A.weight`). */
export const peftKey = (name: string): string => `${PEFT_PREFIX}${name}`;

export function loraScale(o: Pick<LoraOptions, 'alpha' | 'rank' | 'use_rslora'>): number {
  return o.use_rslora ? o.alpha / Math.sqrt(o.rank) : o.alpha / o.rank;
}

/**
 * The value of PEFT's rank_pattern or alpha_pattern for `module`: that of the first key (a regular expression)
 * matching the whole name or its end after a dot, as PEFT's get_pattern_key; undefined when none does.
 */
export function patternValue(pattern: Record<string, number> | undefined, module: string, where: string): number | undefined {
  if (!pattern) return undefined;
  for (const [key, value] of Object.entries(pattern)) {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:.*\\.)?(?:${key})$`);
    } catch (err) {
      throw new ConfigError(`${where}: invalid regex ${JSON.stringify(key)} (${(err as Error).message})`, { where });
    }
    if (re.test(module)) return value;
  }
  return undefined;
}

/** PEFT's selection beyond target_modules (adapters PEFT wrote): modules left out, and the layers adapted. */
export interface TargetFilter {
  /** Names (PEFT's suffix match) or one regular expression (full match) of modules never adapted. */
  exclude_modules?: string[] | string;
  /** With a list of target names: only the modules in these layers (by the first numbered segment of the name). */
  layers_to_transform?: number[] | number;
  /** The name of the layer list whose index counts (`layers`, `h`); default: the first `<name>.<index>.` segment. */
  layers_pattern?: string[] | string;
  /**
   * true (a run's own lora.target_modules): every name of a target list must match a linear, to catch typos.
   * false (an adapter PEFT wrote): as PEFT, names that match nothing are let be, so long as something matches.
   */
  everyName?: boolean;
}

function compile(pattern: string, where: string): RegExp {
  try {
    return new RegExp(pattern);
  } catch (err) {
    throw new ConfigError(`${where}: invalid regex ${JSON.stringify(pattern)} (${(err as Error).message})`, { where });
  }
}

/** Whether a list of names selects `m` as PEFT's list matching does: the whole name, or its end after a dot. */
const namedIn = (names: readonly string[], m: string): boolean => names.some((t) => m === t || m.endsWith(`.${t}`));

/**
 * The layer index PEFT reads from a module name for layers_to_transform: the first `<segment>.<digits>.` (with
 * layers_pattern, the first `<pattern>.<digits>.`); null when there is none.
 */
function layerIndexOf(m: string, pattern: string[] | string | undefined, where: string): number | null {
  const patterns = pattern === undefined || pattern.length === 0 ? null : typeof pattern === 'string' ? [pattern] : pattern;
  if (patterns === null) {
    const hit = /^.*?\.[^.]*\.(\d+)\./.exec(m);
    return hit ? Number(hit[1]) : null;
  }
  for (const p of patterns) {
    const hit = compile(`^(?:|.*?\\.)${p}\\.(\\d+)\\.`, where).exec(m);
    if (hit) return Number(hit[1]);
  }
  return null;
}

/**
 * The modules `target_modules` selects among a model's linears (PEFT's matching, with `filter`'s exclusions and
 * layers), refused when it selects none, or (filter.everyName, the default) when a listed name matches nothing.
 */
export function matchTargets(linearModules: readonly string[], targets: string[] | string, where = 'lora.target_modules', filter: TargetFilter = {}): string[] {
  let test: (m: string) => boolean;
  // PEFT expands 'all-linear' to the list of the linears' names, so layers_to_transform applies to it as to a list.
  const listed = targets === 'all-linear' || typeof targets !== 'string';
  if (targets === 'all-linear') {
    test = () => true;
  } else if (typeof targets === 'string') {
    const re = compile(`^(?:${targets})$`, where);
    test = (m) => re.test(m);
  } else {
    if (targets.length === 0) throw new ConfigError(`${where} is empty`, { where, hint: 'name modules, e.g. [q_proj, v_proj]' });
    for (const t of filter.everyName === false ? [] : targets) {
      if (!linearModules.some((m) => namedIn([t], m))) {
        throw new ConfigError(`${where}: ${JSON.stringify(t)} matches no linear module of this model`, {
          where,
          hint: `its linears end in ${[...new Set(linearModules.map((m) => m.split('.').pop()))].join(', ')}`,
        });
      }
    }
    test = (m) => namedIn(targets, m);
  }
  const { exclude_modules: exclude, layers_to_transform: layers } = filter;
  if (exclude !== undefined && exclude.length > 0) {
    const excludeWhere = where.replace(/target_modules$/, 'exclude_modules');
    const excluded = typeof exclude === 'string' ? ((re) => (m: string) => re.test(m))(compile(`^(?:${exclude})$`, excludeWhere)) : (m: string) => namedIn(exclude, m);
    const inner = test;
    test = (m) => !excluded(m) && inner(m);
  }
  if (listed && layers !== undefined && (typeof layers === 'number' || layers.length > 0)) {
    const wanted = typeof layers === 'number' ? [layers] : layers;
    const inner = test;
    const layersWhere = where.replace(/target_modules$/, 'layers_pattern');
    // PEFT: a module named in full in the list is adapted whatever its layer.
    test = (m) => {
      if (!inner(m)) return false;
      if (Array.isArray(targets) && targets.includes(m)) return true;
      const at = layerIndexOf(m, filter.layers_pattern, layersWhere);
      return at !== null && wanted.includes(at);
    };
  }
  const hit = linearModules.filter(test);
  if (hit.length === 0) {
    const named = typeof targets === 'string' ? JSON.stringify(targets) : `${targets.map((t) => JSON.stringify(t)).join(', ')} ${targets.length === 1 ? 'matches' : 'match'}`;
    const after = exclude !== undefined || layers !== undefined ? ' (after exclude_modules and layers_to_transform)' : '';
    throw new ConfigError(`${where}: ${named}${typeof targets === 'string' ? ' matches' : ''} no linear module of this model${after}`, { where });
  }
  return hit;
}

/** The linear modules of a parameter set and their (in, out) sizes. `conv1d`: GPT-2's (in, out) layout. */
export function linearModules(params: ParameterSet, conv1d: boolean): { module: string; inFeatures: number; outFeatures: number }[] {
  return linearModulesOf(params.names.map((name) => ({ name, shape: params.shape(name) })), conv1d);
}

/** The same from a list of weights and their shapes (a model's tensor table, before anything is allocated). */
export function linearModulesOf(tensors: readonly { name: string; shape: readonly number[] }[], conv1d: boolean): { module: string; inFeatures: number; outFeatures: number }[] {
  const out: { module: string; inFeatures: number; outFeatures: number }[] = [];
  for (const { name, shape } of tensors) {
    if (!name.endsWith('.weight')) continue;
    const module = name.slice(0, -'.weight'.length);
    if (shape.length !== 2 || NOT_LINEAR.test(module)) continue;
    const [a, b] = shape as [number, number];
    out.push(conv1d ? { module, inFeatures: a, outFeatures: b } : { module, inFeatures: b, outFeatures: a });
  }
  return out;
}

/**
 * The modules `opts` adapts among the linears of `params`, each with its rank, scale and sizes: refused (a
 * ConfigError) when the targets select none or the rank exceeds a module's min(in, out).
 */
export function planLora(params: ParameterSet, opts: LoraOptions, conv1d: boolean): LoraModule[] {
  if (!Number.isInteger(opts.rank) || opts.rank < 1) throw new ConfigError(`lora.rank must be a positive integer, got ${opts.rank}`, { where: 'lora.rank' });
  if (!(opts.dropout >= 0 && opts.dropout < 1)) throw new ConfigError(`lora.dropout must be in [0, 1), got ${opts.dropout}`, { where: 'lora.dropout' });
  const linears = linearModules(params, conv1d);
  const chosen = new Set(matchTargets(linears.map((l) => l.module), opts.target_modules, 'lora.target_modules', { ...opts, everyName: opts.every_target_name !== false }));
  const modules: LoraModule[] = [];
  for (const l of linears) {
    if (!chosen.has(l.module)) continue;
    const rank = patternValue(opts.rank_pattern, l.module, 'lora.rank_pattern') ?? opts.rank;
    const alpha = patternValue(opts.alpha_pattern, l.module, 'lora.alpha_pattern') ?? opts.alpha;
    if (!Number.isInteger(rank) || rank < 1) throw new ConfigError(`lora.rank_pattern gives ${l.module} rank ${rank}, not a positive integer`, { where: 'lora.rank_pattern' });
    if (rank > Math.min(l.inFeatures, l.outFeatures)) {
      throw new ConfigError(`lora.rank ${rank} exceeds ${l.module} (${l.outFeatures}×${l.inFeatures}): a rank above min(in, out) adds nothing`, {
        where: 'lora.rank',
        hint: `use a rank of at most ${Math.min(l.inFeatures, l.outFeatures)}`,
      });
    }
    const scale = loraScale({ alpha, rank, use_rslora: opts.use_rslora });
    modules.push({ module: l.module, rank, scale, dropout: opts.dropout, inFeatures: l.inFeatures, outFeatures: l.outFeatures, fanInFanOut: conv1d });
  }
  return modules;
}

/**
 * Adds LoRA adapters to `params` for the modules `opts.target_modules` selects and freezes every base weight.
 * A is drawn Kaiming-uniform from `rng`, B is zero (PEFT's init); a loader overwrites both afterwards.
 */
export function attachLora(params: ParameterSet, opts: LoraOptions, rng: Rng, conv1d: boolean): LoraState {
  const modules = new Map<string, LoraModule>();
  const specs: { name: string; shape: number[]; values: Float32Array }[] = [];
  for (const m of planLora(params, opts, conv1d)) {
    modules.set(m.module, m);
    const bound = 1 / Math.sqrt(m.inFeatures); // kaiming_uniform_(a=√5): gain √(2/6) · √(3/fan_in)
    specs.push({ name: loraA(m.module), shape: [m.rank, m.inFeatures], values: rng.fillUniform(new Float32Array(m.rank * m.inFeatures), -bound, bound) });
    specs.push({ name: loraB(m.module), shape: [m.outFeatures, m.rank], values: new Float32Array(m.outFeatures * m.rank) });
  }
  params.freeze(() => true);
  const state: LoraState = { options: opts, modules, rng };
  params.addAdapters(specs, state);
  return state;
}
