"""Sampled decoding of an encoder-decoder in a plain cached loop.

A sampled step of `model.generate` draws its token with `torch.multinomial`, which on a CPU
draws one random number per vocabulary entry (1.3 ms a step for 32 rows at a 2k vocabulary,
about a small student's whole forward), and its top-p warper sorts the whole vocabulary
(3.8 ms more); Joint-Teaching samples a batch of PTs on 150 of its 500 default steps. This
loop runs the encoder once, then the decoder one token at a time on its cache, filters the
scores as `generate` does (temperature, top-k, top-p) but applies top-p to the top-k
survivors only, and draws by inverse CDF with one uniform number per row
(`benchmarks/perf.py` (g) measures it against `generate`).

The samples follow `generate`'s distribution, not its random stream; with top-k 1 they are
`generate`'s greedy outputs token for token (tested), which checks the loop's cache, masks and
stopping. Greedy and beam decoding stay with `generate` (this loop is no faster there), and so
does a model whose generation config asks for more than token ids (`plain_sampling`:
forced tokens, n-gram blocking, penalties — e.g. BART's `forced_eos_token_id`), and
decoder-only models.
"""
from __future__ import annotations

import torch

# generation-config entries that leave sampling plain (with these values)
_PLAIN = {"use_cache": True, "output_attentions": False, "output_hidden_states": False}
_IDS = {"pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id", "_from_model_config",
        "transformers_version"}
# the `generate` arguments this loop honours, and those of them `sample` does not take
_ARGS = {"do_sample", "num_beams", "early_stopping", "max_new_tokens", "num_return_sequences", "temperature",
         "top_k", "top_p"}
_IMPLIED = ("do_sample", "num_beams", "early_stopping")


def plain_sampling(model, generate_kwargs: dict) -> dict | None:
    """`sample`'s arguments for `generate_kwargs` when they ask for plain sampling (no beams, no
    argument `sample` lacks) of an encoder-decoder whose generation config sets nothing beyond
    token ids and the defaults of `_PLAIN` — what this loop does as `generate` would; else None."""
    if not generate_kwargs.get("do_sample") or generate_kwargs.get("num_beams", 1) != 1 or set(generate_kwargs) - _ARGS:
        return None
    diff = model.generation_config.to_diff_dict()
    if not all(k in _IDS or (k in _PLAIN and v == _PLAIN[k]) for k, v in diff.items()):
        return None
    return {k: v for k, v in generate_kwargs.items() if k not in _IMPLIED}


def draw(scores: torch.Tensor) -> torch.Tensor:
    """One token per row from softmax(scores), by inverse CDF (float64 cumulative sums; a token
    with no probability mass is never drawn)."""
    cdf = scores.softmax(-1).double().cumsum(-1)
    total = cdf[:, -1:]
    u = torch.rand(total.shape, dtype=cdf.dtype, device=cdf.device) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # below the total, even rounded
    # the first token whose cumulative mass exceeds u: never one without mass (its sum equals the last)
    return torch.searchsorted(cdf, u, right=True).squeeze(1)


def candidates(scores: torch.Tensor, temperature: float | None, top_k: int | None,
               top_p: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`generate`'s sampling filters in its order — temperature, top-k, then top-p — as (scores,
    token ids) of the candidates, highest first, -inf where top-p removed one; ids None when
    nothing was filtered. Top-p runs on the top-k survivors only: `generate`'s warper sorts the
    whole vocabulary every step (3.8 ms for 32 × 2k on a CPU, 10× the top-k)."""
    if temperature is not None and temperature != 1.0:
        scores = scores / temperature
    k = top_k if top_k else scores.shape[-1]
    p = 1.0 if top_p is None else top_p
    if k >= scores.shape[-1] and p >= 1.0:
        return scores, None
    values, ids = scores.topk(min(k, scores.shape[-1]), dim=-1)  # sorted, highest first
    if p < 1.0:
        # generate removes a token when its mass plus every smaller token's is at most 1 - top_p,
        # and always keeps the most likely one
        tail = values.softmax(-1).flip(-1).cumsum(-1).flip(-1)
        remove = tail <= 1 - p
        remove[:, 0] = False
        values = values.masked_fill(remove, float("-inf"))
    return values, ids


@torch.inference_mode()
def sample(model, input_ids: torch.Tensor, mask: torch.Tensor, *, pad_id: int, eos_id: int, max_new_tokens: int,
           num_return_sequences: int = 1, temperature: float | None = None, top_k: int | None = None,
           top_p: float | None = None) -> torch.Tensor:
    """(rows × num_return_sequences, 1 + steps) sampled token ids: the decoder start token, then
    each step's token (pad once a row has ended with eos), as `generate` returns them."""
    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=mask)
    if num_return_sequences > 1:  # encode once, then each input's rows in turn, as generate does
        encoder_outputs.last_hidden_state = encoder_outputs.last_hidden_state.repeat_interleave(
            num_return_sequences, dim=0)
        mask = mask.repeat_interleave(num_return_sequences, dim=0)
    rows = len(mask)
    tokens = input_ids.new_full((rows, 1), model.config.decoder_start_token_id)
    steps = [tokens]
    unfinished = torch.ones(rows, dtype=torch.bool, device=input_ids.device)
    cache = None
    for _ in range(max_new_tokens):
        out = model(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=tokens,
                    cache=cache, use_cache=True)
        cache = out.cache
        scores, ids = candidates(out.logits[:, -1].float(), temperature, top_k, top_p)
        picked = draw(scores)
        if ids is not None:
            picked = ids.gather(1, picked[:, None])[:, 0]
        tokens = picked.masked_fill(~unfinished, pad_id)[:, None]
        steps.append(tokens)
        unfinished &= tokens[:, 0].ne(eos_id)
        if not unfinished.any():
            break
    return torch.cat(steps, dim=1)
