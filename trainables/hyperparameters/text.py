"""The text fine-tuning trainable's hyperparameters (seed D): which BERT-family model (a hub name, a saved
folder, a package, or a scratch BERT built from its size), the text files and their columns, and the
training knobs; it trains in ``trainables/text_finetune.py``."""

from __future__ import annotations

from pydantic import Field, model_validator

from trainables.registry import LOCAL_PATH, Hyperparameters, declare

SCRATCH = "scratch"


class TextParams(Hyperparameters):
    model_name: str = Field(
        SCRATCH,
        description="hub name, save_pretrained directory, package:NAME, or 'scratch'",
        json_schema_extra=LOCAL_PATH,
    )
    # The scratch BERT's size (model_name: scratch only).
    hidden_size: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    vocab_size: int = Field(2000, ge=50, description="scratch tokenizer's WordPiece vocabulary")

    train_file: str | None = Field(
        None, description="CSV, TSV or JSONL; none: the generated sentiment set", json_schema_extra=LOCAL_PATH
    )
    valid_file: str | None = Field(None, json_schema_extra=LOCAL_PATH)
    test_file: str | None = Field(None, json_schema_extra=LOCAL_PATH)
    text_column: str = "text"
    label_column: str = "label"
    valid_ratio: float = Field(0.1, gt=0, lt=1, description="cut from train when there is no valid_file")
    test_ratio: float = Field(0.1, gt=0, lt=1, description="cut from train when there is no test_file")
    split_seed: int = 0
    generated_examples: int = Field(4000, ge=50)
    label_noise: float = Field(0.1, ge=0, lt=0.5)

    lr: float = Field(5e-4, gt=0)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(10, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_length: int = Field(64, ge=4)
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping; none turns it off")
    dropout: float | None = Field(None, ge=0, lt=1, description="hidden dropout; none keeps the model's")
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better accuracy")
    amp: bool = True  # bfloat16 autocast, on CUDA only
    save_model: bool = Field(True, description="the weights that scored the trial's value become its checkpoint")

    @model_validator(mode="after")
    def _scratch_options_only_for_scratch(self) -> "TextParams":
        if self.model_name == SCRATCH:
            if self.hidden_size % self.heads:
                raise ValueError(f"heads ({self.heads}) must divide hidden_size ({self.hidden_size})")
        else:
            given = sorted({"hidden_size", "layers", "heads", "vocab_size"} & self.model_fields_set)
            if given:
                raise ValueError(f"{', '.join(given)} apply to model_name: scratch only (got {self.model_name!r})")
        return self


# What a fine-tuning trial reports at each step; the test split, speed and size at its end (blocks.run_figures).
TEXT_METRICS = (
    "train_loss", "valid_loss", "valid_accuracy", "epoch", "best_valid_accuracy", "best_epoch",
    "valid_loss_min_epoch", "test_loss", "test_accuracy", "epochs_run", "seconds_per_epoch", "param_count",
)  # fmt: skip

declare(
    "text-finetune",
    params=TextParams,
    metric="valid_accuracy",
    mode="max",
    description="Fine-tune a BERT-family classifier on CSV/TSV/JSONL text, or a scratch BERT offline (seed D).",
    reports=TEXT_METRICS,
    trains="trainables.text_finetune:text_finetune",
    preflight="trainables.text_finetune:preflight",
    export="trainables.text_finetune:export_pretrained",
)
