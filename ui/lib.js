// What the dashboard's pages share: DOM building without innerHTML, the API client that carries the optional
// key, server-sent events, number formatting, errors and the hash route's query.

/** An element with attributes (`on*` become listeners) and children (strings become text nodes). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.where = body?.error?.where;
  }
}

function headers(extra = {}) {
  const key = sessionStorage.getItem('sftkit-key');
  return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
}

/** GET (no body) or POST (JSON body) to the dashboard's API; throws ApiError with the server's message. */
export async function api(path, body) {
  const init = body === undefined ? { headers: headers() } : { method: 'POST', headers: headers({ 'content-type': 'application/json' }), body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

/**
 * A streamed POST (server-sent events): calls onEvent with each `data:` payload parsed, until `[DONE]`, and with
 * the number of the network read it came in (so a page can tell a stream from one late answer).
 */
export async function streamEvents(path, body, onEvent) {
  const res = await fetch(path, { method: 'POST', headers: headers({ 'content-type': 'application/json' }), body: JSON.stringify(body) });
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let finished = false;
  let reads = 0;
  // Read to the end of the body even after [DONE], so the request completes instead of being left open.
  for (;;) {
    let step;
    try {
      step = await reader.read();
    } catch (err) {
      // The reply is whole once [DONE] came: a connection lost after it costs nothing.
      if (finished) return;
      throw err;
    }
    const { done, value } = step;
    if (done) break;
    if (finished) continue;
    reads++;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        const data = line.slice(6);
        if (data === '[DONE]') {
          finished = true;
          break;
        }
        const parsed = JSON.parse(data);
        if (parsed.error) throw new ApiError(500, parsed);
        onEvent(parsed, reads);
      }
    }
  }
}

export function fmt(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  if (typeof x !== 'number') return String(x);
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e6)) return x.toExponential(2);
  return Number.isInteger(x) ? x.toLocaleString('en-US') : x.toFixed(digits);
}

export function duration(s) {
  if (!Number.isFinite(s) || s < 0) return '–';
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function showError(err) {
  const bar = document.getElementById('error');
  bar.textContent = err instanceof Error ? err.message : String(err);
  bar.hidden = false;
  setTimeout(() => (bar.hidden = true), 6000);
}

/** The query part of the hash route (#/runs?run=a). */
export function routeParams() {
  const q = location.hash.indexOf('?');
  return new URLSearchParams(q >= 0 ? location.hash.slice(q + 1) : '');
}
