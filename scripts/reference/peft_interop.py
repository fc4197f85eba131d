"""Checks sftkit's LoRA adapters against the real PEFT library, both ways, and writes the fixtures
test/train/peft-interop.test.ts compares sftkit with (test/fixtures/peft/).

Developer-run only, NOT with Debian's /usr/bin/python3 (torch 1.13, no PEFT): it needs a virtual environment
with peft and transformers, e.g. (versions this was run with; pip reads the local mirror):
    /root/.pyenv/versions/3.11.7/bin/python -m venv /tmp/peftvenv
    /tmp/peftvenv/bin/pip install 'torch==2.13.0+cpu' 'transformers==5.18.0' 'peft==0.21.0' safetensors accelerate
    /tmp/peftvenv/bin/python scripts/reference/peft_interop.py    # from the repository root; needs node

On the tiny HF models test/fixtures/weights/llama-st-sharded and test/fixtures/weights/gpt2-st:
 a) every adapter folder sftkit wrote (test/fixtures/peft/sftkit-*: adapter_config.json + adapter_model.safetensors
    from a few steps of a sftkit LoRA run, made by scripts/reference/peft_interop_sftkit.ts, which this script runs
    after b) since one of them trains on to PEFT's peft-llama) is loaded with PeftModel.from_pretrained(base, folder); every tensor of
    the file must arrive in the PEFT model unchanged (a key PEFT silently skipped would fail here),
    AutoPeftModelForCausalLM.from_pretrained(folder) (the base from base_model_name_or_path) agrees, and the logits
    of the adapted model and of merge_and_unload() are recorded;
 b) adapters made by PEFT itself (get_peft_model with LoraConfig: MLP and attention targets, rank_pattern /
    alpha_pattern, lora_dropout, use_rslora, a regex target_modules, layers_to_transform/layers_pattern,
    exclude_modules, 'all-linear', GPT-2's Conv1D with fan_in_fan_out; lora_B
    set to seeded random values so that the adapter changes the output) are saved with save_pretrained to
    test/fixtures/peft/peft-*, re-loaded with PeftModel.from_pretrained (same logits), and their logits and
    merge_and_unload() logits are recorded.
Logits (eval mode: dropout off) on fixed token ids go to test/fixtures/peft/logits.json with the versions used.
"""
import json
import os
import shutil
import subprocess
import warnings

import peft
import torch
import transformers
from peft import AutoPeftModelForCausalLM, LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

torch.set_num_threads(1)
OUT = os.path.join('test', 'fixtures', 'peft')
BASES = {
    'llama': os.path.join('test', 'fixtures', 'weights', 'llama-st-sharded'),
    'gpt2': os.path.join('test', 'fixtures', 'weights', 'gpt2-st'),
}
IDS = [1, 5, 9, 23, 42]
LLAMA_ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']

# Adapters scripts/reference/peft_interop_sftkit.ts trains with sftkit: name, base.
SFTKIT_ADAPTERS = [('sftkit-llama', 'llama'), ('sftkit-llama-rslora', 'llama'), ('sftkit-gpt2', 'gpt2'), ('sftkit-from-peft-llama', 'llama'),
                   ('sftkit-from-peft-llama-layers', 'llama')]

# PEFT-written adapters: name -> (base, LoraConfig keyword arguments).
PEFT_ADAPTERS = {
    # Every Llama linear, per-module ranks and alphas, dropout.
    'peft-llama': ('llama', dict(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=LLAMA_ALL,
                                 rank_pattern={'down_proj': 8, r'layers\.1\.self_attn\.q_proj': 2},
                                 alpha_pattern={'gate_proj': 32})),
    # rsLoRA and a regular expression as target_modules (PEFT: a full match of the module name).
    'peft-llama-rslora': ('llama', dict(r=8, lora_alpha=16, use_rslora=True,
                                        target_modules=r'.*\.(q_proj|v_proj|up_proj|down_proj)')),
    # Selection beyond target_modules: layers_to_transform with layers_pattern, exclude_modules, a module named in
    # full (adapted whatever its layer) and a name that matches nothing (let be, as long as something matches).
    'peft-llama-layers': ('llama', dict(r=4, lora_alpha=8, layers_to_transform=[1], layers_pattern='layers', exclude_modules=['v_proj'],
                                        target_modules=['q_proj', 'v_proj', 'down_proj', 'model.layers.0.mlp.up_proj', 'query_key_value'])),
    # 'all-linear' (PEFT writes the names it expands to) with a regex exclude_modules.
    'peft-llama-exclude': ('llama', dict(r=2, lora_alpha=4, target_modules='all-linear', exclude_modules=r'model\.layers\.0\.mlp\..*')),
    # GPT-2's Conv1D: PEFT's fan_in_fan_out.
    'peft-gpt2': ('gpt2', dict(r=4, lora_alpha=16, lora_dropout=0.05, fan_in_fan_out=True,
                               target_modules=['c_attn', 'c_proj', 'c_fc'])),
}


