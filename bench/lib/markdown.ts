// Writing the suite's results into docs/BENCHMARKS.md: measured sections live between marker comments
// (`<!-- bench:ID -->` … `<!-- /bench:ID -->`); everything outside the markers is hand-written prose and is
// kept byte for byte. A section without markers yet is appended at the end of the file.

export const beginMarker = (id: string): string => `<!-- bench:${id} -->`;
export const endMarker = (id: string): string => `<!-- /bench:${id} -->`;

/**
 * Replaces (or appends) each section's content between its markers. Content is placed on its own lines
 * between the markers; text before the begin marker and after the end marker is untouched.
 */
export function replaceSections(doc: string, sections: ReadonlyArray<{ id: string; content: string }>): string {
  let out = doc;
  for (const { id, content } of sections) {
    if (!/^[a-z0-9-]+$/.test(id)) throw new Error(`bench section id "${id}": use lowercase letters, digits and dashes`);
    const begin = beginMarker(id);
    const end = endMarker(id);
    const body = `${begin}\n${content.trim()}\n${end}`;
    const at = out.indexOf(begin);
    if (at < 0) {
      if (out.includes(end)) throw new Error(`docs: ${end} without ${begin}`);
      const sep = out.length === 0 || out.endsWith('\n\n') ? '' : out.endsWith('\n') ? '\n' : '\n\n';
      out = `${out}${sep}${body}\n`;
      continue;
    }
    const stop = out.indexOf(end, at + begin.length);
    if (stop < 0) throw new Error(`docs: ${begin} without a matching ${end}`);
    if (out.indexOf(begin, at + begin.length) >= 0) throw new Error(`docs: ${begin} appears twice`);
    out = out.slice(0, at) + body + out.slice(stop + end.length);
  }
  return out;
}

/** A markdown table. */
export function table(columns: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(columns), line(columns.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * Turns a bench's plain output into markdown: runs of table lines (`|…`) stay together with a blank line
 * around them, every other non-empty line becomes its own paragraph, and fenced blocks pass through.
 */
export function outputToMarkdown(text: string): string {
  const blocks: string[] = [];
  let current: string[] = [];
  let kind: 'table' | 'fence' | null = null;
  const flush = (): void => {
    if (current.length > 0) blocks.push(current.join('\n'));
    current = [];
    kind = null;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (kind === 'fence') {
      current.push(line);
      if (line.startsWith('```')) flush();
      continue;
    }
    if (line.startsWith('```')) {
      flush();
      kind = 'fence';
      current.push(line);
      continue;
    }
    if (line.startsWith('|')) {
      if (kind !== 'table') flush();
      kind = 'table';
      current.push(line);
      continue;
    }
    flush();
    if (line.trim() !== '') blocks.push(line.trim());
  }
  flush();
  return blocks.join('\n\n');
}
