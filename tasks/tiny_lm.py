"""A small causal LM the project builds itself: a byte-level BPE tokenizer and a Llama trained on shipped text.

No model can be downloaded here, and the generative paths (GPTQ, AWQ,
generation benchmarks) need a decoder-only model whose weights are not
random: greedy continuations of a random model are noise, and quantization
error on noise says nothing. So Ratchet trains one on the support-agent text
it ships (``evals/data/support_prompts.json``), in under a minute on two CPU
cores, and saves it as any Hugging Face model folder (safetensors, config,
tokenizer), loaded by the same code path as a Hub model.

The default size (hidden 128, FFN 256, 2 layers) keeps every Linear dimension
a multiple of 64 and 128: GPT-QModel's CPU kernels need the input size
divisible by the group size and the output size by 16 (GPTQ) or 64 (AWQ).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ratchet.evals import DATA_DIR

DATA = DATA_DIR / "support_prompts.json"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


@dataclass(frozen=True)
class TinyLmSettings:
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    layers: int = 2
    heads: int = 4
    steps: int = 200
    batch_size: int = 16
    window: int = 64
    lr: float = 3e-3
    seed: int = 0


def training_texts() -> list[str]:
    """The shipped tuning texts (customer question and agent answer), never the held-out prompts."""
    return json.loads(DATA.read_text())["texts"]


def build_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def llama_config(tokenizer, settings: TinyLmSettings):
    """A Llama config of ``settings``' shape over ``tokenizer``'s vocabulary and special tokens."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=settings.hidden_size, intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.layers, num_attention_heads=settings.heads, num_key_value_heads=settings.heads,
        max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def train_steps(model, settings: TinyLmSettings, next_batch: Callable[[], dict],
                progress: Callable[[int, int], None] | None = None) -> float:
    """``settings.steps`` AdamW steps (one-cycle schedule, clipped gradients) on ``next_batch()``'s model inputs;
    the last step's loss. The model is left in eval mode."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=settings.steps,
                                                   pct_start=0.1)
    model.train()
    loss = float("nan")
    for step in range(settings.steps):
        out = model(**next_batch())
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        loss = out.loss.item()
        if progress is not None:
            progress(step + 1, settings.steps)
    model.eval()
    return loss


def save_lm(model, tokenizer, out_dir: Path) -> None:
    """A Hugging Face folder (safetensors, config, tokenizer) that generates with the tokenizer's padding."""
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def build_tiny_lm(out_dir: Path, settings: TinyLmSettings = TinyLmSettings(), texts: list[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    """Train the tiny LM on ``texts`` (default: the shipped tuning texts) and save it into ``out_dir``.

    Deterministic for a given seed: random windows of one token stream (each text ends with end of sequence,
    so the model learns to stop), AdamW with a one-cycle schedule.
    """
    import torch
    from transformers import LlamaForCausalLM

    texts = texts if texts is not None else training_texts()
    torch.manual_seed(settings.seed)
    tokenizer = build_tokenizer(texts, settings.vocab_size)
    model = LlamaForCausalLM(llama_config(tokenizer, settings))
    stream = torch.tensor([i for t in texts for i in [tokenizer.bos_token_id, *tokenizer(t)["input_ids"],
                                                      tokenizer.eos_token_id]])
    started = time.perf_counter()

    def windows() -> dict:
        starts = torch.randint(0, len(stream) - settings.window - 1, (settings.batch_size,))
        batch = torch.stack([stream[s:s + settings.window] for s in starts])
        return {"input_ids": batch, "labels": batch}

    loss = train_steps(model, settings, windows, progress)
    out_dir = Path(out_dir)
    save_lm(model, tokenizer, out_dir)
    (out_dir / "ratchet-tiny-lm.json").write_text(json.dumps(
        {"settings": asdict(settings), "texts": len(texts), "tokens": len(stream), "final_loss": loss,
         "train_s": round(time.perf_counter() - started, 1)}, indent=1))
    return out_dir
