#!/usr/bin/python3
# Golden data for test/data: the Alpaca conversion and the vicuna QA tokenization of small fixtures, made with
# Debian's python3-sentencepiece. Run from the repository root: /usr/bin/python3 scripts/reference/data_golden.py
#
# Two independent computations are cross-checked here:
#  * the DESIGN.md contract (BOS once; each round encoded alone + EOS; prompt masked by the common token prefix);
#  * an emulation of MindFormers' llama_preprocess (the whole vicuna text with "</s>" read as EOS, as the slow
#    LlamaTokenizer does, and its round_len / instruction_len - 2 masking).
# They must agree on every sample whose text holds no "</s>" (where MindFormers would read user text as EOS).
import json
import sentencepiece as spm

FIX = 'test/fixtures/data'
MODEL = 'test/fixtures/tokenizer/bpe.model'
IGNORE = -100
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
PROMPT_NO_INPUT = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.\n\n"
                   "### Instruction:\n{instruction}\n\n### Response:")

sp = spm.SentencePieceProcessor(model_file=MODEL)
BOS, EOS = sp.bos_id(), sp.eos_id()


def alpaca_convert(records):
    out = []
    for i, ex in enumerate(records):
        prompt = PROMPT_INPUT.format_map(ex) if ex.get('input', '') != '' else PROMPT_NO_INPUT.format_map(ex)
        out.append({'id': str(i + 1), 'conversations': [{'from': 'human', 'value': prompt}, {'from': 'gpt', 'value': ex['output']}]})
    return out


def lcp(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def contract(system, rounds):
    ids, labels = [BOS], [IGNORE]
    for i, (user, reply) in enumerate(rounds):
        prefix = (system + ' ' if i == 0 else '') + 'USER: ' + user + ' ASSISTANT:'
        full = sp.encode(prefix + ' ' + reply)
        masked = lcp(sp.encode(prefix), full)
        full = full + [EOS]
        ids += full
        labels += [IGNORE] * masked + full[masked:]
    return ids, labels


def mindformers(rounds):
    text = SYSTEM + ' ' + ''.join('USER: ' + u + ' ASSISTANT: ' + a + '</s>' for u, a in rounds)

    def tok(t):  # slow LlamaTokenizer (legacy): "</s>" is split out as EOS, each chunk encoded alone
        ids = [BOS]
        for j, chunk in enumerate(t.split('</s>')):
            if j > 0:
                ids.append(EOS)
            if chunk:
                ids += sp.encode(chunk)
        return ids

    ids = tok(text)
    target = list(ids)
    sep = ' ASSISTANT: '
    cur = 1
    target[:cur] = [IGNORE] * cur
    for rou in text.split('</s>'):
        if rou == '':
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        parts[0] += sep
        round_len = len(tok(rou))
        instruction_len = len(tok(parts[0])) - 2
        target[cur:cur + instruction_len] = [IGNORE] * instruction_len
        cur += round_len
    target[cur:] = [IGNORE] * (len(target) - cur)
    assert cur == len(ids), (cur, len(ids))
    return ids, target


def conversation(rec):
    if 'messages' in rec:
        msgs = [(m['role'], m['content']) for m in rec['messages']]
    else:
        roles = {'human': 'user', 'gpt': 'assistant', 'system': 'system'}
        msgs = [('system', rec['system'])] if 'system' in rec else []
        msgs += [(roles[m['from']], m['value']) for m in rec['conversations']]
    system = None
    if msgs and msgs[0][0] == 'system':
        system = msgs[0][1]
        msgs = msgs[1:]
    rounds = [(msgs[i][1], msgs[i + 1][1]) for i in range(0, len(msgs), 2)]
    return system, rounds


def golden(records):
    out = []
    for rec in records:
        system, rounds = conversation(rec)
        ids, labels = contract(system if system is not None else SYSTEM, rounds)
        entry = {'ids': ids, 'labels': labels}
        if system is None and not any('</s>' in u or '</s>' in a for u, a in rounds):
            mf_ids, mf_labels = mindformers(rounds)
            assert (mf_ids, mf_labels) == (ids, labels), rec
            entry['mindformers_agrees'] = True
        else:
            entry['mindformers_agrees'] = False
        out.append(entry)
    return out


def main():
    with open(f'{FIX}/alpaca_small.json', encoding='utf-8') as f:
        alpaca = json.load(f)
    converted = alpaca_convert(alpaca)
    converted_text = json.dumps(converted, ensure_ascii=False, indent=2)
    with open(f'{FIX}/conversations.jsonl', encoding='utf-8') as f:
        convs = [json.loads(line) for line in f if line.strip()]
    result = {
        'tokenizer': MODEL,
        'bos_id': BOS,
        'eos_id': EOS,
        'alpaca_converted': converted_text,
        'alpaca_vicuna': golden(converted),
        'conversations_vicuna': golden(convs),
    }
    with open(f'{FIX}/golden_vicuna.json', 'w', encoding='utf-8') as f:
        json.dump(result, f, ensure_ascii=False)
        f.write('\n')
    agree = sum(e['mindformers_agrees'] for e in result['alpaca_vicuna'] + result['conversations_vicuna'])
    print(f'wrote {FIX}/golden_vicuna.json; MindFormers emulation agrees on {agree} samples')


if __name__ == '__main__':
    main()
