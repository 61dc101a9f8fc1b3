"""Hugging Face Llama-family checkpoints <-> this project's Megatron-Core GPT.

Import (`read_hf_folder` + `load_weights`): a transformers folder (config.json, safetensors
weights, one file or sharded with model.safetensors.index.json, and tokenizer.json) of a Llama,
Mistral or Qwen2 model becomes a ModelConfig and the weights of this rank's model chunks, under
any TP / PP / VPP layout: every Megatron tensor is assembled as the full (global) tensor from the
Hugging Face ones and each rank keeps its slice, the way models/init.py initialises. Everything
is checked before any weight is read (architecture and options that map exactly, every weight
present with its shape, the tokenizer fits the embedding, readable safetensors headers); what
does not map exactly is refused with a message naming it.

Export (`hf_state_dict` + `write_hf_folder`): a model loaded at TP=1 / PP=1 (any checkpoint
layout reshards into it, models/inference.py) becomes a transformers folder: LlamaForCausalLM,
or Qwen2ForCausalLM when the attention has q/k/v biases; safetensors (sharded on request),
config.json, generation_config.json, the tokenizer, and a model card written by the caller.

The mapping (Megatron global key, per layer -> Hugging Face names):

    embedding.word_embeddings.weight               model.embed_tokens.weight
    output_layer.weight                            lm_head.weight (absent when tied)
    decoder.final_layernorm.weight                 model.norm.weight
    linear_qkv.layer_norm_weight                   layers.i.input_layernorm.weight
    linear_qkv.weight / .bias                      per query group g: [q heads of g; k_g; v_g]
                                                   of layers.i.self_attn.{q,k,v}_proj
    linear_proj.weight                             layers.i.self_attn.o_proj.weight
    linear_fc1.layer_norm_weight                   layers.i.post_attention_layernorm.weight
    linear_fc1.weight                              [mlp.gate_proj; mlp.up_proj]
    linear_fc2.weight                              layers.i.mlp.down_proj.weight

Both use rotate-half RoPE on the same (already permuted) q/k layout, so no permutation is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import ModelConfig

#: model_type -> the causal-LM class names it may declare.
SUPPORTED = {"llama": ("LlamaForCausalLM",), "mistral": ("MistralForCausalLM",),
             "qwen2": ("Qwen2ForCausalLM",)}
#: Tokenizer files copied along with tokenizer.json when present.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "chat_template.json", "generation_config.json")
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# Megatron's Llama-3 RoPE scaling has these fixed (they are those of every Llama 3.1/3.2 model).
_LLAMA3_FIXED = {"low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": 8192}


class HFError(ValueError):
    """A folder that cannot be imported or a run that cannot be exported; the message names the
    problem (every problem found) and the fix."""


def _problems(what: str, problems: list[str]) -> HFError:
    if len(problems) == 1:
        return HFError(f"{what}: {problems[0]}")
    return HFError(f"{what}: {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems))


# --------------------------------------------------------------------------------- import


@dataclass
class HFSource:
    """A checked Hugging Face folder: what to build and where every weight is."""

    folder: Path
    config: dict
    """config.json as read."""
    model: ModelConfig
    vocab: int
    """Rows of the embedding (config vocab_size); the model's vocabulary, unpadded."""
    weights: dict[str, Path] = field(default_factory=dict)
    """Hugging Face weight name -> the safetensors file holding it."""
    tokenizer: Path | None = None
    """tokenizer.json."""
    tokenizer_vocab: int = 0
    """Tokens of the tokenizer, added tokens included."""

    @property
    def tokenizer_files(self) -> list[Path]:
        """The tokenizer files of the folder worth keeping (config, special tokens, template)."""
        return [self.folder / n for n in TOKENIZER_FILES if (self.folder / n).is_file()]


