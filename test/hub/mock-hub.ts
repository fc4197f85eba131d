// A stand-in for the Hugging Face hub on 127.0.0.1: model info, the recursive tree, `resolve` with LFS
// redirects to a second "CDN" server, Range requests, auth, and faults (dropped bodies, corrupt or missing files).
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MockFile {
  path: string;
  content: Buffer;
  /** Served as an LFS object: sha256 oid, 302 to the CDN. */
  lfs?: boolean;
}

export interface MockRepo {
  id: string;
  /** Branch or tag → commit hash. */
  refs: Record<string, string>;
  /** Commit hash → its files. */
  commits: Record<string, MockFile[]>;
  /** When set, every endpoint of this repo wants `Authorization: Bearer <token>` (401 otherwise). */
  token?: string;
  /** A valid token that has not accepted the gate: 403 GatedRepo. */
  gatedToken?: string;
}

export interface RecordedRequest {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  range: string | undefined;
  authorization: string | undefined;
}

export interface Faults {
  /** Repo path → send only this many body bytes, then cut the connection; `times` requests are cut. */
  drop: Map<string, { bytes: number; times: number }>;
  /** Repo paths served with one byte flipped. */
  corrupt: Set<string>;
  /** Repo paths listed in the tree but answered 404 by resolve. */
  missing: Set<string>;
  /** Repo paths whose server ignores Range headers (answers 200 with the whole body). */
  ignoreRange: Set<string>;
  /** Tree entries injected as is (unsafe names and the like). */
  extraTreeEntries: Array<Record<string, unknown>>;
}

export interface MockHub {
  endpoint: string;
  cdn: string;
  requests: RecordedRequest[];
  faults: Faults;
  /** Page size of the tree listing (a Link header points to the next page). */
  treePageSize: number;
  close(): Promise<void>;
}

export function gitBlobSha1(content: Buffer): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

export function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

