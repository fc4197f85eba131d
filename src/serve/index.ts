// The OpenAI-compatible server as a library: build an engine over a loaded model, start listening.
export { createEngine, modelPositions } from './engine.ts';
export type { EngineOptions } from './engine.ts';
export { RequestError } from './errors.ts';
export { ModelRegistry } from './registry.ts';
export type { AdapterSpec, ServedModel } from './registry.ts';
export { loadServedAdapter } from './adapters.ts';
export { BatchScheduler } from './scheduler.ts';
export type { FinishReason, SchedulerOptions, SchedulerStats, SequenceSpec } from './scheduler.ts';
export { answer, startServer } from './server.ts';
export { CHAT_ENDPOINT, COMPLETIONS_ENDPOINT } from './request.ts';
export type { RunningServer, ServeEngine, ServerOptions } from './server.ts';
