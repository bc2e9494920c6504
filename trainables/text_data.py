"""Text-classification data: the user's CSV / TSV / JSONL files, or a generated sentiment set.

Every problem with a file is a ValueError naming the file (and line), so ``hpsearch run`` can refuse a
sweep before any trial starts. Labels may be strings or integers; they are numbered in sorted order
(numerically when every label is an integer), the same in every split.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".ndjson": None}


@dataclass(frozen=True)
class Examples:
    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class TextSplits:
    train: Examples
    valid: Examples
    test: Examples
    label_names: list[str]

    def label_ids(self, split: Examples) -> list[int]:
        index = {name: i for i, name in enumerate(self.label_names)}
        return [index[label] for label in split.labels]


def read_table(path: str | Path, text_column: str, label_column: str, role: str = "data file") -> Examples:
    """Read one file of examples; ``role`` (train_file, ...) names it in errors."""
    path = Path(path).expanduser()
    where = f"{role} {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{where}: format must be .csv, .tsv or .jsonl (got {suffix or 'no suffix'!r})")
    if not path.is_file():
        raise ValueError(f"{where}: no such file")
    with path.open(newline="", encoding="utf-8") as f:
        rows = _jsonl_rows(f, where) if FORMATS[suffix] is None else _delimited_rows(f, FORMATS[suffix], where)
        texts, labels = [], []
        for line, row in rows:
            for column in (text_column, label_column):
                if column not in row:
                    columns = ", ".join(map(str, row)) or "none"
                    option = "text_column" if column == text_column else "label_column"
                    raise ValueError(f"{where}: no column {column!r} (columns: {columns}); set {option}")
            text, label = row[text_column], row[label_column]
            if text is None or str(text).strip() == "":
                raise ValueError(f"{where} line {line}: empty {text_column!r}")
            if label is None or str(label).strip() == "":
                raise ValueError(f"{where} line {line}: empty {label_column!r}")
            texts.append(str(text))
            labels.append(str(label).strip())
    if not texts:
        raise ValueError(f"{where}: no examples (the file is empty or has only a header)")
    return Examples(texts, labels)


def _delimited_rows(f, delimiter: str, where: str):
    reader = csv.DictReader(f, delimiter=delimiter)
    if reader.fieldnames is None:
        return
    for row in reader:
        if None in row:  # more cells than header columns
            raise ValueError(f"{where} line {reader.line_num}: more cells than the header has columns")
        yield reader.line_num, row


def _jsonl_rows(f, where: str):
    for line, raw in enumerate(f, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} line {line}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where} line {line}: each line must be a JSON object")
        yield line, row


def split_by_ratio(data: Examples, ratio: float, seed: int) -> tuple[Examples, Examples]:
    """Shuffle with ``seed`` and cut off ``ratio`` of the examples: (rest, cut)."""
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    n_cut = round(len(order) * ratio)
    if n_cut == 0 or n_cut == len(order):
        raise ValueError(f"a {ratio:g} split of {len(order)} examples leaves an empty split; give it as a file")
    pick = lambda idx: Examples([data.texts[i] for i in idx], [data.labels[i] for i in idx])  # noqa: E731
    return pick(order[n_cut:]), pick(order[:n_cut])


def label_names(train: Examples) -> list[str]:
    names = sorted(set(train.labels))
    return sorted(names, key=int) if all(_is_int(n) for n in names) else names


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


def make_splits(
    train: Examples,
    valid: Examples | None,
    test: Examples | None,
    valid_ratio: float,
    test_ratio: float,
    split_seed: int,
    train_role: str = "train_file",
) -> TextSplits:
    """Fill in missing validation / test splits from the training examples, then check the labels."""
    if test is None:
        train, test = split_by_ratio(train, test_ratio, split_seed)
    if valid is None:
        train, valid = split_by_ratio(train, valid_ratio, split_seed + 1)
    names = label_names(train)
    if len(names) < 2:
        raise ValueError(f"{train_role}: needs at least two labels (got {names})")
    for role, split in (("validation", valid), ("test", test)):
        unseen = sorted(set(split.labels) - set(names))
        if unseen:
            raise ValueError(f"{role} labels never seen in training: {', '.join(unseen[:5])}")
    return TextSplits(train, valid, test, names)


# ----------------------------------------------------------------------------- generated sentiment

SUBJECTS = ["the movie", "the plot", "the acting", "the soundtrack", "the ending", "the cast", "the script",
            "the pacing", "the dialogue", "the camera work", "the story", "the director"]  # fmt: skip
POSITIVE = ["good", "great", "wonderful", "brilliant", "charming", "moving", "funny", "clever", "gripping", "fresh"]
NEGATIVE = ["bad", "boring", "awful", "dull", "weak", "clumsy", "tedious", "forgettable", "silly", "flat"]
INTENSIFIERS = ["", "", "really ", "very ", "quite ", "so "]
NEGATORS = ["not ", "never ", "hardly "]


def _clause(rng: random.Random) -> tuple[str, int]:
    """'the plot was (not) very clever' and its polarity (1 positive, 0 negative)."""
    positive = rng.random() < 0.5
    adjective = rng.choice(POSITIVE if positive else NEGATIVE)
    negated = rng.random() < 0.4
    verb = rng.choice(["was", "is", "felt", "seemed"])
    words = f"{rng.choice(SUBJECTS)} {verb} {rng.choice(NEGATORS) if negated else ''}{rng.choice(INTENSIFIERS)}"
    return words + adjective, int(positive != negated)


def generate_sentiment(n: int, seed: int, label_noise: float) -> Examples:
    """Review-like sentences whose label depends on word order, not only on which words occur.

    Negation flips a clause; in "A but B" and "although A, B" the second clause decides, so the same bag
    of words can be positive or negative. ``label_noise`` flips that fraction of labels (in every split,
    like annotation noise), which caps accuracy and makes a long training run overfit.
    """
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        (a, pa), (b, pb) = _clause(rng), _clause(rng)
        form = rng.random()
        if form < 0.35:
            text, label = a, pa
        elif form < 0.6:
            text, label = f"{a} but {b}", pb
        elif form < 0.8:
            text, label = f"although {a} , {b}", pb
        elif form < 0.9:
            text, label = f"i did not think {a}", 1 - pa
        else:
            text, label = f"{a} and {b}" if pa == pb else f"{a} , yet {b}", pb
        if rng.random() < label_noise:
            label = 1 - label
        texts.append(text)
        labels.append("positive" if label else "negative")
    return Examples(texts, labels)
