// The Data page: token records under the root, their preprocessing report (truncations, drops), a page of rows
// with each row's trained-token count, search by text, and one row drawn token by token: trained tokens
// (targets of the loss) apart from masked ones, BOS/EOS and padding marked, packed samples separated.
import { api, fmt, h, routeParams, showError } from './lib.js';

const PAGE = 50;

function reportTable(r) {
  const reasons = Object.entries(r.dropped?.by_reason ?? {});
  return h('table', { 'data-testid': 'preprocess-report' },
    [
      ['samples in', r.samples_in],
      ['rows out', r.rows_out],
      ['truncated', `${fmt(r.truncated?.count)} samples, ${fmt(r.truncated?.tokens_lost)} tokens lost`],
      ['dropped', `${fmt(r.dropped?.count)}${reasons.length ? ` (${reasons.map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}`],
      ['tail tokens dropped', r.tail_tokens_dropped],
      ['total tokens', r.total_tokens],
      ['trained tokens', r.trained_tokens],
      ['padding', `${(100 * (r.padding_fraction ?? 0)).toFixed(2)} %`],
    ].map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, typeof v === 'number' ? fmt(v) : v))),
  );
}

/** A piece as shown: SentencePiece's ▁ as a visible space mark, control bytes by name. */
function shownPiece(t) {
  if (t.kind === 'pad') return '·';
  return t.piece.replace(/\n/g, '↵');
}

function drawRow(view) {
  const cells = view.tokens.map((t, j) => {
    const prevSeg = j > 0 ? view.tokens[j - 1].segment : undefined;
    const cls = ['tok', t.kind === 'pad' ? 'pad' : t.trained ? 'trained' : 'masked', t.kind !== 'text' && t.kind !== 'pad' ? t.kind : '', t.segment !== undefined && t.segment !== prevSeg && t.segment !== 0 && j > 0 ? 'seg-start' : ''].filter(Boolean).join(' ');
    return h('span', { class: cls, title: `position ${j}  id ${t.id}  label ${t.label}${t.segment !== undefined ? `  segment ${t.segment}` : ''}  ${t.kind}`, 'data-kind': t.kind, 'data-trained': t.trained ? '1' : '0' }, shownPiece(t));
  });
  return h('div', {},
    h('div', { class: 'row-actions' },
      h('span', {}, 'row ', h('b', {}, view.row)),
      h('span', {}, 'trained tokens ', h('b', { 'data-testid': 'row-trained' }, view.trained)),
      h('span', {}, 'tokens (no padding) ', h('b', {}, view.length)),
      view.samples.length > 1 ? h('span', {}, 'samples: ', view.samples.map((s) => `#${s.segment} ${s.trained}/${s.tokens}`).join(', ')) : null,
    ),
    h('div', { class: 'legend' },
      h('span', { class: 'tok trained' }, 'trained'), h('span', { class: 'tok masked' }, 'masked (-100)'), h('span', { class: 'tok pad' }, '· padding'), h('span', { class: 'tok masked bos' }, 'BOS / EOS / special'),
    ),
    h('div', { class: 'tokens', 'data-testid': 'row-tokens' }, cells),
    view.text !== null ? h('details', {}, h('summary', {}, 'decoded text'), h('pre', {}, view.text)) : h('p', { class: 'muted' }, 'No tokenizer with these records\' identity under the root: ids are shown instead of pieces.'),
  );
}

export async function dataPage(main) {
  const params = routeParams();
  const { records } = await api('/api/records');
  const side = h('div', { class: 'panel' }, h('h2', {}, 'Token records'));
  const body = h('div', { class: 'panel', 'data-testid': 'data-detail' }, h('p', { class: 'muted' }, 'Choose token records.'));
  main.append(h('div', { class: 'cols' }, side, body));
  if (records.length === 0) side.append(h('p', { class: 'muted' }, 'No token records under the root (sftkit data preprocess --output_file DIR).'));
  side.append(
    h('table', { 'data-testid': 'records-table' },
      records.map((r) => h('tr', { class: 'selectable', 'data-records': r.id, onclick: () => open(r.id, 0).catch(showError) }, h('td', {}, r.id), h('td', {}, `${fmt(r.rows)} rows × ${r.seq_length + 1}`), h('td', {}, r.template ?? r.dataset_type))),
    ),
  );

  // A conversation file, tokenized on the server with a tokenizer and template as `sftkit data preprocess` would.
  const { checkpoints } = await api('/api/checkpoints');
  const convFile = h('input', { type: 'text', placeholder: 'conversations.json (under the root)', 'data-testid': 'conv-file' });
  const convTok = h('select', { 'data-testid': 'conv-tokenizer' }, checkpoints.map((c) => h('option', { value: c.id }, c.id)));
  const convTemplate = h('select', { 'data-testid': 'conv-template' }, ['vicuna', 'alpaca', 'chatml', 'llama2', 'hf'].map((t) => h('option', { value: t }, t)));
  const convSeq = h('input', { type: 'number', min: 2, value: 512, style: 'width: 6em', 'data-testid': 'conv-seq' });
  const convTable = h('table', {});
  const tokenize = async () => {
    const r = await api('/api/records/tokenize', { file: convFile.value.trim(), tokenizer: convTok.value, template: convTemplate.value, seq_length: Number(convSeq.value) });
    convTable.append(h('tr', { class: 'selectable', 'data-records': r.id, onclick: () => open(r.id, 0).catch(showError) }, h('td', {}, r.id), h('td', {}, convFile.value), h('td', {}, `${convTemplate.value}, ${convSeq.value}`)));
    await open(r.id, 0);
  };
  side.append(
    h('h3', {}, 'Or tokenize a conversation file'),
    h('div', { class: 'row-actions' }, convFile),
    h('div', { class: 'row-actions' }, h('label', {}, 'tokenizer ', convTok)),
    h('div', { class: 'row-actions' }, h('label', {}, 'template ', convTemplate), h('label', {}, 'seq_length ', convSeq)),
    h('div', { class: 'row-actions' }, h('button', { onclick: () => tokenize().catch(showError), 'data-testid': 'conv-open' }, 'Tokenize and view')),
    convTable,
  );

  async function open(id, from, row = null) {
    history.replaceState(null, '', `#/data?dir=${encodeURIComponent(id)}${row !== null ? `&row=${row}` : ''}`);
    for (const tr of side.querySelectorAll('tr[data-records]')) tr.classList.toggle('selected', tr.dataset.records === id);
    const info = await api(`/api/records/rows?dir=${encodeURIComponent(id)}&from=${from}&count=${PAGE}`);
    const m = info.manifest;
    const rowList = h('tbody');
    const view = h('div', { 'data-testid': 'row-view' });
    const results = h('div');
    const showRow = async (n) => {
      for (const tr of rowList.querySelectorAll('tr[data-row]')) tr.classList.toggle('selected', tr.dataset.row === String(n));
      view.replaceChildren(drawRow(await api(`/api/records/row?dir=${encodeURIComponent(id)}&row=${n}`)));
      history.replaceState(null, '', `#/data?dir=${encodeURIComponent(id)}&row=${n}`);
    };
    rowList.append(...info.list.map((r) => h('tr', { class: 'selectable', 'data-row': r.row, onclick: () => showRow(r.row).catch(showError) }, h('td', {}, r.row), h('td', {}, r.length), h('td', { 'data-testid': 'list-trained' }, r.trained))));
    const search = h('input', { type: 'search', placeholder: 'search the text of the rows', 'data-testid': 'search', disabled: !info.tokenizer });
    const runSearch = async () => {
      const q = search.value.trim();
      if (!q) return results.replaceChildren();
      const { matches } = await api(`/api/records/search?dir=${encodeURIComponent(id)}&q=${encodeURIComponent(q)}`);
      results.replaceChildren(
        h('p', { class: 'muted' }, `${matches.length} row(s)${matches.length >= 50 ? ' (first 50)' : ''}`),
        h('table', { 'data-testid': 'search-results' }, matches.map((x) => h('tr', { class: 'selectable', 'data-row': x.row, onclick: () => showRow(x.row).catch(showError) }, h('td', {}, x.row), h('td', {}, x.trained), h('td', { style: 'white-space: normal' }, x.snippet)))),
      );
    };
    search.addEventListener('keydown', (e) => e.key === 'Enter' && runSearch().catch(showError));
    body.replaceChildren(
      h('h2', {}, id),
      h('p', { class: 'muted' }, `${m.dataset_type}${m.template ? `, template ${m.template}` : ''}${m.packed ? ', packed' : ''}; seq_length ${m.seq_length}; pad id ${m.pad_id}; BOS ${m.tokenizer.bos_id}, EOS ${m.tokenizer.eos_id}; tokenizer ${m.tokenizer.kind} ${m.tokenizer.identity.slice(0, 12)}…`),
      h('div', { class: 'cols2' },
        h('div', {}, h('h3', {}, 'Preprocessing report'), reportTable(m.report)),
        h('div', {},
          h('h3', {}, 'Rows'),
          h('div', { class: 'row-actions' }, search,
            h('button', { disabled: from === 0, onclick: () => open(id, Math.max(0, from - PAGE)).catch(showError) }, '◀'),
            h('span', { class: 'muted' }, `${from}–${Math.min(info.rows, from + PAGE) - 1} of ${fmt(info.rows)}`),
            h('button', { disabled: from + PAGE >= info.rows, onclick: () => open(id, from + PAGE).catch(showError) }, '▶')),
          results,
          h('div', { style: 'max-height: 220px; overflow: auto' }, h('table', { 'data-testid': 'rows-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'row'), h('th', {}, 'tokens'), h('th', {}, 'trained'))), rowList)),
        ),
      ),
      h('h3', {}, 'Row'),
      view,
    );
    await showRow(row ?? from);
  }

  const dir = params.get('dir');
  if (dir) await open(dir, 0, params.has('row') ? Number(params.get('row')) : null);
}
