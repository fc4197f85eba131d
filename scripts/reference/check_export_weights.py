#!/usr/bin/python3
# Loads an HF folder exported by `sftkit convert --reversed` in plain PyTorch (safetensors parsed with
# struct/json, single or sharded) and checks every tensor bit for bit against the original fixture's
# expected.json. Run by hand:  /usr/bin/python3 scripts/reference/check_export_weights.py EXPORTED_DIR FIXTURE_DIR [dtype]
import base64
import json
import os
import struct
import sys

import torch

DTYPES = {'F32': torch.float32, 'BF16': torch.bfloat16, 'F16': torch.float16, 'F64': torch.float64, 'I64': torch.int64, 'BOOL': torch.bool, 'U8': torch.uint8}
SKIP = ('rotary_emb.inv_freq', '.attn.bias', '.attn.masked_bias')


def load_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    assert header.get('__metadata__', {}).get('format') == 'pt', path
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        b, end = e['data_offsets']
        buf = bytearray(data[b:end])
        t = torch.frombuffer(buf, dtype=DTYPES[e['dtype']]) if buf else torch.empty(0, dtype=DTYPES[e['dtype']])
        out[name] = t.reshape(e['shape'])
    return out


def load_folder(d):
    index = os.path.join(d, 'model.safetensors.index.json')
    if os.path.exists(index):
        weight_map = json.load(open(index))['weight_map']
        out = {}
        for shard in sorted(set(weight_map.values())):
            part = load_safetensors(os.path.join(d, shard))
            assert all(weight_map[k] == shard for k in part), shard
            out.update(part)
        assert set(out) == set(weight_map)
        return out
    return load_safetensors(os.path.join(d, 'model.safetensors'))


def main():
    exported, fixture = sys.argv[1], sys.argv[2]
    dtype = DTYPES[sys.argv[3]] if len(sys.argv) > 3 else None
    cfg = json.load(open(os.path.join(exported, 'config.json')))
    gen = json.load(open(os.path.join(exported, 'generation_config.json')))
    assert 'eos_token_id' in gen, 'generation_config.json has no eos_token_id'
    prefix = 'transformer.' if cfg['model_type'] == 'gpt2' else 'model.'
    got = load_folder(exported)
    want = json.load(open(os.path.join(fixture, 'expected.json')))
    tied = cfg.get('tie_word_embeddings', cfg['model_type'] == 'gpt2')
    checked = 0
    for name, e in want.items():
        if name.endswith(SKIP) or (tied and name == 'lm_head.weight'):
            continue
        key = name if name.startswith(prefix) or name == 'lm_head.weight' else prefix + name
        raw = bytearray(base64.b64decode(e['data']))
        ref = torch.frombuffer(raw, dtype=DTYPES[e['dtype']]).reshape(e['shape'])
        if dtype is not None:
            ref = ref.to(dtype)
        t = got.pop(key)
        assert t.dtype == ref.dtype and t.shape == ref.shape, (key, t.dtype, t.shape, ref.dtype, ref.shape)
        assert torch.equal(t.view(torch.uint8) if t.dtype != torch.bool else t, ref.view(torch.uint8) if ref.dtype != torch.bool else ref), key
        checked += 1
    assert not got, 'unexpected tensors: %s' % sorted(got)
    print('ok: %s: %d tensors identical to %s' % (exported, checked, fixture))


if __name__ == '__main__':
    main()
