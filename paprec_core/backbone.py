"""A P5-compatible backbone on the stock Hugging Face T5.

P5 feeds its encoder ``shared(token) + whole_word_embeddings(word index)``
(DESIGN §3). We compute that sum ourselves and hand it to
``T5ForConditionalGeneration`` as ``inputs_embeds``, so no fork of the model
code is needed and the trigger gradient is simply the gradient with respect to
those input embeddings.

A backbone folder (our own format) holds ``config.json`` (the T5 config),
``model.safetensors`` (T5 weights plus ``encoder.whole_word_embeddings.weight``),
``spiece.model`` + ``tokenizer.json`` and ``backbone.json`` (how it was made).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from .errors import CheckpointError, ConfigError, PapRecError
from .tokenizer import EOS_ID, MAX_WORDS, PAD_ID, Tokenizer, TokenizerSpec, read_json_object

WHOLE_WORD_KEY = "encoder.whole_word_embeddings.weight"
TIED_KEYS = {"lm_head.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}


def pick_device(device: str | None = None) -> torch.device:
    """``None``/'auto' -> CUDA when present, else CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(f"device '{device}' requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):  # 'tpu' and the like: torch's multi-line message, as a traceback
        raise ConfigError("device", f"{device!r} is not a device; use auto, cpu, cuda or cuda:N") from None


@dataclass
class Batch:
    """Padded encoder inputs (and optionally decoder labels) on one device."""

    input_ids: torch.Tensor        # [B, S]
    whole_word_ids: torch.Tensor   # [B, S]
    attention_mask: torch.Tensor   # [B, S]
    labels: torch.Tensor | None = None  # [B, T], -100 where padded


class Backbone(nn.Module):
    def __init__(self, config: T5Config, tokenizer: Tokenizer, meta: dict | None = None):
        super().__init__()
        if config.vocab_size < tokenizer.vocab_size:
            raise CheckpointError(
                f"model vocabulary has {config.vocab_size} rows but the tokenizer needs "
                f"{tokenizer.vocab_size}; use the spiece.model/tokenizer.json the checkpoint was trained with")
        self.t5 = T5ForConditionalGeneration(config)
        self.whole_word_embeddings = nn.Embedding(MAX_WORDS, config.d_model)
        self.tokenizer = tokenizer
        self.meta = dict(meta or {})
        self.eval()

    @property
    def config(self) -> T5Config:
        return self.t5.config

    @property
    def device(self) -> torch.device:
        return self.whole_word_embeddings.weight.device

    @property
    def token_embeddings(self) -> torch.Tensor:
        return self.t5.shared.weight

    # ------------------------------------------------------------------ construction
    @classmethod
    def new(cls, tokenizer: Tokenizer, d_model=128, num_layers=2, num_heads=4, d_ff=512,
            dropout=0.1, meta=None) -> "Backbone":
        config = T5Config(vocab_size=tokenizer.vocab_size, d_model=d_model, d_kv=d_model // num_heads,
                          d_ff=d_ff, num_layers=num_layers, num_decoder_layers=num_layers,
                          num_heads=num_heads, dropout_rate=dropout, feed_forward_proj="relu",
                          decoder_start_token_id=PAD_ID, pad_token_id=PAD_ID, eos_token_id=EOS_ID)
        model = cls(config, tokenizer, meta)
        nn.init.normal_(model.whole_word_embeddings.weight, std=config.initializer_factor)
        return model

    @classmethod
    def from_p5_checkpoint(cls, pth: str | Path, tokenizer: Tokenizer, device=None) -> "Backbone":
        """Load a P5 ``.pth`` state dict (T5 v1.0 keys, maybe ``module.``-prefixed)."""
        pth = Path(pth)
        if not pth.exists():
            raise CheckpointError(f"{pth}: checkpoint not found")
        state = load_tensors(pth)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        state = {re.sub(r"^module\.", "", k): v for k, v in state.items()}
        config = _config_from_state(pth, state)
        model = cls(config, tokenizer, meta={"source": str(pth)})
        model._load_state(pth, state)
        return model.to(pick_device(device))

    def _load_state(self, path, state: dict) -> None:
        own = self.state_dict()
        mapped = {("whole_word_embeddings.weight" if k == WHOLE_WORD_KEY else f"t5.{k}"): v for k, v in state.items()}
        # Compare under the module's own names (``t5.`` prefix): checking the checkpoint's
        # names against state_dict() never matched, and a mis-shaped tensor surfaced as
        # load_state_dict's multi-line RuntimeError instead of this message.
        for (k, v), m in zip(state.items(), mapped):
            if m in own and own[m].shape != v.shape:
                raise CheckpointError(f"{path}: tensor '{k}' has shape {tuple(v.shape)} but the model "
                                      f"expects {tuple(own[m].shape)}; the checkpoint does not match this config")
        result = self.load_state_dict(mapped, strict=False)
        # These are views of shared.weight in T5 v1.0, so a checkpoint may omit them.
        missing = [k for k in result.missing_keys if k.removeprefix("t5.") not in TIED_KEYS]
        self.load_report = {"missing": missing, "unexpected": list(result.unexpected_keys)}
        if missing:
            raise CheckpointError(f"{path}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")

    def state_for_saving(self) -> dict[str, torch.Tensor]:
        state = {k.removeprefix("t5."): v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                 if k != "whole_word_embeddings.weight" and k.removeprefix("t5.") not in TIED_KEYS}
        state[WHOLE_WORD_KEY] = self.whole_word_embeddings.weight.detach().cpu().contiguous()
        return state

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.to_json_file(folder / "config.json")
        save_file(self.state_for_saving(), str(folder / "model.safetensors"))
        self.tokenizer.save(folder)
        (folder / "backbone.json").write_text(json.dumps(self.meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device=None) -> "Backbone":
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: backbone folder not found (a folder made by 'pretrain', or a P5 .pth)")
        # tokenizer.json too: without it the entity tokens were silently missing and a search
        # ran on a wrong vocabulary (best score 0.0000 instead of 0.65)
        for name in ("config.json", "model.safetensors", "spiece.model", "tokenizer.json"):
            if not (folder / name).is_file():
                raise CheckpointError(f"{folder / name}: not found; a backbone folder needs config.json, "
                                      "model.safetensors, spiece.model and tokenizer.json (made by 'pretrain')")
        config = _read_config(folder / "config.json")
        meta_path = folder / "backbone.json"
        meta = read_json_object(meta_path) if meta_path.exists() else {}
        model = cls(config, Tokenizer.load(folder), meta)
        weights = folder / "model.safetensors"
        try:
            state = load_file(str(weights))
        except Exception as e:  # noqa: BLE001 - SafetensorError (truncated, random bytes), OSError
            raise CheckpointError(f"{weights}: not a readable safetensors file ({_first_line(e)}); "
                                  "copy the backbone folder again or re-run 'pretrain'") from None
        model._load_state(weights, state)
        return model.to(pick_device(device))

    # ------------------------------------------------------------------ batching
    def batch(self, inputs: list[list[int]], targets: list[list[int]] | None = None) -> Batch:
        """Pad token id lists (each ending in </s>) into a Batch on this device."""
        S = max(len(x) for x in inputs)
        ids = np.full((len(inputs), S), PAD_ID, dtype=np.int64)
        words = np.zeros_like(ids)
        for b, x in enumerate(inputs):
            ids[b, : len(x)] = x
            words[b, : len(x)] = self.tokenizer.whole_word_ids(x)
        labels = None
        if targets is not None:
            T = max(len(y) for y in targets)
            lab = np.full((len(targets), T), -100, dtype=np.int64)
            for b, y in enumerate(targets):
                lab[b, : len(y)] = y
            labels = torch.from_numpy(lab).to(self.device)
        ids_t = torch.from_numpy(ids).to(self.device)
        return Batch(ids_t, torch.from_numpy(words).to(self.device), (ids_t != PAD_ID).long(), labels)

    # ------------------------------------------------------------------ model calls
    def embed(self, input_ids: torch.Tensor, whole_word_ids: torch.Tensor) -> torch.Tensor:
        return self.t5.shared(input_ids) + self.whole_word_embeddings(whole_word_ids)

    def encode(self, batch: Batch, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.embed(batch.input_ids, batch.whole_word_ids)
        return self.t5.encoder(inputs_embeds=inputs_embeds, attention_mask=batch.attention_mask).last_hidden_state

    def example_losses(self, batch: Batch, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example mean token NLL of the labels (the paper's Eq. 3)."""
        if inputs_embeds is None:
            inputs_embeds = self.embed(batch.input_ids, batch.whole_word_ids)
        out = self.t5(inputs_embeds=inputs_embeds, attention_mask=batch.attention_mask, labels=batch.labels)
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        mask = batch.labels != -100
        tok = logp.gather(-1, batch.labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return -(tok * mask).sum(1) / mask.sum(1).clamp(min=1)

    def loss_and_input_grad(self, batch: Batch, positions: torch.Tensor | None = None):
        """Loss (mean over examples) and d loss / d inputs_embeds.

        Returns ``(per_example_losses, grad)`` where ``grad`` is [B, S, d], or
        [B, P, d] gathered at ``positions`` ([B, P] indices) when given.
        """
        embeds = self.embed(batch.input_ids, batch.whole_word_ids).detach().requires_grad_(True)
        losses = self.example_losses(batch, embeds)
        (grad,) = torch.autograd.grad(losses.sum(), embeds)
        if positions is not None:
            grad = grad.gather(1, positions.unsqueeze(-1).expand(-1, -1, grad.shape[-1]))
        return losses.detach(), grad

    def generate(self, batch: Batch, num_beams: int = 20, num_return: int = 10, max_new_tokens: int = 20,
                 allowed_prefixes=None, **kwargs) -> list[list[list[int]]]:
        """Beam search; returns, per example, ``num_return`` token-id sequences (best first).

        ``allowed_prefixes`` (a :class:`ItemTrie`, or a list of one per example, e.g. each
        matching example's candidates) constrains the output to valid item ids.
        """
        enc = self.encode(batch)
        def allowed(batch_id, prefix):
            trie = allowed_prefixes[batch_id] if isinstance(allowed_prefixes, list) else allowed_prefixes
            return trie.next_tokens(prefix.tolist()[1:])

        fn = allowed if allowed_prefixes is not None else None
        out = self.t5.generate(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc), attention_mask=batch.attention_mask,
            num_beams=num_beams, num_return_sequences=num_return, max_new_tokens=max_new_tokens,
            do_sample=False, early_stopping=num_beams > 1, prefix_allowed_tokens_fn=fn,
            renormalize_logits=allowed_prefixes is not None, **kwargs)
        seqs = out.tolist()
        return [[s[1:] for s in seqs[b * num_return:(b + 1) * num_return]] for b in range(len(batch.input_ids))]


class ItemTrie:
    """Prefix trie over the token sequences of valid item ids (for constrained decoding)."""

    def __init__(self, sequences: list[list[int]]):
        self.root: dict = {}
        for seq in sequences:
            node = self.root
            for t in seq:
                node = node.setdefault(t, {})

    def next_tokens(self, prefix: list[int]) -> list[int]:
        node = self.root
        for t in prefix:
            if t not in node:
                return [EOS_ID]
            node = node[t]
        return list(node) or [EOS_ID]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def load_tensors(path: Path):
    """``torch.load`` of a file that should hold only tensors (``weights_only=True``).

    A file that needs more (code, arbitrary objects) is refused in one line; torch's
    own message is several lines of advice to retry with ``weights_only=False``,
    which is exactly what must not be done with a file one did not write.
    """
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # a call or class the weights-only unpickler refuses: the file asks to run code
        if "Unsupported global" in str(e) or "not an allowed global" in str(e):
            raise CheckpointError(f"{path}: holds code or objects other than tensors, will not be loaded") from None
        raise CheckpointError(f"{path}: not a PyTorch state dict (not a torch.save file, or damaged)") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, random bytes, a folder
        raise CheckpointError(f"{path}: not a PyTorch state dict ({_first_line(e)})") from None




# T5Config fields that size the model: anything but a positive integer failed deep inside torch
_SIZES = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "relative_attention_num_buckets")


def _read_config(path: Path) -> T5Config:
    d = read_json_object(path)
    for name in _SIZES + ("num_decoder_layers",):
        if name not in d:
            if name in _SIZES:
                raise CheckpointError(f"{path}: field '{name}' is missing")
            continue
        v = d[name]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise CheckpointError(f"{path}: field '{name}' must be a whole number >= 1, got {v!r}")
    try:
        return T5Config.from_dict(d)
    except Exception as e:  # noqa: BLE001 - transformers' own checks
        raise CheckpointError(f"{path}: not a T5 config ({_first_line(e)})") from None


def _config_from_state(path, state: dict) -> T5Config:
    """Infer a T5 v1.0 config from the tensor shapes of a P5 state dict."""
    if "shared.weight" not in state:
        raise CheckpointError(f"{path}: no 'shared.weight' tensor; not a T5/P5 checkpoint")
    vocab, d_model = state["shared.weight"].shape
    enc_layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.block\.(\d+)\.", k))}
    dec_layers = {int(m.group(1)) for k in state if (m := re.match(r"decoder\.block\.(\d+)\.", k))}
    bias = state.get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    q = state.get("encoder.block.0.layer.0.SelfAttention.q.weight")
    wi = state.get("encoder.block.0.layer.1.DenseReluDense.wi.weight")
    if bias is None or q is None or wi is None or not enc_layers:
        raise CheckpointError(f"{path}: encoder.block.0 tensors are missing; not a T5 v1.0/P5 checkpoint")
    n_heads = bias.shape[1]
    return T5Config(vocab_size=vocab, d_model=d_model, d_kv=q.shape[0] // n_heads, d_ff=wi.shape[0],
                    num_layers=len(enc_layers), num_decoder_layers=len(dec_layers) or len(enc_layers),
                    num_heads=n_heads, relative_attention_num_buckets=bias.shape[0],
                    feed_forward_proj="relu", dropout_rate=0.1,
                    decoder_start_token_id=PAD_ID, pad_token_id=PAD_ID, eos_token_id=EOS_ID)


def load_backbone(path: str | Path, spiece: str | None = None, device: str | None = None) -> Backbone:
    """A backbone folder (ours), or a P5 ``.pth`` plus T5's ``spiece.model``."""
    path = Path(path)
    if path.suffix == ".pth":
        if spiece is None:
            raise PapRecError(f"{path}: a P5 checkpoint needs --spiece (T5's spiece.model)")
        return Backbone.from_p5_checkpoint(path, Tokenizer(spiece, TokenizerSpec(n_extra_ids=100)), device)
    return Backbone.load(path, device)