def _rope(config: dict) -> tuple[float, dict | None]:
    """(theta, scaling dict or None) from either transformers layout: `rope_parameters`
    (transformers 5) or `rope_theta` + `rope_scaling` (4.x)."""
    params = config.get("rope_parameters") or {}
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    scaling = params or config.get("rope_scaling") or None
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) == "default":
        scaling = None
    return float(theta), scaling


def model_config_from_hf(config: dict, seq_len: int | None = None,
                         name: str = "hf") -> tuple[ModelConfig, int, list[str]]:
    """(ModelConfig, vocabulary, problems) of a config.json dict; problems name every option
    that does not map exactly onto this project's model."""
    problems: list[str] = []
    mtype = config.get("model_type")
    arch = list(config.get("architectures") or [])
    if mtype not in SUPPORTED:
        shown = f"model_type {mtype!r}" + (f" ({', '.join(arch)})" if arch else "")
        raise _problems("unsupported architecture", [
            f"{shown} is not a Llama-family decoder; asymptote maps {', '.join(SUPPORTED)} "
            "(RMSNorm, SwiGLU, RoPE, grouped-query attention) exactly and nothing else: pick a "
            "Llama, Mistral or Qwen2-style model, or pretrain one here"])
    bad_arch = [a for a in arch if a not in SUPPORTED[mtype]]
    if bad_arch:
        problems.append(f"architectures {bad_arch}: only the causal-LM head "
                        f"{SUPPORTED[mtype][0]} maps onto this project's model")

    def need(key):
        if key not in config:
            problems.append(f"config.json has no {key!r}")
            return 1
        return config[key]

    hidden, layers = need("hidden_size"), need("num_hidden_layers")
    heads, ffn, vocab = need("num_attention_heads"), need("intermediate_size"), need("vocab_size")
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // max(heads, 1)
    act = config.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        problems.append(f"hidden_act={act!r}: the MLP here is SwiGLU (silu); not mappable")
    if config.get("mlp_bias"):
        problems.append("mlp_bias=true: MLP biases are not supported (only q/k/v biases)")
    # Qwen2 has q/k/v biases; Llama's attention_bias puts them on q, k, v and o: it maps when
    # every o_proj bias is zero (what `asymptote export` writes; checked by read_hf_folder).
    qkv_bias = mtype == "qwen2" or bool(config.get("attention_bias"))
    if float(config.get("partial_rotary_factor", 1.0)) != 1.0:
        problems.append(f"partial_rotary_factor={config['partial_rotary_factor']}: RoPE on part "
                        "of each head is not supported")
    if config.get("quantization_config"):
        problems.append("quantization_config: quantized weights cannot be imported; give the "
                        "full-precision checkpoint")
    types = set(config.get("layer_types") or ["full_attention"])
    if types - {"full_attention", "sliding_attention"}:
        problems.append(f"layer_types {sorted(types)}: only full attention is supported")
    max_pos = int(config.get("max_position_embeddings") or 4096)
    seq = int(seq_len or min(max_pos, 4096))
    window = config.get("sliding_window")
    uses_window = (mtype == "mistral" and window is not None) or \
        (mtype == "qwen2" and config.get("use_sliding_window"))
    if "sliding_attention" in types and not uses_window:
        problems.append("layer_types has sliding_attention layers: only full attention is "
                        "supported")
    if uses_window and window is not None and seq > int(window):
        problems.append(f"sliding_window={window} is shorter than the training context "
                        f"seq_len={seq}: attention here is full; import with --seq-len "
                        f"{window} or less (the window then never binds)")
    theta, scaling = _rope(config)
    rope_scaling, factor = None, 1.0
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type"))
        factor = float(scaling.get("factor", 1.0))
        if kind == "linear":
            rope_scaling = "linear"
        elif kind == "llama3":
            rope_scaling = "llama3"
            odd = {k: scaling.get(k) for k, v in _LLAMA3_FIXED.items()
                   if float(scaling.get(k, v)) != v}
            if odd:
                problems.append(f"rope_scaling llama3 with {odd}: Megatron's Llama-3 scaling "
                                f"fixes {_LLAMA3_FIXED}")
        else:
            problems.append(f"rope scaling {kind!r} is not supported (supported: none, linear, "
                            "llama3); dynamic, yarn and longrope change attention beyond the "
                            "rotary frequencies")
    tie_default = False  # LlamaConfig, MistralConfig and Qwen2Config all default to untied
    model = ModelConfig(
        name=name, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, ffn=ffn,
        seq_len=seq, vocab_size=vocab, vocab_multiple=1, init_std=float(
            config.get("initializer_range", 0.02)),
        rope_base=theta, norm_eps=float(config.get("rms_norm_eps", 1e-6)), dropout=0.0,
        rope_scaling=rope_scaling, rope_scaling_factor=factor if rope_scaling else 1.0,
        head_dim=None if head_dim * heads == hidden else head_dim,
        tie_embeddings=bool(config.get("tie_word_embeddings", tie_default)), qkv_bias=qkv_bias,
    )
    if isinstance(heads, int) and isinstance(kv_heads, int) and heads % max(kv_heads, 1):
        problems.append(f"num_attention_heads={heads} is not a multiple of "
                        f"num_key_value_heads={kv_heads}")
    return model, vocab, problems


