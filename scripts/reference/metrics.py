#!/usr/bin/python3
"""Writes test/fixtures/eval/metrics.json: reference values of sftkit's generation metrics.

Written from the standard definitions (nltk is not installed on Debian here):
  em, f1   SQuAD v1.1 evaluate script: normalize_answer (lower, drop string.punctuation, drop the articles
           a/an/the, collapse spaces), token-overlap F1, max over references; two empty answers give F1 1
           (SQuAD v2's convention). Each CJK character is a token of its own.
  rouge_l  LCS over tokens (lower-cased letter/digit runs, CJK characters alone), F-measure with beta 1,
           max over references; 0 when either side is empty.
  bleu4    corpus BLEU, uniform weights over clipped 1..4-gram precisions summed over the corpus, brevity
           penalty with the closest reference length (shorter on ties), zero-match orders smoothed with
           epsilon 0.1 (Chen & Cherry method 1), 0 without any unigram match.
Run:  /usr/bin/python3 scripts/reference/metrics.py
"""
import collections
import json
import math
import os
import re
import string

OUT = os.path.join(os.path.dirname(__file__), '..', '..', 'test', 'fixtures', 'eval')
CJK_RANGES = [(0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)]


def is_cjk(ch):
    return any(lo <= ord(ch) <= hi for lo, hi in CJK_RANGES)


def normalize_answer(s):
    s = s.lower()
    s = ''.join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r'\b(a|an|the)\b', ' ', s)
    return ' '.join(s.split())


def answer_tokens(s):
    out = []
    for word in normalize_answer(s).split():
        cur = ''
        for ch in word:
            if is_cjk(ch):
                if cur:
                    out.append(cur)
                cur = ''
                out.append(ch)
            else:
                cur += ch
        if cur:
            out.append(cur)
    return out


def metric_tokens(s):
    out, cur = [], ''
    for ch in s.lower():
        if is_cjk(ch):
            if cur:
                out.append(cur)
            cur = ''
            out.append(ch)
        elif ch.isalnum():
            cur += ch
        else:
            if cur:
                out.append(cur)
            cur = ''
    if cur:
        out.append(cur)
    return out


def em(pred, refs):
    return float(any(answer_tokens(pred) == answer_tokens(r) for r in refs))


def f1(pred, refs):
    p = answer_tokens(pred)
    best = 0.0
    for ref in refs:
        r = answer_tokens(ref)
        if not p or not r:
            best = max(best, float(len(p) == len(r)))
            continue
        same = sum((collections.Counter(p) & collections.Counter(r)).values())
        if same == 0:
            continue
        prec, rec = same / len(p), same / len(r)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
    return table[len(a)][len(b)]


def rouge_l(pred, refs):
    p = metric_tokens(pred)
    best = 0.0
    for ref in refs:
        r = metric_tokens(ref)
        n = lcs(p, r) if p and r else 0
        if n == 0:
            continue
        prec, rec = n / len(p), n / len(r)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def ngram_counts(tokens, n):
    return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu4(preds, refs_list, eps=0.1):
    matches, totals = [0] * 4, [0] * 4
    c = r = 0
    for pred, refs in zip(preds, refs_list):
        p = metric_tokens(pred)
        rs = [metric_tokens(x) for x in refs]
        c += len(p)
        r += min((len(x) for x in rs), key=lambda L: (abs(L - len(p)), L))
        for n in range(1, 5):
            max_ref = collections.Counter()
            for x in rs:
                for g, k in ngram_counts(x, n).items():
                    max_ref[g] = max(max_ref[g], k)
            for g, k in ngram_counts(p, n).items():
                matches[n - 1] += min(k, max_ref[g])
                totals[n - 1] += k
    if c == 0 or matches[0] == 0:
        return 0.0
    log_sum = sum(math.log((m if m > 0 else eps) / max(1, t)) for m, t in zip(matches, totals))
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(log_sum / 4)


EXAMPLES = [
    ('The Eiffel Tower', ['Eiffel tower', 'the tower in Paris']),
    ('Paris, France.', ['Paris']),
    ('an apple a day keeps the doctor away', ['An apple a day keeps doctors away!']),
    ('the cat sat on the mat', ['the cat is sitting on the mat', 'there is a cat on the mat']),
    ('', ['something']),
    ('', ['']),
    ('It was 1969 when Apollo 11 landed on the Moon', ['Apollo 11 landed on the Moon in 1969']),
    ('北京是中国的首都', ['中国的首都是北京']),
    ('Café au lait, s\'il vous plaît', ['café au lait s\'il vous plait']),
    ('yes', ['no']),
    ('The quick brown fox jumps over the lazy dog near the river bank today',
     ['A quick brown fox jumped over a lazy dog by the river bank']),
    ('Machine learning models need data.', ['Machine learning models need lots of data', 'Models need data']),
]


def main():
    rows = []
    for pred, refs in EXAMPLES:
        rows.append({'prediction': pred, 'references': refs, 'em': em(pred, refs), 'f1': f1(pred, refs), 'rouge_l': rouge_l(pred, refs),
                     'tokens': metric_tokens(pred), 'answer_tokens': answer_tokens(pred)})
    preds = [p for p, _ in EXAMPLES]
    refs = [r for _, r in EXAMPLES]
    corpora = {
        'all': list(range(len(EXAMPLES))),
        'short_candidates': [1, 9],            # brevity penalty, no 2..4-gram matches (smoothing)
        'long_candidate': [10],                # candidate longer than its reference
        'two_references': [3],
    }
    bleu = {name: {'indices': idx, 'bleu4': corpus_bleu4([preds[i] for i in idx], [refs[i] for i in idx])} for name, idx in corpora.items()}
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ('em', 'f1', 'rouge_l')}
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'metrics.json'), 'w') as f:
        json.dump({'source': 'scripts/reference/metrics.py', 'examples': rows, 'mean': mean, 'bleu': bleu}, f, ensure_ascii=False, indent=1)
    print(json.dumps(mean), {k: v['bleu4'] for k, v in bleu.items()})


main()
