// `sftkit ui`'s web server (Node's own http): the page's static files shipped in the package (ui/, and uPlot's
// dist files from node_modules; nothing is fetched at run time), the JSON API of the Runs, Data, Chat and New-run
// pages, and /v1/chat/completions. Loopback only unless an API key guards it; requests for another Host (DNS
// rebinding) or from another Origin are refused, and every path the API reads stays under --root.
import { timingSafeEqual } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { ConfigError } from '../errors.ts';
import { readConfined } from '../formats/confined-file.ts';
import { ChatRoute } from './chat-route.ts';
import { RunLauncher, configFormSchema, planRun } from './config-form.ts';
import { DataViews, listRecords } from './data-view.ts';
import { HttpError, errorAnswer, intParam, param, readJsonBody, sendJson } from './http.ts';
import { UiRoot } from './root-paths.ts';
import { UI_LOG_FILE, listRuns, readMetrics, runDetail } from './runs.ts';

/** This package's root (src/ui/ or dist/ui/ are two levels below it). */
const PACKAGE_ROOT = join(import.meta.dirname, '..', '..');
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
};

type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export interface UiServerOptions {
  root: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Required to listen on anything but loopback; then every API request carries `Authorization: Bearer <key>`. */
  apiKey?: string;
}

export interface UiServer {
  server: Server;
  url: string;
  root: UiRoot;
  close(): Promise<void>;
}

/** The static files: a fixed table built at start-up, so no request path ever reaches the file system. */
function staticFiles(): Map<string, string> {
  const files = new Map<string, string>();
  const dir = join(PACKAGE_ROOT, 'ui');
  for (const name of readdirSync(dir)) if (TYPES[extname(name)]) files.set(`/static/${name}`, join(dir, name));
  files.set('/', join(dir, 'index.html'));
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot/package.json'));
  files.set('/vendor/uplot.esm.js', join(uplot, 'dist', 'uPlot.esm.js'));
  files.set('/vendor/uplot.min.css', join(uplot, 'dist', 'uPlot.min.css'));
  return files;
}

function listCheckpoints(root: UiRoot): { id: string; run: string | null }[] {
  const out: { id: string; run: string | null }[] = [];
  root.walk(root.path, 6, (dir, entries) => {
    const names = new Set(entries.filter((e) => e.isFile()).map((e) => e.name));
    const model = names.has('config.json') && (names.has('model.safetensors') || names.has('model.safetensors.index.json') || names.has('pytorch_model.bin'));
    // A LoRA run's checkpoint: its adapter, and its base named in sftkit.json (chat loads the base with it).
    const adapter = names.has('adapter_config.json') && names.has('adapter_model.safetensors') && names.has('sftkit.json');
    if (!model && !adapter) return false;
    const id = root.relative(dir);
    const m = /^(.*)\/checkpoint\/[^/]+$/.exec(id);
    out.push({ id, run: m ? (m[1] as string) : null });
    return true;
  });
  return out;
}

