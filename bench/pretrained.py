"""Pretrained models and tokenizers by Hugging Face Hub name or local path.

Nothing waits on a dead network: when the Hub cannot be reached (offline mode, or no answer
to a short probe — `tasks.sources.offline_reason`), loading uses the local cache only, and a
model that is in neither place fails with an error that names it and says how to point
kdbench at a local copy.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import nullcontext
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
)

from bench.lm import is_seq2seq
from bench.spec import looks_local


class ModelUnavailableError(OSError):
    """A pretrained model or tokenizer that is neither reachable nor cached locally."""


def _hub_context(name_or_path: str):
    """Offline mode for `huggingface_hub` when the Hub cannot be used (never for local paths)."""
    from tasks.sources import hub_offline_mode, offline_reason

    if Path(name_or_path).exists():
        return nullcontext(), None
    reason = offline_reason()
    return (hub_offline_mode() if reason else nullcontext()), reason


def _unavailable(what: str, name: str, reason: str | None, err: Exception) -> ModelUnavailableError:
    from huggingface_hub import constants

    if looks_local(name):
        state = "does not exist" if not Path(name).expanduser().exists() else f"cannot be loaded ({err})"
        return ModelUnavailableError(f"{what} {name!r}: the local directory {state}; give a directory "
                                     f"written by save_pretrained (config, weights and tokenizer files)")

    why = f"{reason}, and it is not in the local cache" if reason else f"loading failed ({err})"
    return ModelUnavailableError(
        f"{what} {name!r} is not available: {why}. Point the spec at a local copy (a directory "
        f"written by save_pretrained, e.g. `huggingface-cli download {name} --local-dir DIR` on a "
        f"machine with internet), or copy a Hugging Face cache that holds it and set HF_HOME "
        f"(cache searched: {constants.HF_HUB_CACHE}; HF_HOME={os.environ.get('HF_HOME', 'unset')})")


def _load(load, name_or_path: str, what: str):
    """`load(name_or_path)`, offline when the Hub cannot be used, with an error that says how
    to point kdbench at a local copy."""
    ctx, reason = _hub_context(name_or_path)
    try:
        with ctx:
            return load(name_or_path)
    except (OSError, ValueError) as err:
        raise _unavailable(what, name_or_path, reason, err) from None


def load_config(name_or_path: str, what: str = "model"):
    return _load(AutoConfig.from_pretrained, name_or_path, what)


def load_model(name_or_path: str, what: str = "model"):
    """An encoder-decoder (AutoModelForSeq2SeqLM) or decoder-only (AutoModelForCausalLM) model."""
    config = load_config(name_or_path, what)
    cls = AutoModelForSeq2SeqLM if is_seq2seq(config) else AutoModelForCausalLM
    return _load(cls.from_pretrained, name_or_path, what)


def load_tokenizer(name_or_path: str, what: str = "tokenizer"):
    """The model's tokenizer; one without a pad token (GPT-2) pads with its eos token."""
    tok = _load(AutoTokenizer.from_pretrained, name_or_path, what)
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise ValueError(f"tokenizer {name_or_path!r} has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer {name_or_path!r} has no eos token: kdbench needs one to end targets")
    return tok


def same_tokenizer(a, b) -> bool:
    """Whether two tokenizers map every text to the same ids (same vocabulary and specials)."""
    return (a.get_vocab() == b.get_vocab() and a.pad_token_id == b.pad_token_id
            and a.eos_token_id == b.eos_token_id)


def model_fingerprint(name_or_path: str | None) -> dict | None:
    """What identifies a pretrained model in artifact keys: a Hub name as given; a local
    directory by its path, its config's hash and its files' names, sizes and modification
    times (rewriting a checkpoint in place changes the key; hashing multi-GB weights on every
    run would cost more than it protects)."""
    if name_or_path is None:
        return None
    path = Path(name_or_path)
    if not path.is_dir():
        return {"hub": name_or_path}
    config = path / "config.json"
    return {
        "local": str(path.resolve()),
        "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config.exists() else None,
        "files": sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file()),
    }
