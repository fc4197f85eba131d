// The output of a SentencePiece model: pieces as (start, length) byte ranges of the normalized text plus their ids.

export class Segments {
  start: Int32Array = new Int32Array(64);
  len: Int32Array = new Int32Array(64);
  id: Int32Array = new Int32Array(64);
  count = 0;

  clear(): void {
    this.count = 0;
  }

  push(start: number, len: number, id: number): void {
    if (this.count === this.id.length) this.grow();
    this.start[this.count] = start;
    this.len[this.count] = len;
    this.id[this.count] = id;
    this.count++;
  }

  private grow(): void {
    const cap = this.id.length * 2;
    const resize = (a: Int32Array): Int32Array => {
      const b = new Int32Array(cap);
      b.set(a);
      return b;
    };
    this.start = resize(this.start);
    this.len = resize(this.len);
    this.id = resize(this.id);
  }
}

/** What a model needs to know about the vocabulary, indexed by piece id. */
export interface PieceTable {
  /** UTF-8 bytes of each piece. */
  bytes: Uint8Array[];
  types: Uint8Array;
  scores: Float32Array;
  /** SentencePiece's `pieces_` map (NORMAL, USER_DEFINED and UNUSED pieces) keyed by the piece's bytes as latin1. */
  normal: Map<string, number>;
  /** SentencePiece's `reserved_id_map_` (CONTROL, UNKNOWN and BYTE pieces), same keys. */
  reserved: Map<string, number>;
  unkId: number;
}

/** SentencePiece's PieceToId: reserved pieces first, then normal ones, else unk. */
export function pieceIdOf(table: PieceTable, key: string): number {
  return table.reserved.get(key) ?? table.normal.get(key) ?? table.unkId;
}

export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}
