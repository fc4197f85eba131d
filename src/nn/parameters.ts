// Trainable parameters as views of one flat buffer, with gradients as views of a second one, so the
// optimizer, gradient clipping and all-reduce each see one contiguous block.
import { ShapeError } from '../errors.ts';
import { FlatBuffer, type Rng, Tensor, flatLayout, loadInto } from '../tensor/index.ts';

export interface ParamSpec {
  name: string;
  shape: number[];
  /** How to initialise: normal(0, std), zeros, ones. */
  init: { kind: 'normal'; std: number } | { kind: 'zeros' } | { kind: 'ones' };
}

export class ParameterSet {
  readonly values: FlatBuffer;
  readonly grads: FlatBuffer;
  private readonly tensors = new Map<string, Tensor>();

  constructor(specs: readonly ParamSpec[], rng: Rng) {
    const layout = flatLayout(specs);
    this.values = new FlatBuffer(layout);
    this.grads = new FlatBuffer(layout);
    for (const spec of specs) {
      const t = this.values.get(spec.name);
      t.name = spec.name;
      t.requiresGrad = true;
      t.grad = this.grads.get(spec.name);
      const data = new Float32Array(t.size);
      if (spec.init.kind === 'normal') rng.fillNormal(data, 0, spec.init.std);
      else if (spec.init.kind === 'ones') data.fill(1);
      if (spec.init.kind !== 'zeros') loadInto(t, data);
      this.tensors.set(spec.name, t);
    }
  }

  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new ShapeError(`no parameter named ${name}`, { where: name });
    return t;
  }

  get names(): string[] {
    return this.values.layout.names;
  }

  zeroGrad(): void {
    this.grads.zero();
  }

  release(): void {
    this.values.release();
    this.grads.release();
  }
}
