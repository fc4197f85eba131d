// A byte trie with hashed transitions: prefix lookups over UTF-8 bytes for piece vocabularies and user-defined symbols.

export class ByteTrie {
  /** Child of the root for each byte (-1 none): most lookups start here. */
  private readonly rootChild = new Int32Array(256).fill(-1);
  /** Open-addressing table of transitions: key node * 256 + byte, value child node. */
  private tableKey = new Int32Array(0);
  private tableChild = new Int32Array(0);
  private mask = 0;
  /** Value stored at each node, -1 for none. */
  private values: Int32Array;
  readonly size: number;

  /** Builds the trie; a later entry with the same key replaces an earlier one. */
  constructor(entries: Iterable<readonly [Uint8Array, number]>) {
    const edges = new Map<number, number>();
    const values: number[] = [-1];
    let nodes = 1;
    let count = 0;
    for (const [key, value] of entries) {
      let node = 0;
      for (const b of key) {
        const k = node * 256 + b;
        let child = edges.get(k);
        if (child === undefined) {
          child = nodes++;
          values.push(-1);
          edges.set(k, child);
        }
        node = child;
      }
      values[node] = value;
      count++;
    }
    this.size = count;
    this.values = Int32Array.from(values);
    let cap = 16;
    while (cap < edges.size * 2) cap *= 2;
    this.mask = cap - 1;
    this.tableKey = new Int32Array(cap).fill(-1);
    this.tableChild = new Int32Array(cap);
    for (const [k, child] of edges) {
      if (k < 256) this.rootChild[k] = child;
      let h = ByteTrie.hash(k) & this.mask;
      while (this.tableKey[h] !== -1) h = (h + 1) & this.mask;
      this.tableKey[h] = k;
      this.tableChild[h] = child;
    }
  }

  private static hash(k: number): number {
    return Math.imul(k, 0x9e3779b1) >>> 7;
  }

  /** The node reached from `node` by byte `b`, or -1. */
  child(node: number, b: number): number {
    if (node === 0) return this.rootChild[b]!;
    const k = node * 256 + b;
    let h = ByteTrie.hash(k) & this.mask;
    for (;;) {
      const t = this.tableKey[h]!;
      if (t === k) return this.tableChild[h]!;
      if (t === -1) return -1;
      h = (h + 1) & this.mask;
    }
  }

  /** The value at `node`, or -1. */
  value(node: number): number {
    return this.values[node]!;
  }

  /** The value stored for buf[start, end) exactly, or -1. */
  get(buf: Uint8Array, start: number, end: number): number {
    let node = 0;
    for (let i = start; i < end; i++) {
      node = this.child(node, buf[i]!);
      if (node < 0) return -1;
    }
    return this.values[node]!;
  }

  /** Length of the longest key that is a prefix of buf[start, end), or 0. */
  longestPrefix(buf: Uint8Array, start: number, end: number): number {
    let node = 0;
    let best = 0;
    for (let i = start; i < end; i++) {
      node = this.child(node, buf[i]!);
      if (node < 0) break;
      if (this.values[node]! >= 0) best = i + 1 - start;
    }
    return best;
  }
}
