// The list of sub-commands; each lives in its own file under src/cli/commands/.
import type { Command } from 'commander';
import { registerChat } from './commands/chat.ts';
import { registerConvert } from './commands/convert.ts';
import { registerData } from './commands/data.ts';
import { registerDemo } from './commands/demo.ts';
import { registerDownload } from './commands/download.ts';
import { registerRun } from './commands/run.ts';
import { registerServe } from './commands/serve.ts';
import { registerLaunch } from './commands/launch.ts';
import { registerTokenize } from './commands/tokenize.ts';
import { registerUi } from './commands/ui.ts';

export function registerCommands(program: Command): void {
  registerDemo(program);
  registerDownload(program);
  registerConvert(program);
  registerTokenize(program);
  registerData(program);
  registerRun(program);
  registerChat(program);
  registerLaunch(program);
  registerServe(program);
  registerUi(program);
}
