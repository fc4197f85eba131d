// The preprocessing report: every sample is accounted for (kept, truncated or dropped with a reason).
export interface PreprocessReport {
  /** Samples read (conversations, or paragraphs for wiki/text), counting each --repeat pass. */
  samples_in: number;
  rows_out: number;
  truncated: { count: number; tokens_lost: number };
  dropped: { count: number; by_reason: Record<string, number> };
  /** Tokens of the input stream left out because they did not fill a last whole row (wiki/text without packing). */
  tail_tokens_dropped: number;
  /** Non-padding tokens written. */
  total_tokens: number;
  /** Label tokens the loss sees (labels[:, 1:] that are not -100). */
  trained_tokens: number;
  /** Padding tokens ÷ all tokens written. */
  padding_fraction: number;
  /** Largest token id written (for the vocabulary check before training). */
  max_token_id: number;
}

export function emptyReport(): PreprocessReport {
  return {
    samples_in: 0,
    rows_out: 0,
    truncated: { count: 0, tokens_lost: 0 },
    dropped: { count: 0, by_reason: {} },
    tail_tokens_dropped: 0,
    total_tokens: 0,
    trained_tokens: 0,
    padding_fraction: 0,
    max_token_id: -1,
  };
}

export function countDrop(report: PreprocessReport, reason: string): void {
  report.dropped.count++;
  report.dropped.by_reason[reason] = (report.dropped.by_reason[reason] ?? 0) + 1;
}

/** A few lines for the terminal. */
export function formatReport(r: PreprocessReport): string {
  const reasons = Object.entries(r.dropped.by_reason).map(([k, v]) => `${k}: ${v}`).join(', ');
  return [
    `samples in:      ${r.samples_in}`,
    `rows out:        ${r.rows_out}`,
    `truncated:       ${r.truncated.count} samples, ${r.truncated.tokens_lost} tokens lost`,
    `dropped:         ${r.dropped.count}${reasons ? ` (${reasons})` : ''}`,
    ...(r.tail_tokens_dropped > 0 ? [`tail dropped:    ${r.tail_tokens_dropped} tokens (less than one row)`] : []),
    `total tokens:    ${r.total_tokens}`,
    `trained tokens:  ${r.trained_tokens}`,
    `padding:         ${(100 * r.padding_fraction).toFixed(2)}%`,
  ].join('\n');
}
