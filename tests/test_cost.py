"""Cost metrics of real tiny models: parameter counts and FLOPs against hand counts, size on
disk, a profile on CPU, memory measurement, relative costs. No timing assertions."""
import pytest
import torch
from transformers import GPT2Config

from bench.cost import (
    MB,
    disk_mb,
    flops_per_token,
    param_counts,
    peak_memory,
    profile_model,
    relative_costs,
)
from bench.data import encode
from bench.models import build_model, config_from_spec
from bench.spec import ModelSpec
from bench.pretrained import load_tokenizer
from bench.tokenizer import train_tokenizer

TEXTS = ["name[The Eagle], food[French], area[riverside] The Eagle serves French food by the river.",
         "answer: 1921 context: The company was founded in 1921 by Ada Lovelace. When was it founded?"] * 10
D, FF, HEADS, ENC, DEC = 16, 32, 2, 2, 1  # depths differ; not a deeper decoder, whose
# T5 generate() fails in transformers 5.24 (cache sized by the encoder depth)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    train_tokenizer(TEXTS, 300, d)
    return load_tokenizer(d)


def tiny(tok, arch):
    spec = ModelSpec(arch=arch, d_model=D, ffn_dim=FF, encoder_layers=ENC, decoder_layers=DEC, heads=HEADS)
    return build_model(config_from_spec(spec, tok, max_positions=64), seed=0)


