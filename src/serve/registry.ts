// The models a server answers to: the loaded base model under its id, and one entry per LoRA adapter over that
// base (`--adapter NAME=DIR`), so a request's `model` picks base or adapter as multi-LoRA servers do. The
// scheduler carries the entry with each sequence; a batch then mixes entries of one base in one forward.
import { ConfigError } from '../errors.ts';
import type { RowAdapter } from '../nn/row-lora.ts';
import { RequestError } from './errors.ts';

export interface ServedModel {
  /** What `model` in a request says, and what /v1/models lists. */
  id: string;
  /** Unix seconds, as /v1/models reports. */
  created: number;
  /** null for the base model; the adapter's weights for an adapter. */
  adapter: RowAdapter | null;
}

/** One `--adapter NAME=DIR`, split. */
export interface AdapterSpec {
  name: string;
  dir: string;
}

/** Characters a served model id may hold (hub-style ids like `org/model-v2:lora` included). */
const ID = /^[A-Za-z0-9._:/-]+$/;

export class ModelRegistry {
  private readonly entries = new Map<string, ServedModel>();

  constructor(
    readonly baseId: string,
    private readonly created = Math.floor(Date.now() / 1000),
  ) {
    if (baseId === '') throw new ConfigError('the served model id is empty', { where: '--served_model_name' });
    this.entries.set(baseId, { id: baseId, created, adapter: null });
  }

  /**
   * The `--adapter NAME=DIR` flags, checked before anything loads: each NAME=DIR well formed, every name
   * distinct and none equal to the base model's id.
   */
  static parseAdapterSpecs(specs: readonly string[], baseId: string): AdapterSpec[] {
    const out: AdapterSpec[] = [];
    for (const spec of specs) {
      const eq = spec.indexOf('=');
      if (eq <= 0 || eq === spec.length - 1) throw new ConfigError(`--adapter ${JSON.stringify(spec)}: expected NAME=DIR`, { where: '--adapter', hint: 'e.g. --adapter support=./output/checkpoint/model-1_100' });
      const name = spec.slice(0, eq);
      const dir = spec.slice(eq + 1);
      if (!ID.test(name)) throw new ConfigError(`--adapter ${JSON.stringify(spec)}: the name ${JSON.stringify(name)} may hold only letters, digits and . _ : / -`, { where: '--adapter' });
      if (name === baseId) throw new ConfigError(`--adapter ${spec}: ${JSON.stringify(name)} is the base model's id`, { where: '--adapter', hint: 'give the adapter another name (or the base another --served_model_name)' });
      if (out.some((a) => a.name === name)) throw new ConfigError(`--adapter ${spec}: the name ${JSON.stringify(name)} is given twice`, { where: '--adapter' });
      out.push({ name, dir });
    }
    return out;
  }

  /** Serves `adapter` as the model `adapter.name` (over the base). */
  addAdapter(adapter: RowAdapter): void {
    if (this.entries.has(adapter.name)) throw new ConfigError(`the model id ${JSON.stringify(adapter.name)} is already served`, { where: '--adapter' });
    this.entries.set(adapter.name, { id: adapter.name, created: this.created, adapter });
  }

  /** Lists `id` (a served model) first; the rest keep their order (the base, then adapters as added). */
  setPrimary(id: string): void {
    const e = this.entries.get(id);
    if (!e) throw new ConfigError(`the model id ${JSON.stringify(id)} is not served`, { where: '--served_model_name' });
    this.entries.delete(id);
    const rest = [...this.entries.values()];
    this.entries.clear();
    for (const m of [e, ...rest]) this.entries.set(m.id, m);
  }

  /** The served models in the order /v1/models lists them. */
  list(): ServedModel[] {
    return [...this.entries.values()];
  }

  /** The entry `model` names; 404 when none does. */
  resolve(model: string, endpoint: string): ServedModel {
    const e = this.entries.get(model);
    if (!e) {
      const known = [...this.entries.keys()].map((k) => JSON.stringify(k)).join(', ');
      throw new RequestError(`The model ${JSON.stringify(model)} does not exist; this server serves ${known}`, { status: 404, type: 'invalid_request_error', param: 'model', code: 'model_not_found', endpoint });
    }
    return e;
  }

  /** Frees the adapters' weights (the server is closed). */
  release(): void {
    for (const e of this.entries.values()) {
      if (!e.adapter) continue;
      for (const m of e.adapter.modules.values()) {
        m.a.release();
        m.scaledB.release();
      }
      this.entries.delete(e.id);
    }
  }
}