export async function startUiServer(opts: UiServerOptions): Promise<UiServer> {
  const host = opts.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host) && !opts.apiKey) {
    throw new ConfigError(`--host ${host}: the dashboard starts runs and reads files under its root; listening beyond this machine needs --api_key`, {
      where: '--host',
      hint: 'keep the default 127.0.0.1 (use an SSH tunnel), or pass --api_key KEY',
    });
  }
  const root = new UiRoot(opts.root);
  const files = staticFiles();
  const data = new DataViews(root);
  const chat = new ChatRoute(root);
  const launcher = new RunLauncher(root, join(PACKAGE_ROOT, 'bin', 'sftkit.js'));
  const key = opts.apiKey ? Buffer.from(opts.apiKey) : null;
  let port = 0;

  const allowedHost = (h: string | undefined): boolean => {
    if (key !== null && !LOOPBACK.has(host)) return true;
    if (h === undefined) return false;
    return [...LOOPBACK].some((name) => h === `${name.includes(':') ? `[${name}]` : name}:${port}`);
  };

  /** The API: one entry per method and path (HEAD is answered as GET). */
  const routes: Record<string, Route> = {
    'GET /api/info': (_req, res) => sendJson(res, 200, { root: root.path, auth: key !== null }),
    'GET /api/runs': (_req, res) => {
      const runs = listRuns(root).map((r) => ({ ...r, started: launcher.status(r.id) }));
      for (const s of launcher.all()) if (!runs.some((r) => r.id === s.name)) runs.push({ id: s.name, hasMetrics: false, checkpoints: 0, updated: 0, started: s });
      sendJson(res, 200, { runs });
    },
    'GET /api/runs/detail': (_req, res, url) => {
      const id = param(url, 'run');
      sendJson(res, 200, { ...runDetail(root, id), status: launcher.status(root.relative(root.resolve(id))) });
    },
    'GET /api/runs/metrics': (_req, res, url) => sendJson(res, 200, readMetrics(root, param(url, 'run'), intParam(url, 'offset', 0))),
    'GET /api/runs/log': (_req, res, url) => {
      const dir = root.resolve(param(url, 'run'));
      let text = '';
      try {
        text = readConfined(join(dir, UI_LOG_FILE), { root: root.path }).toString('utf8').slice(-16_000);
      } catch {
        text = '';
      }
      sendJson(res, 200, { log: text });
    },
    'GET /api/config-schema': (_req, res) => sendJson(res, 200, configFormSchema()),
    'POST /api/runs/preview': async (req, res) => {
      // Checking values is the preview's job: an invalid form is a 200 answer carrying the error and its field.
      const body = await readJsonBody(req);
      let plan;
      try {
        plan = planRun(root, body);
      } catch (err) {
        const { status, body: answer } = errorAnswer(err);
        if (status >= 500) throw err;
        return sendJson(res, 200, { valid: false, ...answer });
      }
      sendJson(res, 200, { valid: true, name: plan.name, yaml: plan.yaml, command: plan.command, overrides_command: plan.overridesCommand });
    },
    'POST /api/runs': async (req, res) => {
      const plan = planRun(root, await readJsonBody(req));
      const started = launcher.start(plan);
      sendJson(res, 201, { run: plan.name, started, yaml: plan.yaml, command: plan.command });
    },
    'POST /api/runs/stop': async (req, res) => {
      const body = (await readJsonBody(req)) as { run?: unknown } | null;
      if (typeof body?.run !== 'string') throw new HttpError(400, 'expected {"run": name}');
      sendJson(res, 200, { stopping: launcher.stop(body.run) });
    },
    'GET /api/records': (_req, res) => sendJson(res, 200, { records: listRecords(root) }),
    'GET /api/records/rows': (_req, res, url) => {
      const id = param(url, 'dir');
      const r = data.records(id);
      const list = data.rowCounts(id, intParam(url, 'from', 0), Math.min(200, intParam(url, 'count', 50)));
      sendJson(res, 200, { rows: r.rows, seq_length: r.seqLength, manifest: { ...r.manifest, shards: undefined }, tokenizer: data.tokenizerFor(r) !== null, list });
    },
    'POST /api/records/tokenize': async (req, res) => sendJson(res, 200, await data.tokenize(await readJsonBody(req))),
    'GET /api/records/row': (_req, res, url) => sendJson(res, 200, data.rowView(param(url, 'dir'), intParam(url, 'row', 0))),
    'GET /api/records/search': (_req, res, url) => sendJson(res, 200, { matches: data.search(param(url, 'dir'), param(url, 'q'), Math.min(200, intParam(url, 'limit', 50))) }),
    'GET /api/checkpoints': (_req, res) => sendJson(res, 200, { checkpoints: listCheckpoints(root) }),
    'GET /v1/models': (_req, res) => sendJson(res, 200, { object: 'list', data: listCheckpoints(root).map((c) => ({ id: c.id, object: 'model', created: 0, owned_by: 'sftkit' })) }),
    'GET /api/file': (_req, res, url) => {
      const rel = param(url, 'path');
      const type = TYPES[extname(rel).toLowerCase()];
      if (!type?.startsWith('image/')) throw new HttpError(403, `${rel}: only images (png, svg, jpg) are served`);
      const bytes = readConfined(root.resolve(rel), { root: root.path });
      res.writeHead(200, { 'content-type': type, 'content-length': bytes.length, 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'", 'x-content-type-options': 'nosniff' });
      res.end(bytes);
    },
    'POST /api/chat/prompt': (req, res) => chat.handlePrompt(req, res),
    'POST /v1/chat/completions': (req, res) => chat.handle(req, res),
  };

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      if (!allowedHost(req.headers.host)) throw new HttpError(421, `Host ${JSON.stringify(req.headers.host)} is not this dashboard's address`);
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${req.headers.host}`) throw new HttpError(403, `requests from ${origin} are refused`);
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname.startsWith('/api/') || url.pathname.startsWith('/v1/')) {
        if (key !== null) {
          const got = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
          if (got.length !== key.length || !timingSafeEqual(got, key)) throw new HttpError(401, 'missing or wrong API key (Authorization: Bearer <key>)');
        }
        const route = routes[`${req.method === 'HEAD' ? 'GET' : req.method} ${url.pathname}`];
        if (route === undefined) throw new HttpError(404, `no route ${req.method} ${url.pathname}`);
        return await route(req, res, url);
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} is not served here`);
      const file = files.get(url.pathname);
      if (file === undefined) throw new HttpError(404, `no file ${url.pathname}`);
      const body = readFileSync(file);
      res.writeHead(200, {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
        'content-length': body.length,
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
        // The page runs only its own scripts and talks only to this server.
        'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      const { status, body } = errorAnswer(err);
      if (res.headersSent) {
        // A stream already under way: say so in the stream and end it.
        res.end(`data: ${JSON.stringify(body)}\n\n`);
        return;
      }
      sendJson(res, status, body);
    }
  };

  const server = createServer((req, res) => void handler(req, res));
  // Generation blocks the event loop for seconds; with Node's 5 s keep-alive an idle connection's timer then
  // fires just as the page reuses it, and the request dies with the socket. A minute keeps that race away.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 7860, host, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    url: `http://${shownHost}:${port}`,
    root,
    close: async () => {
      await launcher.stopAll();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      data.close();
      chat.close();
    },
  };
}