def expected_weights(model: ModelConfig, vocab: int,
                     o_bias: bool = False) -> dict[str, tuple[int, ...]]:
    """Every Hugging Face weight name of `model` and its shape (`o_bias`: Llama's
    attention_bias, an o_proj bias beside the q/k/v ones)."""
    h, hd = model.hidden, model.head_dim or model.hidden // model.heads
    out = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,)}
    if not model.tie_embeddings:
        out["lm_head.weight"] = (vocab, h)
    for i in range(model.layers):
        p = f"model.layers.{i}."
        out.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (model.heads * hd, h),
            p + "self_attn.k_proj.weight": (model.kv_heads * hd, h),
            p + "self_attn.v_proj.weight": (model.kv_heads * hd, h),
            p + "self_attn.o_proj.weight": (h, model.heads * hd),
            p + "mlp.gate_proj.weight": (model.ffn, h), p + "mlp.up_proj.weight": (model.ffn, h),
            p + "mlp.down_proj.weight": (h, model.ffn),
        })
        if model.qkv_bias:
            out.update({p + "self_attn.q_proj.bias": (model.heads * hd,),
                        p + "self_attn.k_proj.bias": (model.kv_heads * hd,),
                        p + "self_attn.v_proj.bias": (model.kv_heads * hd,)})
        if o_bias:
            out[p + "self_attn.o_proj.bias"] = (h,)
    return out


def _o_bias(config: dict) -> bool:
    """Whether the folder's attention has an o_proj bias (Llama-style attention_bias)."""
    return config.get("model_type") != "qwen2" and bool(config.get("attention_bias"))


def _ignorable(name: str, model: ModelConfig) -> bool:
    """Weights a folder may hold that carry nothing of the model: RoPE buffers of old
    checkpoints, and the output layer duplicated beside tied embeddings."""
    return name.endswith("rotary_emb.inv_freq") or (model.tie_embeddings and name == "lm_head.weight")


