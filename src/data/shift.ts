// The records contract's shift: rows of seq_length + 1 become model inputs [:, :-1] and targets labels[:, 1:].
export interface ShiftedRows {
  rows: number;
  ids: Int32Array;
  targets: Int32Array;
  /** Segment ids of the inputs, for packed rows. */
  segments: Int32Array | null;
}

export function shiftRows(batch: { inputIds: Int32Array; labels: Int32Array; segmentIds?: Int32Array | null | undefined }, rowLength: number): ShiftedRows {
  const S = rowLength - 1;
  const rows = batch.inputIds.length / rowLength;
  const ids = new Int32Array(rows * S);
  const targets = new Int32Array(rows * S);
  const segments = batch.segmentIds ? new Int32Array(rows * S) : null;
  for (let r = 0; r < rows; r++) {
    ids.set(batch.inputIds.subarray(r * rowLength, r * rowLength + S), r * S);
    targets.set(batch.labels.subarray(r * rowLength + 1, (r + 1) * rowLength), r * S);
    segments?.set((batch.segmentIds as Int32Array).subarray(r * rowLength, r * rowLength + S), r * S);
  }
  return { rows, ids, targets, segments };
}
