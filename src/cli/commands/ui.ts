// `sftkit ui`: the local web dashboard (runs, data, chat, new run) over the folder given as --root.
import type { Command } from 'commander';
import { ConfigError } from '../../errors.ts';
import { startUiServer } from '../../ui/server.ts';

interface UiFlags {
  root: string;
  port: string;
  host: string;
  api_key?: string;
}

export function registerUi(program: Command): void {
  program
    .command('ui')
    .description('a local web dashboard: runs and their live curves, token records, chat, and a new-run form')
    .option('--root <dir>', 'the folder whose runs, records and checkpoints the dashboard shows (and the only one it reads)', '.')
    .option('--port <n>', 'port to listen on (0: any free port)', '7860')
    .option('--host <addr>', 'address to listen on; anything but loopback needs --api_key', '127.0.0.1')
    .option('--api_key <key>', 'require Authorization: Bearer <key> on every API request (open the page at URL/#key=<key>)')
    .action(async (flags: UiFlags) => {
      const port = Number(flags.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port ${flags.port}: an integer in [0, 65535]`, { where: '--port' });
      const ui = await startUiServer({ root: flags.root, host: flags.host, port, ...(flags.api_key ? { apiKey: flags.api_key } : {}) });
      console.log(`sftkit ui: ${ui.url}/${flags.api_key ? '#key=<your key>' : ''}  (root ${ui.root.path}; Ctrl-C to stop)`);
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void ui.close().then(resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