def _weight_files(folder: Path, problems: list[str]) -> dict[str, Path]:
    """Weight name -> safetensors file, from the index or the single file; headers are read (a
    corrupt or truncated file is a problem named here)."""
    from safetensors import safe_open

    index = folder / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{index.name} is not a valid index ({exc}); restore it from the "
                            "source of the checkpoint")
            return {}
        files = sorted(set(weight_map.values()))
    elif (folder / SINGLE).is_file():
        weight_map, files = None, [SINGLE]
    else:
        legacy = sorted(p.name for p in folder.glob("*.bin"))
        hint = (f" (it has {', '.join(legacy[:3])}: PyTorch pickles are not read; save the model "
                "with safetensors: model.save_pretrained(folder, safe_serialization=True))"
                if legacy else "")
        problems.append(f"no weights: neither {SINGLE} nor {INDEX} in {folder}{hint}")
        return {}
    where: dict[str, Path] = {}
    for name in files:
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} (listed in {INDEX}) is missing from {folder}; copy or "
                            "download it again")
            continue
        try:
            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
        except Exception as exc:  # safetensors raises its own SafetensorError (and OSError)
            problems.append(f"{name} is not a readable safetensors file ({type(exc).__name__}: "
                            f"{exc}); the file is corrupt or truncated: copy or download it again")
            continue
        for key in keys:
            if weight_map is None or weight_map.get(key) == name:
                where[key] = path
    if weight_map is not None:
        for key, name in weight_map.items():
            if key not in where and (folder / name).is_file() and not any(
                    p.startswith(f"{name} is not") for p in problems):
                problems.append(f"{INDEX} places {key} in {name}, which does not hold it; the "
                                "index does not belong to these files")
    return where


def _read(where: dict[str, Path], key: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(where[key]), framework="pt") as f:
        return f.get_tensor(key)


def _shapes(where: dict[str, Path]) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    out, by_file = {}, {}
    for key, path in where.items():
        by_file.setdefault(path, []).append(key)
    for path, keys in by_file.items():
        with safe_open(str(path), framework="pt") as f:
            for key in keys:
                out[key] = tuple(f.get_slice(key).get_shape())
    return out


def _listing(names: list[str], limit: int = 6) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_hf_folder(folder: str | Path, seq_len: int | None = None,
                   name: str | None = None) -> HFSource:
    """Check a Hugging Face model folder and describe what to import; raises HFError naming
    every problem. Reads config.json, the safetensors headers and tokenizer.json only."""
    folder = Path(folder).expanduser().absolute()
    what = f"cannot import {folder}"
    if not folder.is_dir():
        raise HFError(f"{what}: no such folder; give a local Hugging Face model folder "
                      "(config.json, *.safetensors, tokenizer.json)")
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise HFError(f"{what}: no config.json; it is not a Hugging Face model folder (save one "
                      "with model.save_pretrained(folder))")
    try:
        config = json.loads(cfg_file.read_text())
    except ValueError as exc:
        raise HFError(f"{what}: config.json is not valid JSON ({exc})") from None
    try:
        model, vocab, problems = model_config_from_hf(
            config, seq_len, name or _model_name(folder, config))
    except HFError as exc:
        raise HFError(f"{what}: {exc}") from None
    where = _weight_files(folder, problems)
    if where:
        shapes = _shapes(where)
        want = expected_weights(model, vocab, _o_bias(config))
        missing = [k for k in want if k not in shapes]
        if missing:
            problems.append(f"missing weight(s): {_listing(missing)}; the checkpoint is "
                            "incomplete (a shard not copied?) or its config.json does not "
                            "describe it")
        extra = [k for k in shapes if k not in want and not _ignorable(k, model)]
        if extra:
            problems.append(f"weight(s) this architecture has no place for: {_listing(extra)}; "
                            "config.json does not describe these weights")
        wrong = [f"{k} {list(shapes[k])} (expected {list(s)})" for k, s in want.items()
                 if k in shapes and shapes[k] != s]
        if wrong:
            problems.append(f"weight shape(s) that disagree with config.json: {_listing(wrong, 4)}")
        if _o_bias(config) and not missing and not wrong:
            nonzero = [k for k in want if k.endswith("o_proj.bias") and _read(where, k).any()]
            if nonzero:
                problems.append(
                    f"attention_bias=true with nonzero o_proj biases ({_listing(nonzero, 3)}): "
                    "this project's attention has biases on q, k and v only (Qwen2-style); "
                    "not mappable")
    tokenizer, tok_vocab = folder / "tokenizer.json", 0
    if not tokenizer.is_file():
        problems.append("no tokenizer.json: save the fast tokenizer with the model "
                        "(AutoTokenizer.from_pretrained(...).save_pretrained(folder)); a "
                        "slow-only tokenizer (tokenizer.model alone) cannot be used")
        tokenizer = None
    else:
        from ..data.tokenizer import Tokenizer

        try:
            tok = Tokenizer.load(tokenizer)
        except Exception as exc:
            problems.append(f"tokenizer.json cannot be used: {exc}")
        else:
            ids = tok._tok.get_vocab(with_added_tokens=True).values()
            tok_vocab = max(max(ids, default=-1) + 1, tok.vocab_size)
            if isinstance(vocab, int) and tok_vocab > vocab:
                problems.append(
                    f"the tokenizer has {tok_vocab} token ids but the embedding has {vocab} rows "
                    "(config vocab_size): ids beyond it have no embedding. The tokenizer does "
                    "not belong to this model: put the model's own tokenizer.json in the folder")
    if problems:
        raise _problems(what, problems)
    return HFSource(folder, config, model, vocab, where, tokenizer, tok_vocab)


