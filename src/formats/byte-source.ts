// Random access to the bytes of a weight file: positioned reads from a file descriptor (bounded memory,
// one tensor at a time) or from an in-memory buffer (tests, fuzzing); short reads become FormatErrors.
import { closeSync, fstatSync, readSync } from 'node:fs';
import { FormatError } from '../errors.ts';
import { openConfined } from './confined-file.ts';

export interface ByteSource {
  /** Name used in error messages (the file path). */
  readonly name: string;
  readonly size: number;
  /** Exactly `length` bytes at `offset`, or a FormatError naming `what` when they are not all there. */
  read(offset: number, length: number, what: string): Uint8Array;
  close(): void;
}

// fs.readSync reads at most 2 GiB - 1 at a time.
const READ_CHUNK = 1 << 30;

export function checkRange(src: { name: string; size: number }, offset: number, length: number, what: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > src.size) {
    throw new FormatError(`${src.name}: ${what} needs bytes [${offset}, ${offset + length}) but the file has ${src.size} bytes`, {
      where: src.name,
      hint: 'the file is truncated or corrupt; download it again',
    });
  }
}

/**
 * A weight file of a model or checkpoint folder: never through a link leading out of the folder, and a folder
 * standing where the file should be is a FormatError naming it (a bare EISDIR otherwise surfaces at the first read).
 */
export function openFileSource(path: string): ByteSource {
  const fd = openConfined(path);
  const size = fstatSync(fd).size;
  let open = true;
  return {
    name: path,
    size,
    read(offset, length, what) {
      checkRange(this, offset, length, what);
      const out = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const got = readSync(fd, out, done, Math.min(READ_CHUNK, length - done), offset + done);
        if (got === 0) throw new FormatError(`${path}: ${what}: file ended early (it shrank while being read)`, { where: path });
        done += got;
      }
      return out;
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

export function bufferSource(name: string, bytes: Uint8Array): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    read(offset, length, what) {
      checkRange(this, offset, length, what);
      return bytes.subarray(offset, offset + length);
    },
    close() {},
  };
}
