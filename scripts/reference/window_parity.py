#!/usr/bin/python3
"""Writes the PyTorch reference fixture for Mistral's sliding-window attention (test/fixtures/models/mistral_window.*).

A tiny Mistral (GQA) whose sliding_window (4) is shorter than the sequence (9), so that every query past the
fourth attends to only its last 4 positions, as HF's MistralForCausalLM masks them (eager/sdpa); and a tiny
Qwen2 with use_sliding_window whose max_window_layers (1) windows only its second layer (window 3), as
Qwen2Config's layer_types does (test/fixtures/models/qwen2_window.*). Same content and format as
model_parity.py's fixtures (logits, loss, every gradient, 5 AdamW steps).
Run:  /usr/bin/python3 scripts/reference/window_parity.py
"""
import torch

from model_parity import llama_forward, llama_params, write

if __name__ == '__main__':
    torch.manual_seed(3)
    mistral = {
        'model_type': 'mistral', 'vocab_size': 53, 'hidden_size': 32, 'intermediate_size': 48, 'num_hidden_layers': 2,
        'num_attention_heads': 4, 'num_key_value_heads': 2, 'rms_norm_eps': 1e-5, 'rope_theta': 10000.0,
        'max_position_embeddings': 64, 'tie_word_embeddings': False, 'sliding_window': 4,
    }
    write('mistral_window', mistral, llama_params(mistral), llama_forward)
    torch.manual_seed(4)
    qwen2 = {
        'model_type': 'qwen2', 'vocab_size': 47, 'hidden_size': 32, 'intermediate_size': 40, 'num_hidden_layers': 2,
        'num_attention_heads': 4, 'num_key_value_heads': 2, 'rms_norm_eps': 1e-6, 'rope_theta': 10000.0,
        'max_position_embeddings': 64, 'tie_word_embeddings': True,
        'use_sliding_window': True, 'sliding_window': 3, 'max_window_layers': 1,
    }
    write('qwen2_window', qwen2, llama_params(qwen2), llama_forward)