def _model_name(folder: Path, config: dict) -> str:
    """A readable model name for run folders: the folder's name, safe for paths."""
    import re

    raw = folder.resolve().name or config.get("model_type", "hf")
    return re.sub(r"[^A-Za-z0-9_.]+", "_", raw).strip("_") or "hf"


class _Reader:
    """Full fp32 Megatron tensors from a folder's safetensors (handles opened once)."""

    def __init__(self, source: HFSource):
        self.source, self.handles, self.last = source, {}, (None, None)

    def hf(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        path = self.source.weights[name]
        if path not in self.handles:
            self.handles[path] = safe_open(str(path), framework="pt")
        return self.handles[path].get_tensor(name).to(torch.float32)

    def megatron(self, key: str, layer: int | None) -> torch.Tensor:
        if self.last[0] == (key, layer):
            return self.last[1]
        value = _to_megatron(key, layer, self.hf, self.source.model)
        self.last = ((key, layer), value)
        return value


def _leaf(key: str) -> str:
    return key.removeprefix("decoder.layers.")


def _to_megatron(key: str, layer: int | None, hf, model: ModelConfig) -> torch.Tensor:
    """The full Megatron tensor `key` (of `layer`) from Hugging Face tensors `hf(name)`."""
    if key == "embedding.word_embeddings.weight":
        return hf("model.embed_tokens.weight")
    if key == "output_layer.weight":
        return hf("model.embed_tokens.weight" if model.tie_embeddings else "lm_head.weight")
    if key == "decoder.final_layernorm.weight":
        return hf("model.norm.weight")
    p = f"model.layers.{layer}."
    leaf = _leaf(key)
    if leaf == "self_attention.linear_qkv.layer_norm_weight":
        return hf(p + "input_layernorm.weight")
    if leaf == "mlp.linear_fc1.layer_norm_weight":
        return hf(p + "post_attention_layernorm.weight")
    if leaf in ("self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias"):
        kind = leaf.rpartition(".")[2]
        q, k, v = (hf(f"{p}self_attn.{n}_proj.{kind}") for n in "qkv")
        return qkv_interleave(q, k, v, model.kv_heads)
    if leaf == "self_attention.linear_proj.weight":
        return hf(p + "self_attn.o_proj.weight")
    if leaf == "mlp.linear_fc1.weight":
        return torch.cat([hf(p + "mlp.gate_proj.weight"), hf(p + "mlp.up_proj.weight")])
    if leaf == "mlp.linear_fc2.weight":
        return hf(p + "mlp.down_proj.weight")
    raise HFError(f"the model has a tensor {key!r} with no Hugging Face counterpart "
                  "(a model option this mapping does not know)")


def qkv_interleave(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: int) -> torch.Tensor:
    """Megatron's fused QKV: per query group, that group's query heads, its key, its value."""
    rest = q.shape[1:]
    parts = [t.reshape(groups, -1, *rest) for t in (q, k, v)]
    return torch.cat(parts, dim=1).reshape(-1, *rest)


def qkv_split(qkv: torch.Tensor, heads: int, groups: int) -> tuple[torch.Tensor, ...]:
    """Inverse of :func:`qkv_interleave`: (q, k, v) of a full fused QKV tensor."""
    rest = qkv.shape[1:]
    per = qkv.shape[0] // groups  # rows of one group: (heads / groups + 2) x head_dim
    hd = per // (heads // groups + 2)
    g = qkv.reshape(groups, per, *rest)
    qn = per - 2 * hd
    q, k, v = g[:, :qn], g[:, qn:qn + hd], g[:, qn + hd:]
    return tuple(t.reshape(-1, *rest).contiguous() for t in (q, k, v))


def _sharded(chunks):
    from .init import _sharded_tensors

    for st in _sharded_tensors(chunks):
        if st.key.endswith("_extra_state"):
            continue
        pre = st.prepend_axis_num
        layer = st.global_offset[0] if pre else None
        if pre > 1:
            raise HFError(f"{st.key}: nested layer axes (experts?) are not supported")
        yield st, pre, layer


@torch.no_grad()
def load_weights(chunks: list[torch.nn.Module], source: HFSource) -> int:
    """Fill this rank's `chunks` (built for `source.model` and `source.vocab`, any layout) with
    the folder's weights; returns the number of tensors filled."""
    reader, count = _Reader(source), 0
    for st, pre, layer in _sharded(chunks):
        full = reader.megatron(st.key, layer)
        own_shape = tuple(st.global_shape[pre:])
        if tuple(full.shape) != own_shape:
            raise HFError(f"{st.key} (layer {layer}): the model expects {list(own_shape)}, the "
                          f"checkpoint gives {list(full.shape)}; build the model from "
                          "read_hf_folder's config")
        index = tuple(slice(o, o + n) for o, n in zip(st.global_offset[pre:], st.local_shape))
        st.data.copy_(full[index].to(st.data.dtype))
        count += 1
    return count


# --------------------------------------------------------------------------------- export


@torch.no_grad()
def hf_state_dict(chunks: list[torch.nn.Module], model: ModelConfig,
                  arch: str = "llama") -> dict[str, torch.Tensor]:
    """Hugging Face weights (fp32, full) of a model loaded at TP=1 and PP=1, for `arch`
    (:func:`export_arch`): a Llama with q/k/v biases also gets zero o_proj biases."""
    from megatron.core import parallel_state as ps

    if ps.get_tensor_model_parallel_world_size() != 1 or \
            ps.get_pipeline_model_parallel_world_size() != 1:
        raise HFError("export needs the model at tp=1, pp=1 (a checkpoint of any layout loads "
                      "into it)")
    full: dict[tuple[str, int | None], torch.Tensor] = {}
    for st, pre, layer in _sharded(chunks):
        shape = tuple(st.global_shape[pre:])
        t = full.setdefault((st.key, layer), torch.empty(shape, dtype=torch.float32))
        index = tuple(slice(o, o + n) for o, n in zip(st.global_offset[pre:], st.local_shape))
        t[index] = st.data.detach().to("cpu", torch.float32)
    out = {}
    for (key, layer), t in full.items():
        p = f"model.layers.{layer}."
        leaf = _leaf(key)
        if key == "embedding.word_embeddings.weight":
            out["model.embed_tokens.weight"] = t
        elif key == "output_layer.weight":
            out["lm_head.weight"] = t
        elif key == "decoder.final_layernorm.weight":
            out["model.norm.weight"] = t
        elif leaf == "self_attention.linear_qkv.layer_norm_weight":
            out[p + "input_layernorm.weight"] = t
        elif leaf == "mlp.linear_fc1.layer_norm_weight":
            out[p + "post_attention_layernorm.weight"] = t
        elif leaf in ("self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias"):
            kind = leaf.rpartition(".")[2]
            for n, part in zip("qkv", qkv_split(t, model.heads, model.kv_heads)):
                out[f"{p}self_attn.{n}_proj.{kind}"] = part
        elif leaf == "self_attention.linear_proj.weight":
            out[p + "self_attn.o_proj.weight"] = t
        elif leaf == "mlp.linear_fc1.weight":
            gate, up = t.chunk(2)
            out[p + "mlp.gate_proj.weight"], out[p + "mlp.up_proj.weight"] = \
                gate.contiguous(), up.contiguous()
        elif leaf == "mlp.linear_fc2.weight":
            out[p + "mlp.down_proj.weight"] = t
        else:
            raise HFError(f"the model has a tensor {key!r} with no Hugging Face counterpart")
    if model.tie_embeddings:
        out.pop("lm_head.weight", None)
    if model.qkv_bias and arch == "llama":
        for i in range(model.layers):
            out[f"model.layers.{i}.self_attn.o_proj.bias"] = torch.zeros(model.hidden)
    return out


def export_arch(model: ModelConfig, origin_model_type: str | None = None) -> str:
    """The transformers architecture an export uses: `qwen2` for q/k/v biases of a model that
    came from a Qwen2 (its tokenizer files then come along), else `llama` (q/k/v biases as
    Llama's attention_bias with zero o_proj biases: transformers 5 loads any model_type qwen2
    folder with its Qwen2Tokenizer, which would re-split another tokenizer's text)."""
    return "qwen2" if model.qkv_bias and origin_model_type == "qwen2" else "llama"


def hf_config_dict(model: ModelConfig, vocab: int, eos_id: int, bos_id: int | None,
                   dtype: str = "float32", arch: str = "llama"):
    """A transformers config of `model`: LlamaConfig, or Qwen2Config for `arch="qwen2"`."""
    from transformers import LlamaConfig, Qwen2Config

    scaling = None
    if model.rope_scaling == "llama3":
        scaling = {"rope_type": "llama3", "factor": float(model.rope_scaling_factor),
                   **_LLAMA3_FIXED}
    elif model.rope_scaling == "linear":
        scaling = {"rope_type": "linear", "factor": float(model.rope_scaling_factor)}
    common = dict(
        vocab_size=vocab, hidden_size=model.hidden, intermediate_size=model.ffn,
        num_hidden_layers=model.layers, num_attention_heads=model.heads,
        num_key_value_heads=model.kv_heads, hidden_act="silu",
        max_position_embeddings=model.seq_len, initializer_range=model.init_std,
        rms_norm_eps=model.norm_eps, tie_word_embeddings=model.tie_embeddings,
        rope_theta=float(model.rope_base), rope_scaling=scaling, attention_dropout=0.0,
        bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=None, use_cache=True,
    )
    if arch == "qwen2":
        if model.head_dim and model.head_dim * model.heads != model.hidden:
            raise HFError(f"model.head_dim={model.head_dim} with q/k/v biases: Qwen2Config has "
                          "no head_dim; not exportable")
        cfg = Qwen2Config(use_sliding_window=False, sliding_window=None, **common)
        cfg.architectures = ["Qwen2ForCausalLM"]
    else:
        cfg = LlamaConfig(attention_bias=model.qkv_bias, mlp_bias=False,
                          head_dim=model.head_dim or model.hidden // model.heads, **common)
        cfg.architectures = ["LlamaForCausalLM"]
    setattr(cfg, "dtype" if _transformers_version() >= (4, 56) else "torch_dtype", dtype)
    return cfg


def _transformers_version() -> tuple[int, int]:
    import transformers

    return tuple(int(x) for x in transformers.__version__.split(".")[:2])


def parse_size(text: str | int | None) -> int | None:
    """'2GB', '500MB', '10KB' or a byte count -> bytes (None stays None)."""
    if text is None or isinstance(text, int):
        return text
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
             "B": 1}
    s = str(text).strip().upper()
    for unit in sorted(units, key=len, reverse=True):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * units[unit])
    return int(s)


