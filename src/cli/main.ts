// Entry point of the `sftkit` command: registers every sub-command and prints errors without stacks.
import { Command } from 'commander';
import { registerCommands } from './commands.ts';
import { printError } from './errors.ts';

const program = new Command();
program
  .name('sftkit')
  .description('Supervised fine-tuning of decoder-only LLMs on Node.js.')
  .option('--debug', 'print stack traces of errors')
  .showHelpAfterError();
registerCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  printError(err, program.opts<{ debug?: boolean }>().debug === true || process.argv.includes('--debug'));
  process.exitCode = 1;
}
