#!/usr/bin/python3
# Writes the tiny HF-format model folders of test/fixtures/weights/ with real PyTorch (torch.save zip .bin,
# single and sharded, and sharded safetensors written by hand), plus `expected.json` dumps of every tensor
# that the TypeScript conversion tests compare against bit for bit. Run: /usr/bin/python3 scripts/reference/make_weights.py
import base64
import collections
import hashlib
import json
import os
import shutil
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'fixtures', 'weights')
SAFETENSORS_DTYPES = {torch.float32: 'F32', torch.bfloat16: 'BF16', torch.float16: 'F16', torch.int64: 'I64', torch.bool: 'BOOL', torch.uint8: 'U8'}
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors):
    header, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0
    for name, t in tensors.items():
        b = raw_bytes(t)
        header[name] = {'dtype': SAFETENSORS_DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def write_sharded(folder, sd, nshards, kind):
    names = list(sd.keys())
    per = (len(names) + nshards - 1) // nshards
    weight_map = {}
    for i in range(nshards):
        part = collections.OrderedDict((n, sd[n]) for n in names[i * per:(i + 1) * per])
        if kind == 'bin':
            fname = 'pytorch_model-%05d-of-%05d.bin' % (i + 1, nshards)
            torch.save(part, os.path.join(folder, fname))
        else:
            fname = 'model-%05d-of-%05d.safetensors' % (i + 1, nshards)
            write_safetensors(os.path.join(folder, fname), part)
        weight_map.update({n: fname for n in part})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    index = 'pytorch_model.bin.index.json' if kind == 'bin' else 'model.safetensors.index.json'
    with open(os.path.join(folder, index), 'w') as f:
        json.dump({'metadata': {'total_size': total}, 'weight_map': weight_map}, f, indent=2)


def dump_expected(folder, sd):
    """Every tensor as contiguous bytes, and the sha256 of PyTorch's own casts to bf16 and f16."""
    out = {}
    for name, t in sd.items():
        e = {'dtype': SAFETENSORS_DTYPES[t.dtype], 'shape': list(t.shape), 'data': base64.b64encode(raw_bytes(t)).decode()}
        if t.is_floating_point():
            for d, key in ((torch.bfloat16, 'bf16_sha256'), (torch.float16, 'f16_sha256'), (torch.float32, 'f32_sha256')):
                e[key] = hashlib.sha256(raw_bytes(t.to(d))).hexdigest()
        out[name] = e
    with open(os.path.join(folder, 'expected.json'), 'w') as f:
        json.dump(out, f, indent=1, sort_keys=True)


def write_folder(name, config, tokenizer_files=True):
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    if tokenizer_files:
        with open(os.path.join(folder, 'tokenizer_config.json'), 'w') as f:
            json.dump({'bos_token': '<s>', 'eos_token': '</s>', 'chat_template': CHAT_TEMPLATE}, f, indent=2)
        with open(os.path.join(folder, 'special_tokens_map.json'), 'w') as f:
            json.dump({'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>'}, f, indent=2)
    return folder


def llama_state(cfg, qkv_bias=False):
    d, ff, v = cfg['hidden_size'], cfg['intermediate_size'], cfg['vocab_size']
    hd = d // cfg['num_attention_heads']
    q, kv = cfg['num_attention_heads'] * hd, cfg['num_key_value_heads'] * hd
    sd = collections.OrderedDict()
    sd['model.embed_tokens.weight'] = torch.randn(v, d)
    for i in range(cfg['num_hidden_layers']):
        p = 'model.layers.%d.' % i
        sd[p + 'input_layernorm.weight'] = 1 + 0.1 * torch.randn(d)
        # q, k and v as views into one fused storage, at different storage offsets (shared storage).
        fused = torch.randn(q + 2 * kv, d)
        sd[p + 'self_attn.q_proj.weight'] = fused[:q]
        sd[p + 'self_attn.k_proj.weight'] = fused[q:q + kv]
        sd[p + 'self_attn.v_proj.weight'] = fused[q + kv:]
        if qkv_bias:
            sd[p + 'self_attn.q_proj.bias'] = torch.randn(q)
            sd[p + 'self_attn.k_proj.bias'] = torch.randn(kv)
            sd[p + 'self_attn.v_proj.bias'] = torch.randn(kv)
        sd[p + 'self_attn.o_proj.weight'] = torch.randn(d, q)
        sd[p + 'self_attn.rotary_emb.inv_freq'] = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        sd[p + 'post_attention_layernorm.weight'] = 1 + 0.1 * torch.randn(d)
        sd[p + 'mlp.gate_proj.weight'] = torch.randn(ff, d)
        sd[p + 'mlp.up_proj.weight'] = torch.randn(ff, d)
        sd[p + 'mlp.down_proj.weight'] = torch.randn(d, ff)
    sd['model.norm.weight'] = 1 + 0.1 * torch.randn(d)
    return sd


def gpt2_state(cfg, prefix):
    d, n, v, pos = cfg['n_embd'], cfg['n_layer'], cfg['vocab_size'], cfg['n_positions']
    sd = collections.OrderedDict()
    sd[prefix + 'wte.weight'] = torch.randn(v, d)
    sd[prefix + 'wpe.weight'] = torch.randn(pos, d)
    for i in range(n):
        p = prefix + 'h.%d.' % i
        sd[p + 'ln_1.weight'] = 1 + 0.1 * torch.randn(d)
        sd[p + 'ln_1.bias'] = 0.1 * torch.randn(d)
        sd[p + 'attn.bias'] = torch.tril(torch.ones(pos, pos, dtype=torch.bool)).view(1, 1, pos, pos)
        sd[p + 'attn.masked_bias'] = torch.tensor(-1e4)
        # Conv1D [in, out]; c_attn stored transposed-then-viewed (non-contiguous, strides honoured).
        sd[p + 'attn.c_attn.weight'] = torch.randn(3 * d, d).t()
        sd[p + 'attn.c_attn.bias'] = torch.randn(3 * d)
        sd[p + 'attn.c_proj.weight'] = torch.randn(d, d)
        sd[p + 'attn.c_proj.bias'] = torch.randn(d)
        sd[p + 'ln_2.weight'] = 1 + 0.1 * torch.randn(d)
        sd[p + 'ln_2.bias'] = 0.1 * torch.randn(d)
        sd[p + 'mlp.c_fc.weight'] = torch.randn(d, 4 * d)
        sd[p + 'mlp.c_fc.bias'] = torch.randn(4 * d)
        sd[p + 'mlp.c_proj.weight'] = torch.randn(4 * d, d)
        sd[p + 'mlp.c_proj.bias'] = torch.randn(d)
    sd[prefix + 'ln_f.weight'] = 1 + 0.1 * torch.randn(d)
    sd[prefix + 'ln_f.bias'] = 0.1 * torch.randn(d)
    return sd


def main():
    torch.manual_seed(0)
    llama_cfg = {
        'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'hidden_size': 16, 'intermediate_size': 32,
        'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'vocab_size': 64,
        'max_position_embeddings': 64, 'rms_norm_eps': 1e-5, 'rope_theta': 10000.0, 'hidden_act': 'silu',
        'bos_token_id': 1, 'eos_token_id': 2, 'tie_word_embeddings': False, 'torch_dtype': 'float32',
    }
    sd = llama_state(llama_cfg)
    # An untied lm_head stored as a transposed (non-contiguous) view.
    sd['lm_head.weight'] = torch.randn(llama_cfg['hidden_size'], llama_cfg['vocab_size']).t()

    f = write_folder('llama-bin', llama_cfg)
    torch.save(sd, os.path.join(f, 'pytorch_model.bin'))
    dump_expected(f, sd)

    f = write_folder('llama-bin-sharded', llama_cfg)
    write_sharded(f, sd, 2, 'bin')
    with open(os.path.join(f, 'generation_config.json'), 'w') as g:
        json.dump({'bos_token_id': 1, 'eos_token_id': 2, 'max_new_tokens': 32}, g, indent=2)
    dump_expected(f, sd)

    # The same weights in bf16, as sharded safetensors (no inv_freq buffers: safetensors exports drop them).
    bf = collections.OrderedDict((k, v.to(torch.bfloat16)) for k, v in sd.items() if 'inv_freq' not in k)
    f = write_folder('llama-st-sharded', dict(llama_cfg, torch_dtype='bfloat16'))
    write_sharded(f, bf, 3, 'safetensors')
    dump_expected(f, bf)

    # Qwen2 keys (qkv bias) with tied embeddings: lm_head saved too, sharing the embedding's storage.
    qwen_cfg = dict(llama_cfg, model_type='qwen2', architectures=['Qwen2ForCausalLM'], tie_word_embeddings=True, use_sliding_window=False, sliding_window=64)
    torch.manual_seed(1)
    qsd = llama_state(qwen_cfg, qkv_bias=True)
    qsd['lm_head.weight'] = qsd['model.embed_tokens.weight']
    f = write_folder('qwen2-tied-bin', qwen_cfg)
    torch.save(qsd, os.path.join(f, 'pytorch_model.bin'))
    dump_expected(f, qsd)

    gpt2_cfg = {
        'architectures': ['GPT2LMHeadModel'], 'model_type': 'gpt2', 'n_embd': 16, 'n_head': 2, 'n_layer': 2,
        'n_positions': 32, 'n_ctx': 32, 'vocab_size': 64, 'layer_norm_epsilon': 1e-5, 'activation_function': 'gelu_new',
        'bos_token_id': 63, 'eos_token_id': 63,
    }
    torch.manual_seed(2)
    # As the `gpt2` hub repo: saved from GPT2Model, so without the `transformer.` prefix, with mask buffers.
    gsd = gpt2_state(gpt2_cfg, '')
    f = write_folder('gpt2-bin', gpt2_cfg)
    torch.save(gsd, os.path.join(f, 'pytorch_model.bin'))
    dump_expected(f, gsd)

    gst = collections.OrderedDict(('transformer.' + k, v) for k, v in gsd.items() if not k.endswith(('.attn.bias', '.attn.masked_bias')))
    f = write_folder('gpt2-st', gpt2_cfg, tokenizer_files=False)
    write_safetensors(os.path.join(f, 'model.safetensors'), gst)
    dump_expected(f, gst)

    # Files that must be refused: a legacy (non-zip) torch.save, and a pickle calling os.system.
    bad = os.path.join(OUT, 'bad')
    shutil.rmtree(bad, ignore_errors=True)
    os.makedirs(bad)
    torch.save({'w': torch.ones(2)}, os.path.join(bad, 'legacy.bin'), _use_new_zipfile_serialization=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned',))
    torch.save({'w': torch.ones(2), 'x': Evil()}, os.path.join(bad, 'evil.bin'))

    # Casts PyTorch makes from float32, for the dtype conversion tests: specials, ties, subnormals, overflow.
    probes = [0.0, -0.0, 1.0, -1.0, 1.00390625, 1.01171875, 1.0 + 2 ** -8 + 2 ** -23, 65504.0, 65520.0, 65519.99, 1e-8, 3e-8,
              5.960464477539063e-08, 2.98023223876953125e-08, 6.1e-5, 3.4e38, float('inf'), float('-inf'), float('nan'),
              1e-40, 0.1, 0.3333333, 2.5, -7.75e-3]
    probes += torch.randn(200, generator=torch.Generator().manual_seed(3)).mul(100).tolist()
    x = torch.tensor(probes, dtype=torch.float32)
    cast = {
        'f32_bits': [int(v) & 0xffffffff for v in x.view(torch.int32).tolist()],
        'bf16_bits': [int(v) & 0xffff for v in x.to(torch.bfloat16).view(torch.int16).tolist()],
        'f16_bits': [int(v) & 0xffff for v in x.to(torch.float16).view(torch.int16).tolist()],
    }
    with open(os.path.join(OUT, 'casts.json'), 'w') as g:
        json.dump(cast, g)
    print('wrote', OUT)


if __name__ == '__main__':
    main()