def save_safetensors(state: dict[str, torch.Tensor], folder: Path,
                     max_shard_bytes: int | None = None) -> list[str]:
    """Write `state` as model.safetensors, or as model-0000i-of-0000n.safetensors shards of at
    most `max_shard_bytes` each (a tensor larger than that gets a shard of its own) plus
    model.safetensors.index.json. Returns the files written."""
    from safetensors.torch import save_file

    names = list(state)
    total = sum(state[n].numel() * state[n].element_size() for n in names)
    shards: list[list[str]] = [[]]
    size = 0
    for n in names:
        nbytes = state[n].numel() * state[n].element_size()
        if max_shard_bytes and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(n)
        size += nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file({n: state[n].contiguous() for n in shards[0]}, str(folder / SINGLE), meta)
        return [SINGLE]
    files, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: state[n].contiguous() for n in shard}, str(folder / name), meta)
        files.append(name)
        weight_map.update({n: name for n in shard})
    (folder / INDEX).write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return files + [INDEX]


def write_tokenizer(folder: Path, tokenizer_json: Path, seq_len: int, eod: str,
                    hf_files: list[Path] = ()) -> None:
    """tokenizer.json (the run's own bytes, so its identity is kept) with a tokenizer config
    AutoTokenizer loads: the original folder's files when the run came from Hugging Face
    (`hf_files`), else a PreTrainedTokenizerFast config with EOD as bos, eos and pad (documents
    are separated by EOD in training, so it is also the start-of-text token)."""
    import shutil

    for f in hf_files:
        if f.name != "generation_config.json":
            shutil.copyfile(f, folder / f.name)
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    if not (folder / "tokenizer_config.json").is_file():
        (folder / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": eod, "eos_token": eod,
            "pad_token": eod, "model_max_length": seq_len, "clean_up_tokenization_spaces": False,
        }, indent=2))


