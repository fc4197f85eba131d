// Writing the suite's results into docs/BENCHMARKS.md: each CPU has its own block (`<!-- bench-cpu:KEY -->` …
// `<!-- /bench-cpu:KEY -->`), inside which measured sections live between marker comments (`<!-- bench:ID -->` …
// `<!-- /bench:ID -->`). Everything outside the markers, and every other CPU's block, is kept byte for byte.

export const beginMarker = (id: string): string => `<!-- bench:${id} -->`;
export const endMarker = (id: string): string => `<!-- /bench:${id} -->`;
export const cpuBeginMarker = (key: string): string => `<!-- bench-cpu:${key} -->`;
export const cpuEndMarker = (key: string): string => `<!-- /bench-cpu:${key} -->`;
const CPU_END_LINE = /^<!-- \/bench-cpu:[a-z0-9-]+ -->$/gm;

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

/**
 * Writes one CPU's sections into that CPU's block (with replaceSections, inside the block only), creating the
 * block, headed by the CPU's label, after the last CPU block (or at the end) the first time that CPU is met.
 * Text outside the block and other CPUs' blocks are untouched.
 */
export function replaceCpuSections(doc: string, opts: { cpu: { key: string; label: string }; sections: ReadonlyArray<{ id: string; content: string }> }): string {
  const { key, label } = opts.cpu;
  if (!/^[a-z0-9-]+$/.test(key)) throw new Error(`bench CPU key "${key}": use lowercase letters, digits and dashes`);
  const begin = cpuBeginMarker(key);
  const end = cpuEndMarker(key);
  const at = doc.indexOf(begin);
  if (at < 0) {
    if (doc.includes(end)) throw new Error(`docs: ${end} without ${begin}`);
    const block = `${begin}\n${replaceSections(`## ${label}\n`, opts.sections)}${end}`;
    // Only a marker on its own line ends a block: prose may quote the marker's syntax.
    const last = [...doc.matchAll(CPU_END_LINE)].pop();
    if (last === undefined) {
      const sep = doc.length === 0 || doc.endsWith('\n\n') ? '' : doc.endsWith('\n') ? '\n' : '\n\n';
      return `${doc}${sep}${block}\n`;
    }
    const after = last.index + last[0].length;
    return `${doc.slice(0, after)}\n\n${block}${doc.slice(after)}`;
  }
  const stop = doc.indexOf(end, at + begin.length);
  if (stop < 0) throw new Error(`docs: ${begin} without a matching ${end}`);
  if (doc.indexOf(begin, at + begin.length) >= 0) throw new Error(`docs: ${begin} appears twice`);
  const inner = doc.slice(at + begin.length, stop);
  return doc.slice(0, at + begin.length) + replaceSections(inner, opts.sections) + doc.slice(stop);
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
