// The New-run page: a form drawn from the run-config schema (every key, its default, its bounds), checked by the
// server against that same schema as you type, showing the YAML and the equivalent `sftkit run` command; Start
// runs it as a child process and opens it under Runs.
import { ApiError, api, h, showError } from './lib.js';

/** Keys the form does not show: output_dir is the run's name. */
const HIDDEN = new Set(['output_dir']);
const PATH_KEYS = new Set(['load_checkpoint', 'tokenizer', 'model.arch', 'train_dataset.dataset_dir', 'eval_dataset.dataset_dir']);

/** The leaves of the JSON Schema, in schema order, with their dotted keys. */
function leaves(schema, prefix = '') {
  const out = [];
  for (const [k, s] of Object.entries(schema.properties ?? {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (s.type === 'object' && s.properties) out.push(...leaves(s, key));
    else out.push({ key, schema: s, section: prefix.split('.')[0] || 'run' });
  }
  return out;
}

function describe(s) {
  const bits = [];
  if (s.enum) bits.push(s.enum.join(' | '));
  else if (s.anyOf) bits.push(s.anyOf.map((a) => a.const ?? a.type).join(' | '));
  else if (Array.isArray(s.type)) bits.push(s.type.join(' | '));
  else if (s.type === 'array') bits.push(`list of ${s.items?.enum ? s.items.enum.join(', ') : s.items?.type ?? 'values'} (comma separated)`);
  else if (s.type) bits.push(s.type);
  if (s.minimum !== undefined) bits.push(`≥ ${s.minimum}`);
  if (s.exclusiveMinimum !== undefined) bits.push(`> ${s.exclusiveMinimum}`);
  if (s.maximum !== undefined && s.maximum < 1e15) bits.push(`≤ ${s.maximum}`);
  if (s.exclusiveMaximum !== undefined) bits.push(`< ${s.exclusiveMaximum}`);
  if (s.default !== undefined) bits.push(`default ${JSON.stringify(s.default)}`);
  return bits.join(', ');
}

function inputFor(leaf) {
  const s = leaf.schema;
  const attrs = { name: leaf.key, 'data-key': leaf.key };
  if (s.type === 'boolean') return h('input', { ...attrs, type: 'checkbox', checked: s.default === true });
  if (s.enum) {
    const select = h('select', attrs, s.enum.map((v) => h('option', { value: v }, v)));
    if (s.default !== undefined) select.value = s.default;
    return select;
  }
  if (s.const !== undefined) return h('input', { ...attrs, type: 'text', value: s.const, disabled: true });
  if (s.type === 'integer' || s.type === 'number') {
    const min = s.minimum ?? (s.exclusiveMinimum !== undefined ? (s.type === 'integer' ? s.exclusiveMinimum + 1 : undefined) : undefined);
    return h('input', { ...attrs, type: 'number', step: s.type === 'integer' ? 1 : 'any', min, max: s.maximum !== undefined && s.maximum < 1e15 ? s.maximum : undefined, value: s.default ?? '' });
  }
  if (s.type === 'array') return h('input', { ...attrs, type: 'text', value: (s.default ?? []).join(', ') });
  const list = PATH_KEYS.has(leaf.key) ? `list-${leaf.key.replace(/\W/g, '-')}` : undefined;
  return h('input', { ...attrs, type: 'text', value: s.default === undefined ? '' : String(s.default), list, placeholder: PATH_KEYS.has(leaf.key) ? 'relative to the root' : '' });
}

/** The value an input holds, typed as the schema wants it; undefined leaves the key out. */
function valueOf(leaf, el) {
  const s = leaf.schema;
  if (el.disabled) return undefined;
  // An optional flag with no default (parallel_config.optimizer_shard) is left out unless ticked.
  if (el.type === 'checkbox') return s.default === undefined && !el.checked ? undefined : el.checked;
  const text = el.value.trim();
  if (s.type === 'integer' || s.type === 'number') return text === '' ? undefined : Number(text);
  if (s.type === 'array') return text === '' ? [] : text.split(',').map((x) => x.trim()).filter(Boolean);
  if (s.anyOf) return text === '' && s.default === undefined ? undefined : /^\d+$/.test(text) ? Number(text) : text;
  if (Array.isArray(s.type) && s.type.includes('boolean')) return text === 'true' ? true : text === 'false' || text === '' ? false : text;
  if (s.default === undefined && text === '') return undefined;
  return text;
}

function setKey(obj, key, value) {
  const parts = key.split('.');
  let node = obj;
  for (const p of parts.slice(0, -1)) node = node[p] ??= {};
  node[parts.at(-1)] = value;
}

export async function newRunPage(main) {
  const [schema, { checkpoints }, { records }] = await Promise.all([api('/api/config-schema'), api('/api/checkpoints'), api('/api/records')]);
  const all = leaves(schema).filter((l) => !HIDDEN.has(l.key));
  const name = h('input', { type: 'text', value: `run-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}`, 'data-key': 'name', 'data-testid': 'run-name' });
  const fields = new Map();
  const sections = new Map();
  for (const leaf of all) {
    const el = inputFor(leaf);
    fields.set(leaf.key, { leaf, el });
    if (!sections.has(leaf.section)) sections.set(leaf.section, h('fieldset', {}, h('legend', {}, leaf.section)));
    const label = leaf.key.includes('.') ? leaf.key.slice(leaf.section.length + 1) : leaf.key;
    sections.get(leaf.section).append(h('div', { class: 'field', 'data-field': leaf.key }, h('label', {}, label), el, h('div', { class: 'help' }, describe(leaf.schema))));
  }
  const datalists = [
    h('datalist', { id: 'list-load_checkpoint' }, checkpoints.map((c) => h('option', { value: c.id }))),
    h('datalist', { id: 'list-tokenizer' }, checkpoints.map((c) => h('option', { value: c.id }))),
    h('datalist', { id: 'list-train_dataset-dataset_dir' }, records.map((r) => h('option', { value: r.id }))),
    h('datalist', { id: 'list-eval_dataset-dataset_dir' }, records.map((r) => h('option', { value: r.id }))),
  ];
  const yaml = h('pre', { 'data-testid': 'yaml' });
  const command = h('pre', { 'data-testid': 'command' });
  const problem = h('p', { class: 'error', 'data-testid': 'form-error' });
  const start = h('button', { class: 'primary', 'data-testid': 'start-run' }, 'Start run');

  const body = () => {
    const config = {};
    for (const { leaf, el } of fields.values()) {
      const v = valueOf(leaf, el);
      if (v !== undefined) setKey(config, leaf.key, v);
    }
    return { name: name.value.trim(), config };
  };
  let seq = 0;
  const preview = async () => {
    const mine = ++seq;
    for (const f of main.querySelectorAll('.field.invalid')) f.classList.remove('invalid');
    try {
      const p = await api('/api/runs/preview', body());
      if (mine !== seq) return;
      if (!p.valid) throw new ApiError(400, p);
      problem.textContent = '';
      yaml.textContent = p.yaml || '# all defaults';
      command.textContent = `${p.command}\n\n# or, without the file:\n${p.overrides_command}`;
      start.disabled = false;
    } catch (err) {
      if (mine !== seq) return;
      problem.textContent = err.message;
      start.disabled = true;
      if (err.where) main.querySelector(`.field[data-field="${CSS.escape(err.where)}"]`)?.classList.add('invalid');
    }
  };
  let timer = null;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(preview, 250);
  };
  start.addEventListener('click', async () => {
    try {
      const r = await api('/api/runs', body());
      location.hash = `#/runs?run=${encodeURIComponent(r.run)}`;
    } catch (err) {
      problem.textContent = err.message;
      showError(err);
    }
  });
  main.addEventListener('input', schedule);
  main.addEventListener('change', schedule);
  main.append(
    h('div', { class: 'cols2' },
      h('div', { class: 'panel' }, h('h2', {}, 'New run'), h('div', { class: 'field' }, h('label', {}, 'run name (its folder)'), name), ...sections.values(), datalists),
      h('div', { class: 'panel sticky' }, h('h3', {}, 'Config (YAML)'), yaml, h('h3', {}, 'Command'), command, problem, h('div', { class: 'row-actions' }, start)),
    ),
  );
  await preview();
}
