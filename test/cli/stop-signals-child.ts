// Child process of stop-signals.test.ts: installs the stop handlers with the time limit given as argv[2],
// says "ready", and on a stop signal blocks its event loop as a long step or save would.
import { StopWatch } from '../../src/cli/stop-signals.ts';

new StopWatch({
  onStop: (sig) => {
    console.log(`stopping on ${sig}`);
    setImmediate(() => {
      const end = Date.now() + 30_000;
      while (Date.now() < end);
    });
  },
  print: (line) => console.log(line),
  timeoutSeconds: Number(process.argv[2]),
});
console.log('ready');
setInterval(() => {}, 1000);
