// GEMMs against a frozen weight held in low precision (NF4, int8, bf16): the weight (N, K) is expanded a panel
// of rows at a time into a small fp32 scratch that the packed GEMM then reads, so no fp32 copy of a whole weight
// ever exists. Forward y = x·Wᵀ fills y's columns panel by panel; the input gradient dx = dy·W accumulates
// panel by panel. The weight gets no gradient (it is frozen).
import { type ComputeBackend, DTYPE_CODE } from '../backend/compute.ts';
import { ShapeError } from '../errors.ts';
import { Tensor } from './tensor.ts';

/** A (rows, cols) matrix that can write any run of its rows as fp32. */
export interface RowSource {
  readonly rows: number;
  readonly cols: number;
  /** The backend its rows expand on (inputs and outputs of the GEMMs live there too). */
  readonly backend: ComputeBackend;
  /** Rows [row0, row0 + count) as fp32 into out, a contiguous (count, cols) float32 tensor. */
  dequantizeRows(row0: number, count: number, out: Tensor): void;
}

/** A frozen bf16 (rows, cols) matrix (for example a memory-mapped checkpoint tensor) as a RowSource. */
export class Bf16Rows implements RowSource {
  readonly rows: number;
  readonly cols: number;
  readonly weight: Tensor;

  get backend(): ComputeBackend {
    return this.weight.storage.backend;
  }

  constructor(weight: Tensor) {
    if (weight.dtype !== 'bfloat16' || weight.ndim !== 2 || !weight.isContiguous) {
      throw new ShapeError(`bf16 weight ${weight.name || ''}: needs a contiguous bfloat16 matrix, got ${weight.dtype} [${weight.shape.join(', ')}]`);
    }
    this.weight = weight;
    [this.rows, this.cols] = weight.shape as [number, number];
  }

  dequantizeRows(row0: number, count: number, out: Tensor): void {
    if (row0 < 0 || count < 0 || row0 + count > this.rows) throw new ShapeError(`bf16 weight: rows [${row0}, ${row0 + count}) outside ${this.rows}`);
    this.backend.cast(
      this.weight.handle, this.weight.byteOffset + row0 * this.cols * 2, DTYPE_CODE.bfloat16,
      out.handle, out.byteOffset, DTYPE_CODE.float32, count * this.cols,
    );
  }
}

/** Floats in one panel of expanded weight: about 4 MB, so it stays in cache while the GEMM packs it. */
const PANEL_FLOATS = 1 << 20;

/** Rows per panel for a weight of `cols` columns: at least 64, at most `rows`. */
export function panelRows(rows: number, cols: number): number {
  return Math.max(1, Math.min(rows, Math.max(64, Math.floor(PANEL_FLOATS / Math.max(1, cols)))));
}

function checkInput(x: Tensor, w: RowSource, cols: number, what: string): [number, number] {
  if (x.storage.backend !== w.backend) throw new ShapeError(`${what}: input on the ${x.storage.backend.name} backend, weight on ${w.backend.name}`);
  if (x.dtype !== 'float32' || !x.isContiguous || x.ndim < 1 || x.shape[x.ndim - 1] !== cols) {
    throw new ShapeError(`${what}: input must be a contiguous float32 tensor (..., ${cols}), got ${x.dtype} [${x.shape.join(', ')}]`);
  }
  return [x.size / cols, cols];
}

/**
 * Calls `gemm(n0, rows, panel)` for each run of at most panelRows(N, K) rows of w, expanded into one fp32
 * scratch panel (reused, released at the end).
 */
function forEachPanel(w: RowSource, gemm: (n0: number, rows: number, panel: Tensor) => void): void {
  const [N, K] = [w.rows, w.cols];
  const P = panelRows(N, K);
  const panel = Tensor.empty([P, K], 'float32', { backend: w.backend });
  try {
    for (let n0 = 0; n0 < N; n0 += P) {
      const rows = Math.min(P, N - n0);
      const view = rows === P ? panel : panelView(panel, rows, K);
      w.dequantizeRows(n0, rows, view);
      gemm(n0, rows, view);
    }
  } finally {
    panel.storage.release();
  }
}

/** y = x·Wᵀ for x (..., K) and W (N, K): returns y (..., N). bf16: bf16 compute with fp32 accumulation. */
export function frozenLinearForward(x: Tensor, w: RowSource, bf16 = false): Tensor {
  const [M, K] = checkInput(x, w, w.cols, 'frozen linear');
  const N = w.rows;
  const be = w.backend;
  const y = Tensor.empty([...x.shape.slice(0, -1), N], 'float32', { backend: be });
  if (M === 0 || N === 0) return y;
  if (K === 0) {
    be.fill(y.handle, y.byteOffset, y.size, 0, DTYPE_CODE.float32);
    return y;
  }
  // y[:, n0:n0+rows] = x (M, K) · panel (rows, K)ᵀ
  forEachPanel(w, (n0, rows, panel) =>
    be.gemm(false, true, M, rows, K, 1, x.handle, x.byteOffset, K, panel.handle, panel.byteOffset, K, 0, y.handle, y.byteOffset + n0 * 4, N, 1, 0, 0, 0, bf16),
  );
  return y;
}

/** dx = dy·W for dy (..., N) and W (N, K): returns dx (..., K). */
export function frozenLinearInputGrad(dy: Tensor, w: RowSource, bf16 = false): Tensor {
  const [M, N] = checkInput(dy, w, w.rows, 'frozen linear backward');
  const K = w.cols;
  const be = w.backend;
  const dx = Tensor.empty([...dy.shape.slice(0, -1), K], 'float32', { backend: be });
  if (M === 0 || K === 0) return dx;
  if (N === 0) {
    be.fill(dx.handle, dx.byteOffset, dx.size, 0, DTYPE_CODE.float32);
    return dx;
  }
  // dx (M, K) (+)= dy[:, n0:n0+rows] (M, rows) · panel (rows, K)
  forEachPanel(w, (n0, rows, panel) =>
    be.gemm(false, false, M, K, rows, 1, dy.handle, dy.byteOffset + n0 * 4, N, panel.handle, panel.byteOffset, K, n0 === 0 ? 0 : 1, dx.handle, dx.byteOffset, K, 1, 0, 0, 0, bf16),
  );
  return dx;
}

/** The first `rows` rows of a contiguous (P, K) panel as a contiguous (rows, K) tensor on the same storage. */
function panelView(panel: Tensor, rows: number, K: number): Tensor {
  return new Tensor(panel.storage, [rows, K], [K, 1], panel.offset, 'float32');
}