def write_hf_folder(folder: Path, state: dict[str, torch.Tensor], config,
                    max_shard_bytes: int | None = None, dtype: str = "float32") -> list[str]:
    """Weights (converted to `dtype`), config.json and generation_config.json into `folder`."""
    from transformers import GenerationConfig

    tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16,
              "float16": torch.float16}[dtype]
    files = save_safetensors({k: v.to(tdtype) for k, v in state.items()}, folder, max_shard_bytes)
    config.save_pretrained(str(folder))
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                     pad_token_id=config.eos_token_id).save_pretrained(str(folder))
    return files


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the relative error the tests and the export check use."""
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))


def nbytes_text(n: int) -> str:
    """Human-readable size (for messages and the model card)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n}"


__all__ = ["HFError", "HFSource", "read_hf_folder", "load_weights", "hf_state_dict",
           "hf_config_dict", "write_hf_folder", "write_tokenizer", "expected_weights",
           "model_config_from_hf", "qkv_interleave", "qkv_split", "parse_size", "rel_error",
           "SUPPORTED"]


# --------------------------------------------------------------------------------- checks


def load_transformers(folder: str | Path):
    """AutoModelForCausalLM of `folder` in fp32 on CPU, eval mode (transformers 4.x or 5.x)."""
    from transformers import AutoModelForCausalLM

    key = "dtype" if _transformers_version() >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(str(folder), **{key: torch.float32})
    return model.eval()


@torch.no_grad()
def compare_logits(folder: str | Path, ours, tokens_in_use: int, length: int,
                   batch: int = 2, seed: int = 0) -> float:
    """Relative difference (:func:`rel_error`) between transformers' logits of `folder` and
    `ours(tokens) -> [batch, length, vocab]` on random tokens below `tokens_in_use`."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, tokens_in_use, (batch, length), generator=gen)
    theirs = load_transformers(folder)(tokens).logits.float()
    mine = ours(tokens).float().cpu()
    if mine.shape != theirs.shape:
        raise HFError(f"logits of shape {list(mine.shape)} vs transformers' {list(theirs.shape)}")
    return rel_error(mine, theirs)
