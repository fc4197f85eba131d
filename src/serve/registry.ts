// The models a server answers to: the loaded base model under its id, and (once LoRA lands, issue 15) one
// entry per adapter over that base, so a request's `model` picks base or adapter as multi-LoRA servers do.
// The scheduler carries the entry with each sequence; a batch may then mix entries of one base.
import { ConfigError } from '../errors.ts';
import { RequestError } from './errors.ts';

export interface ServedModel {
  /** What `model` in a request says, and what /v1/models lists. */
  id: string;
  /** Unix seconds, as /v1/models reports. */
  created: number;
  /** null for the base model; an adapter's name once adapters exist. */
  adapter: string | null;
}

export class ModelRegistry {
  private readonly entries = new Map<string, ServedModel>();

  constructor(baseId: string, created = Math.floor(Date.now() / 1000)) {
    if (baseId === '') throw new ConfigError('the served model id is empty', { where: '--served_model_name' });
    this.entries.set(baseId, { id: baseId, created, adapter: null });
  }

  /**
   * `--adapter NAME=DIR`: refused until LoRA adapters exist (checked before anything loads). The entry it
   * will make is { id: NAME, adapter: NAME }, the adapter's weights loaded beside the base's.
   */
  static checkAdapterSpec(spec: string): never {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1) throw new ConfigError(`--adapter ${JSON.stringify(spec)}: expected NAME=DIR`, { where: '--adapter' });
    throw new ConfigError(`--adapter ${spec}: LoRA adapters are not supported yet; sftkit serves the base model only until LoRA lands`, { where: '--adapter' });
  }

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
}