def t5_hand_counts(vocab: int) -> dict[str, int]:
    inner = HEADS * (D // HEADS)  # d_kv = d_model / heads
    enc_layer = 4 * D * inner + 2 * D * FF + 2 * D  # self-attn q,k,v,o; wi, wo; two RMS norms
    dec_layer = 8 * D * inner + 2 * D * FF + 3 * D  # + cross-attention; three norms
    encoder, decoder = ENC * enc_layer + D, DEC * dec_layer + D  # + final norms
    embedding = vocab * D + 2 * 32 * HEADS  # shared (tied LM head) + relative buckets per stack
    return {"encoder": encoder, "decoder": decoder, "embedding": embedding}


def test_t5_param_counts_equal_a_hand_count(tok):
    model = tiny(tok, "t5")
    hand = t5_hand_counts(len(tok))
    got = param_counts(model)
    assert got["params_total"] == sum(p.numel() for p in model.parameters())
    assert got["params_encoder_non_embedding"] == hand["encoder"]
    assert got["params_decoder_non_embedding"] == hand["decoder"]
    assert got["params_embedding"] == hand["embedding"]  # the tied LM head is not counted again
    assert got["params_non_embedding"] == hand["encoder"] + hand["decoder"] < got["params_total"]


def test_bart_embeddings_include_learned_positions_once(tok):
    model = tiny(tok, "bart")
    got = param_counts(model)
    assert got["params_embedding"] == len(tok) * D + 2 * (64 + 2) * D  # tokens (tied) + 2 position tables
    assert got["params_non_embedding"] == got["params_total"] - got["params_embedding"]
    assert got["params_encoder_non_embedding"] + got["params_decoder_non_embedding"] == got["params_non_embedding"]


def test_flops_per_token_equals_hand_computation(tok):
    model = tiny(tok, "t5")
    hand = t5_hand_counts(len(tok))
    source_len, output_len = 10, 5
    expected = 2 * hand["decoder"] + 4 * DEC * D * (source_len + (output_len + 1) / 2) + 2 * D * len(tok)
    assert flops_per_token(model.config, source_len=source_len, output_len=output_len) == pytest.approx(expected)
    # a wider decoder context costs more; giving the count directly matches the meta-device count
    assert flops_per_token(model.config, source_len=20, output_len=5) > expected
    assert flops_per_token(model.config, source_len=10, output_len=5,
                           decoder_non_embedding=hand["decoder"]) == pytest.approx(expected)


def test_flops_per_token_for_a_gpt2_config():
    d, layers, vocab = 16, 2, 100
    config = GPT2Config(n_embd=d, n_layer=layers, n_head=2, vocab_size=vocab, n_positions=64,
                        bos_token_id=0, eos_token_id=0)
    non_embedding = layers * (12 * d * d + 13 * d) + 2 * d  # attn 4d²+4d, mlp 8d²+5d, 2 LNs 4d; final LN
    expected = 2 * non_embedding + 4 * layers * d * (8 + (4 + 1) / 2) + 2 * d * vocab
    assert flops_per_token(config, source_len=8, output_len=4) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no FLOPs formula for model type 'bert'"):
        from transformers import BertConfig
        flops_per_token(BertConfig(), source_len=1, output_len=1)


def test_disk_size_is_about_four_bytes_per_fp32_parameter(tok):
    model = tiny(tok, "t5")
    weight_bytes = 4 * param_counts(model)["params_total"]
    on_disk = disk_mb(model) * MB
    assert weight_bytes < on_disk < weight_bytes + 32 * 1024  # + safetensors header and config files


def test_profile_model_on_cpu(tok):
    model = tiny(tok, "t5")
    sources = encode(tok, TEXTS[:6], 32)
    prof = profile_model(model, tok, sources, device="cpu", num_beams=2, batch_size=4, latency_examples=2,
                         max_new_tokens=6)
    assert prof["latency_greedy_ms"] > 0 and prof["latency_beam_ms"] > 0 and prof["throughput_eps"] > 0
    assert prof["params_total"] == sum(p.numel() for p in model.parameters())
    assert prof["params_non_embedding"] < prof["params_total"]
    assert prof["disk_mb"] > 0 and prof["weights_mb"] == pytest.approx(prof["params_total"] * 4 / MB)
    assert prof["source_tokens_mean"] == pytest.approx(sum(map(len, sources)) / len(sources))
    assert 0 <= prof["output_tokens_mean"] <= 6
    assert prof["flops_per_token"] == pytest.approx(flops_per_token(
        model.config, source_len=prof["source_tokens_mean"], output_len=prof["output_tokens_mean"]))
    assert prof["peak_mem_mb"] is not None and prof["peak_mem_mb"] >= 0 and prof["peak_mem_method"]
    assert (prof["profile_num_beams"], prof["profile_batch_size"], prof["profile_examples"],
            prof["latency_examples"], prof["max_new_tokens"], prof["param_dtype"]) == (2, 4, 6, 2, 6, "float32")
    assert all(isinstance(v, (int, float, str)) for v in prof.values())  # flat scalars


def test_peak_memory_sees_a_large_allocation_on_cpu():
    with peak_memory("cpu") as mem:
        block = torch.ones(64 * MB // 4)  # 64 MiB, written, then freed
        del block
    assert mem["peak_mem_mb"] >= 60, mem


def test_peak_memory_sees_an_allocation_that_reuses_freed_heap():
    """A long-lived process (a test worker) has freed heap that glibc keeps resident; a block
    carved from it grew no RSS, and the growth read 0 before the heap was trimmed first."""
    small = [torch.ones(60 * 1024 // 4) for _ in range(3000)]  # ~180 MiB in the heap, not mmapped
    pin = torch.ones(1000)  # keeps the heap's top, so free() cannot give it back by itself
    del small
    with peak_memory("cpu") as mem:
        block = torch.ones(64 * MB // 4)
        del block
    del pin
    assert mem["peak_mem_mb"] >= 60, mem
    assert mem["peak_mem_method"].endswith("after malloc_trim")


def test_relative_costs():
    teacher = {"latency_greedy_ms": 40.0, "latency_beam_ms": 90.0, "throughput_eps": 10.0, "params_total": 1000,
               "params_non_embedding": 600, "disk_mb": 4.0, "flops_per_token": 2000.0, "peak_mem_mb": 0.0}
    student = {"latency_greedy_ms": 10.0, "latency_beam_ms": 30.0, "throughput_eps": 25.0, "params_total": 250,
               "params_non_embedding": 100, "disk_mb": 1.0, "flops_per_token": 400.0, "peak_mem_mb": 0.0}
    rel = relative_costs(student, teacher)
    assert rel["speedup_greedy"] == 4 and rel["speedup_beam"] == 3 and rel["throughput_gain"] == 2.5
    assert (rel["compression_params"], rel["compression_non_embedding"], rel["compression_disk"],
            rel["compression_flops"]) == (4, 6, 4, 5)
    assert rel["compression_peak_mem"] is None  # undefined with a zero divisor, not an error
    assert relative_costs({}, teacher)["speedup_greedy"] is None