export function etagOf(file: MockFile): string {
  return file.lfs ? sha256(file.content) : gitBlobSha1(file.content);
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Send `content` honouring `Range: bytes=N-` / `bytes=N-M`, possibly cut short or corrupted. */
function sendBody(req: IncomingMessage, res: ServerResponse, content: Buffer, headers: Record<string, string>, fault: { corrupt: boolean; dropAfter: number | undefined; ignoreRange?: boolean }): void {
  let body = content;
  if (fault.corrupt && body.length > 0) {
    body = Buffer.from(body);
    body[body.length >> 1] = (body[body.length >> 1] ?? 0) ^ 0xff;
  }
  let status = 200;
  const range = fault.ignoreRange ? null : /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (range) {
    const start = Number(range[1]);
    const end = range[2] ? Math.min(Number(range[2]), body.length - 1) : body.length - 1;
    if (start >= body.length) {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${body.length}` });
      res.end();
      return;
    }
    headers = { ...headers, 'content-range': `bytes ${start}-${end}/${body.length}` };
    body = body.subarray(start, end + 1);
    status = 206;
  }
  res.writeHead(status, { ...headers, 'content-length': String(body.length), 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  if (fault.dropAfter !== undefined && fault.dropAfter < body.length) {
    res.write(body.subarray(0, fault.dropAfter), () => setTimeout(() => res.socket?.destroy(), 20));
    return;
  }
  res.end(body);
}

export async function startMockHub(repos: MockRepo[]): Promise<MockHub> {
  const byId = new Map(repos.map((r) => [r.id, r]));
  const blobs = new Map<string, { file: MockFile }>();
  for (const r of repos) for (const files of Object.values(r.commits)) for (const f of files) if (f.lfs) blobs.set(sha256(f.content), { file: f });
  const requests: RecordedRequest[] = [];
  const faults: Faults = { drop: new Map(), corrupt: new Set(), missing: new Set(), ignoreRange: new Set(), extraTreeEntries: [] };

  const record = (server: 'hub' | 'cdn', req: IncomingMessage): void => {
    requests.push({ server, method: req.method ?? '', path: decodeURIComponent((req.url ?? '').split('?')[0] ?? ''), range: req.headers.range, authorization: req.headers.authorization });
  };
  const takeDrop = (path: string): number | undefined => {
    const d = faults.drop.get(path);
    if (d === undefined || d.times <= 0) return undefined;
    d.times--;
    return d.bytes;
  };

  /** 401/403 for repos with a token, else undefined (allowed). */
  const denied = (repo: MockRepo, req: IncomingMessage, res: ServerResponse): boolean => {
    if (repo.token === undefined) return false;
    const auth = req.headers.authorization;
    if (repo.gatedToken !== undefined && auth === `Bearer ${repo.gatedToken}`) {
      json(res, 403, { error: `Access to model ${repo.id} is restricted.` }, { 'x-error-code': 'GatedRepo' });
      return true;
    }
    if (auth !== `Bearer ${repo.token}`) {
      json(res, 401, { error: 'Invalid username or password.' }, { 'x-error-code': 'RepoNotFound' });
      return true;
    }
    return false;
  };

  const commitOf = (repo: MockRepo, rev: string): string | undefined => (repo.commits[rev] !== undefined ? rev : repo.refs[rev]);

  const cdnServer = createServer((req, res) => {
    record('cdn', req);
    const m = /^\/blobs\/([0-9a-f]{64})$/.exec(req.url ?? '');
    const blob = m ? blobs.get(m[1] as string) : undefined;
    if (blob === undefined) {
      res.writeHead(404).end();
      return;
    }
    // A CDN's own etag (an md5-like value) must never become the cache's blob name.
    sendBody(req, res, blob.file.content, { etag: '"cdn-0123456789abcdef"' }, { corrupt: faults.corrupt.has(blob.file.path), dropAfter: takeDrop(blob.file.path), ignoreRange: faults.ignoreRange.has(blob.file.path) });
  });
  const cdn = await listen(cdnServer);

  let endpoint = '';
  const hubServer = createServer((req, res) => {
    record('hub', req);
    const url = new URL(req.url ?? '/', endpoint);
    const path = url.pathname;

    const api = /^\/api\/models\/(.+?)\/(revision|tree)\/([^/]+)$/.exec(path);
    if (api) {
      const [, id, kind, rawRev] = api as unknown as [string, string, string, string];
      const repo = byId.get(id);
      if (repo === undefined) return json(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
      if (denied(repo, req, res)) return;
      const commit = commitOf(repo, decodeURIComponent(rawRev));
      if (commit === undefined) return json(res, 404, { error: `Invalid rev id: ${rawRev}` }, { 'x-error-code': 'RevisionNotFound' });
      const files = repo.commits[commit] ?? [];
      if (kind === 'revision') {
        return json(res, 200, {
          _id: `id-${repo.id}`,
          id: repo.id,
          sha: commit,
          private: repo.token !== undefined,
          gated: false,
          downloads: 0,
          likes: 0,
          lastModified: '2024-01-01T00:00:00.000Z',
          siblings: files.map((f) => ({ rfilename: f.path })),
        });
      }
      const dirs = [...new Set(files.flatMap((f) => f.path.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))))];
      const entries: Array<Record<string, unknown>> = [
        ...dirs.map((d) => ({ type: 'directory', oid: '0'.repeat(40), size: 0, path: d })),
        ...files.map((f) => ({
          type: 'file',
          oid: f.lfs ? gitBlobSha1(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(f.content)}\nsize ${f.content.length}\n`)) : gitBlobSha1(f.content),
          size: f.content.length,
          path: f.path,
          ...(f.lfs ? { lfs: { oid: sha256(f.content), size: f.content.length, pointerSize: 134 } } : {}),
        })),
        ...faults.extraTreeEntries,
      ];
      const cursor = Number(url.searchParams.get('cursor') ?? '0');
      const page = entries.slice(cursor, cursor + hub.treePageSize);
      const headers: Record<string, string> = {};
      if (cursor + hub.treePageSize < entries.length) {
        const next = new URL(url);
        next.searchParams.set('cursor', String(cursor + hub.treePageSize));
        headers['link'] = `<${next.href}>; rel="next"`;
      }
      return json(res, 200, page, headers);
    }

    const resolve = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (resolve) {
      const [, id, rawRev, rawFile] = resolve as unknown as [string, string, string, string];
      const repo = byId.get(id);
      if (repo === undefined) return json(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
      if (denied(repo, req, res)) return;
      const commit = commitOf(repo, decodeURIComponent(rawRev));
      if (commit === undefined) return json(res, 404, { error: 'Revision not found' }, { 'x-error-code': 'RevisionNotFound' });
      const filePath = rawFile.split('/').map(decodeURIComponent).join('/');
      const file = (repo.commits[commit] ?? []).find((f) => f.path === filePath);
      if (file === undefined || faults.missing.has(filePath)) return json(res, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound' });
      if (file.lfs) {
        const oid = sha256(file.content);
        res.writeHead(302, {
          location: `${cdn}/blobs/${oid}`,
          'x-repo-commit': commit,
          'x-linked-etag': `"${oid}"`,
          'x-linked-size': String(file.content.length),
          etag: `W/"${gitBlobSha1(Buffer.from('pointer'))}"`,
          'content-length': '0',
        });
        res.end();
        return;
      }
      return sendBody(req, res, file.content, { etag: `"${gitBlobSha1(file.content)}"`, 'x-repo-commit': commit }, { corrupt: faults.corrupt.has(filePath), dropAfter: takeDrop(filePath) });
    }
    json(res, 404, { error: 'not found' });
  });
  endpoint = await listen(hubServer);

  const hub: MockHub = {
    endpoint,
    cdn,
    requests,
    faults,
    treePageSize: 1000,
    async close() {
      for (const s of [hubServer, cdnServer]) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
  return hub;
}