def base_model(family):
    return AutoModelForCausalLM.from_pretrained(BASES[family], dtype=torch.float32, attn_implementation='eager').eval()


def logits_of(model):
    with torch.no_grad():
        return model(input_ids=torch.tensor([IDS])).logits[0].float()


def as_list(t):
    return [float('%.7g' % v) for v in t.flatten().tolist()]


def check_loaded(pm, folder):
    """Every tensor of the adapter file is in the PEFT model, bit for bit (a skipped key would be random A / zero B)."""
    sd = pm.state_dict()
    tensors = load_file(os.path.join(folder, 'adapter_model.safetensors'))
    for key, value in tensors.items():
        name = key.replace('.lora_A.weight', '.lora_A.default.weight').replace('.lora_B.weight', '.lora_B.default.weight')
        assert name in sd, f'{folder}: PEFT has no parameter for {key}'
        assert torch.equal(sd[name], value.to(sd[name].dtype)), f'{folder}: {key} differs after PeftModel.from_pretrained'
    n_lora = sum(1 for k in sd if '.lora_A.' in k or '.lora_B.' in k)
    assert n_lora == len(tensors), f'{folder}: PEFT made {n_lora} LoRA tensors, the file holds {len(tensors)}'
    return len(tensors)


def load_peft(family, folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        pm = PeftModel.from_pretrained(base_model(family), folder).eval()
    for w in caught:
        print(f'  warning from PEFT loading {folder}: {w.message}')
    return pm


def record(out, name, family, folder, pm):
    adapted = logits_of(pm)
    merged = logits_of(pm.merge_and_unload())
    base = out['base'][family]
    change = (adapted - torch.tensor(base).view_as(adapted)).abs().max().item()
    assert change > 1e-3, f'{name}: the adapter does not change the logits ({change})'
    out['adapters'][name] = {'base': family, 'folder': os.path.relpath(folder, OUT), 'logits': as_list(adapted), 'merged': as_list(merged)}
    print(f'{name}: max |adapted - base| {change:.4g}, max |merged - adapted| {(merged - adapted).abs().max().item():.3g}')


def main():
    out = {
        'versions': {'peft': peft.__version__, 'transformers': transformers.__version__, 'torch': torch.__version__},
        'ids': IDS,
        'vocab': {},
        'base': {},
        'adapters': {},
    }
    for family in BASES:
        logits = logits_of(base_model(family))
        out['vocab'][family] = logits.shape[-1]
        out['base'][family] = as_list(logits)

    # b) adapters PEFT wrote, for sftkit to read.
    for i, (name, (family, kwargs)) in enumerate(PEFT_ADAPTERS.items()):
        torch.manual_seed(100 + i)
        pm = get_peft_model(base_model(family), LoraConfig(task_type='CAUSAL_LM', **kwargs))
        with torch.no_grad():
            for pname, p in pm.named_parameters():
                if '.lora_B.' in pname:
                    p.copy_(torch.randn_like(p) * 0.3)
        pm.eval()
        want = logits_of(pm)
        folder = os.path.join(OUT, name)
        shutil.rmtree(folder, ignore_errors=True)
        pm.save_pretrained(folder)
        for extra in os.listdir(folder):
            if extra not in ('adapter_config.json', 'adapter_model.safetensors'):
                os.remove(os.path.join(folder, extra))  # README.md (a model card template): not needed here
        for f in os.listdir(folder):
            os.chmod(os.path.join(folder, f), 0o644)
        again = load_peft(family, folder)
        check_loaded(again, folder)
        assert torch.equal(logits_of(again), want), f'{name}: PEFT re-loading its own adapter changed the logits'
        record(out, name, family, folder, again)

    subprocess.run(['node', '--import', 'tsx', os.path.join('scripts', 'reference', 'peft_interop_sftkit.ts')], check=True)
    # a) adapters sftkit wrote (scripts/reference/peft_interop_sftkit.ts), read by PEFT.
    for name, family in SFTKIT_ADAPTERS:
        folder = os.path.join(OUT, name)
        pm = load_peft(family, folder)
        n = check_loaded(pm, folder)
        print(f'{name}: PeftModel.from_pretrained loaded all {n} tensors')
        # AutoPeftModelForCausalLM loads the base itself, from adapter_config.json's base_model_name_or_path.
        auto = AutoPeftModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation='eager').eval()
        assert torch.equal(logits_of(auto), logits_of(pm)), f'{name}: AutoPeftModelForCausalLM differs from PeftModel.from_pretrained'
        record(out, name, family, folder, pm)

    with open(os.path.join(OUT, 'logits.json'), 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')
    print(f"wrote {os.path.join(OUT, 'logits.json')} (peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__})")


if __name__ == '__main__':
    main()
