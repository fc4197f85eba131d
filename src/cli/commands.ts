// The list of sub-commands; each lives in its own file under src/cli/commands/.
import type { Command } from 'commander';
import { registerDemo } from './commands/demo.ts';
import { registerTokenize } from './commands/tokenize.ts';

export function registerCommands(program: Command): void {
  registerDemo(program);
  registerTokenize(program);
}
