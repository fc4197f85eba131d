// Public surface of src/data: alpaca conversion, conversation readers, templates, QA tokenization, token records, loader.
export { alpacaPrompt, convertAlpacaFile, convertAlpacaRecords, type ConvertedSample } from './alpaca.ts';
export { parseConversation, type Conversation, type Round } from './conversation.ts';
export { expandGlob } from './glob.ts';
export { HfTemplateEncoder } from './hf-template.ts';
export { readJsonRecords, streamJsonRecords, type SourcedRecord } from './json-input.ts';
export { MIX_STRATEGIES, mixSources, parseInputSpec, textParagraphs, type InputSource, type MixStrategy } from './sources.ts';
export { commonPrefix, encodeParts, IGNORE_ID, PartEncoder, type ChatEncoder, type EncodedSample } from './qa-tokenize.ts';
export { chatEncoder, modelMaxPositions, padIdOf, paragraphs, preprocess, preprocessToMindRecord, type DatasetType, type PreprocessOptions, type PreprocessResult } from './preprocess.ts';
export { openRecords, readRecordsManifest, Records, RecordsWriter, validateRecordsFor, RECORDS_MAGIC, RECORDS_VERSION, type RecordsManifest } from './records.ts';
export { validateRowsFor, type RowBuffers, type RowStore, type RowStoreInfo, type RowTokenizer, type TrainingSetup } from './row-store.ts';
export { emptyReport, formatReport, type PreprocessReport } from './report.ts';
export { PART_TEMPLATES, TEMPLATE_NAMES, VICUNA_SYSTEM, type TemplateName } from './templates.ts';
export { DataLoader, epochOrder, type Batch, type LoaderCursor, type LoaderOptions } from './loader.ts';
