// The Chat page: any checkpoint under the root, replies streamed through /v1/chat/completions (OpenAI's shape),
// a second checkpoint answering the same conversation beside it (base and fine-tuned), and the prompt as the
// template renders it, on request.
import { api, h, routeParams, showError, streamEvents } from './lib.js';

const TEMPLATES = ['', 'vicuna', 'alpaca', 'chatml', 'llama2', 'hf', 'none'];

export async function chatPage(main) {
  const params = routeParams();
  const { checkpoints } = await api('/api/checkpoints');
  const options = (extra) => [...extra, ...checkpoints.map((c) => h('option', { value: c.id }, c.id))];
  const modelA = h('select', { 'data-testid': 'model-a' }, options([]));
  const modelB = h('select', { 'data-testid': 'model-b' }, options([h('option', { value: '' }, '— none —')]));
  if (params.get('model')) modelA.value = params.get('model');
  if (params.get('compare')) modelB.value = params.get('compare');
  const template = h('select', { 'data-testid': 'template' }, TEMPLATES.map((t) => h('option', { value: t }, t || 'as trained (recorded, else vicuna)')));
  const maxTokens = h('input', { type: 'number', min: 1, max: 4096, value: 64, style: 'width: 6em', 'data-testid': 'max-tokens' });
  const temperature = h('input', { type: 'number', min: 0, step: 0.1, value: 0, style: 'width: 5em' });
  const system = h('input', { type: 'text', placeholder: 'system prompt (default: the template\'s)', style: 'width: 100%' });
  const input = h('textarea', { rows: 3, placeholder: 'Your message (Ctrl+Enter sends)', 'data-testid': 'chat-input' });
  const showPrompt = h('input', { type: 'checkbox', 'data-testid': 'show-prompt' });
  const cols = h('div', { class: 'cols2' });
  const histories = new Map(); // column key -> messages
  const columns = new Map();

  function column(key, model) {
    if (!columns.has(key) || columns.get(key).model !== model) {
      const log = h('div', { 'data-testid': `chat-log-${key}` });
      const prompt = h('div');
      columns.set(key, { model, el: h('div', { class: 'panel chat-col' }, h('h3', {}, model), prompt, log), log, prompt });
      histories.set(key, []);
    }
    return columns.get(key);
  }

  function layout() {
    const keys = [['a', modelA.value], ...(modelB.value ? [['b', modelB.value]] : [])];
    cols.replaceChildren(...keys.filter(([, m]) => m).map(([k, m]) => column(k, m).el));
    for (const k of [...columns.keys()]) if (!keys.some(([kk]) => kk === k)) columns.delete(k);
    return keys.filter(([, m]) => m);
  }
  modelA.addEventListener('change', layout);
  modelB.addEventListener('change', layout);

  async function ask(key, model, text) {
    const col = column(key, model);
    const messages = [...(system.value ? [{ role: 'system', content: system.value }] : []), ...histories.get(key), { role: 'user', content: text }];
    const request = { model, messages, max_tokens: Number(maxTokens.value), temperature: Number(temperature.value), ...(template.value ? { template: template.value } : {}) };
    col.log.append(h('div', { class: 'msg user' }, text));
    if (showPrompt.checked) {
      const p = await api('/api/chat/prompt', request);
      col.prompt.replaceChildren(h('details', { open: true }, h('summary', {}, `prompt: template ${p.template} (${p.template_source}), ${p.ids.length} tokens`), h('pre', { 'data-testid': `prompt-${key}` }, p.text)));
    }
    const reply = h('div', { class: 'msg assistant', 'data-testid': `reply-${key}`, 'data-chunks': '0', 'data-done': '0' });
    col.log.append(reply);
    let content = '';
    let chunks = 0;
    const reads = new Set();
    await streamEvents('/v1/chat/completions', { ...request, stream: true, stream_options: { include_usage: true } }, (ev, read) => {
      const delta = ev.choices?.[0]?.delta?.content;
      if (typeof delta === 'string' && delta !== '') {
        content += delta;
        chunks++;
        reads.add(read);
        reply.textContent = content;
        reply.dataset.chunks = String(chunks);
        // Network reads that brought text: more than one means the reply arrived as it was generated.
        reply.dataset.reads = String(reads.size);
      }
      // The finish reason comes on the last choice; the token counts (stream_options.include_usage) in a
      // chunk of their own after it, as OpenAI sends them.
      const finish = ev.choices?.[0]?.finish_reason;
      if (finish) reply.dataset.finish = finish;
      if (ev.usage) reply.dataset.tokens = String(ev.usage.completion_tokens);
      if (reply.dataset.finish) reply.title = `finish: ${reply.dataset.finish}${reply.dataset.tokens ? `, ${reply.dataset.tokens} tokens` : ''}`;
    });
    reply.dataset.done = '1';
    histories.get(key).push({ role: 'user', content: text }, { role: 'assistant', content });
  }

  const send = async () => {
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    const keys = layout();
    // One after the other: the server decodes one reply at a time anyway, and the first streams at once.
    for (const [k, m] of keys) await ask(k, m, text).catch(showError);
  };
  input.addEventListener('keydown', (e) => e.key === 'Enter' && e.ctrlKey && send());

  main.append(
    h('div', { class: 'panel' },
      h('h2', {}, 'Chat'),
      checkpoints.length === 0 ? h('p', { class: 'muted' }, 'No checkpoints under the root.') : null,
      h('div', { class: 'row-actions' }, h('label', {}, 'model ', modelA), h('label', {}, 'beside it ', modelB), h('label', {}, 'template ', template), h('label', {}, 'max tokens ', maxTokens), h('label', {}, 'temperature ', temperature), h('label', {}, showPrompt, ' show prompt')),
      h('div', { class: 'row-actions' }, system),
      input,
      h('div', { class: 'row-actions' }, h('button', { class: 'primary', onclick: send, 'data-testid': 'send' }, 'Send'), h('button', { onclick: () => { columns.clear(); layout(); } }, 'Clear')),
    ),
    cols,
  );
  layout();
}
