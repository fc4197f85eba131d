// Checked writes: every byte count is honoured, a failing write (disk full, read-only folder) is a FileError that
// names the file, and whole files appear by temp-then-rename, so a failure never leaves a truncated output behind.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FileError } from '../errors.ts';

const REASONS: Record<string, { why: string; hint: string }> = {
  ENOSPC: { why: 'no space left on the device', hint: 'free disk space (or choose another output folder) and run again' },
  EDQUOT: { why: 'the disk quota is exhausted', hint: 'free space within your quota and run again' },
  EFBIG: { why: 'the file is larger than this process may write', hint: 'raise the file size limit (ulimit -f) or write less' },
  EROFS: { why: 'the file system is read-only', hint: 'choose an output folder on a writable file system' },
  EACCES: { why: 'permission denied', hint: 'choose an output folder you may write to' },
  EPERM: { why: 'operation not permitted', hint: 'choose an output folder you may write to' },
  ENOENT: { why: 'its folder does not exist', hint: 'create the folder first, or check the path' },
  EISDIR: { why: 'a folder is in the way', hint: 'remove the folder or choose another name' },
};

/** A FileError for a failed file-system call on `path`, saying what the errno means and what to do. */
export function fileError(err: unknown, path: string, action: string): FileError {
  if (err instanceof FileError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const known = REASONS[code];
  const why = known === undefined ? (err as Error).message ?? String(err) : `${known.why} (${code})`;
  return new FileError(`${path}: cannot ${action}: ${why}`, { where: path, ...(known === undefined ? {} : { hint: known.hint }) });
}

/** Writes all of `data` at the descriptor's position; a short or failed write is a FileError naming `path`. */
export function writeAllSync(fd: number, data: Uint8Array, path: string): void {
  let done = 0;
  while (done < data.byteLength) {
    let n: number;
    try {
      n = writeSync(fd, data, done, data.byteLength - done);
    } catch (err) {
      throw fileError(err, path, 'write');
    }
    // A write that makes no progress would loop forever; the kernel reports a full disk this way on some systems.
    if (n <= 0) throw fileError(Object.assign(new Error('no bytes written'), { code: 'ENOSPC' }), path, 'write');
    done += n;
  }
}

/** Creates (or truncates) `path` for writing; a failure is a FileError naming it. */
export function openForWrite(path: string): number {
  try {
    return openSync(path, 'w');
  } catch (err) {
    throw fileError(err, path, 'create');
  }
}

/**
 * fsync then close: a delayed-allocation file system (or NFS) may report a full disk only here, and a write that
 * was never reported must not pass for a complete file.
 */
export function syncAndClose(fd: number, path: string): void {
  try {
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    throw fileError(err, path, 'flush');
  }
  try {
    closeSync(fd);
  } catch (err) {
    throw fileError(err, path, 'close');
  }
}

export interface WrittenBytes {
  sha256: string;
  bytes: number;
}

/**
 * Writes a whole file through a temp file next to it (fsync'd, then renamed over `path`), so readers see the old
 * file or the complete new one; on any failure the temp file is removed and the error names `path`.
 */
export function writeFileAtomicSync(path: string, content: string | Uint8Array): WrittenBytes {
  const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx');
  } catch (err) {
    throw fileError(err, path, 'create');
  }
  try {
    writeAllSync(fd, data, path);
    try {
      fsyncSync(fd);
    } catch (err) {
      throw fileError(err, path, 'flush');
    }
    closeSync(fd);
    fd = -1;
    try {
      renameSync(tmp, path);
    } catch (err) {
      throw fileError(err, path, 'move into place');
    }
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  return { sha256: createHash('sha256').update(data).digest('hex'), bytes: data.byteLength };
}
