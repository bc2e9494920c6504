"""A user's plain function found by reading its file, not by running it.

The driver of a sweep needs little of a plain ``fn(config)`` / ``fn(config, session)``: that it exists,
that it takes one or two arguments, and that its file can be imported where the trials run. Importing the
file to learn that costs what the file's imports cost (Lightning: about 6 s of CPU on this machine), paid
again by every trial worker, which must import it anyway. So the file is parsed instead, and refused in one
line, before anything runs, when:

* it does not parse (a syntax error, with its line);
* it has no such function, or the function takes other than one or two arguments;
* one of its top-level imports names a module that is not installed (``importlib.util.find_spec``: found,
  not run).

What reading cannot tell (an error the module raises as it runs, a function made at run time) shows in the
first trials, which fail alike with the module's line, and fail-fast stops the sweep. A file that
registers trainables (``@trainable``, ``fusable``) or binds the name other than by one undecorated ``def``
is imported as before: only the import can say what it registers.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from trainables.errors import TrainableError

# Calls that register a trainable: a file making one is imported, so the registration happens.
REGISTERING = {"trainable", "fusable", "declare"}


@dataclass(frozen=True)
class PlainFunction:
    """What reading found: the function's argument count and the first line of its docstring."""

    n_args: int
    description: str


def read(path: Path, attr: str) -> PlainFunction | None:
    """The plain function ``attr`` defined in ``path``, read without running the file; None when only an
    import can tell (see the module's docstring). Raises ``TrainableError`` for what reading can refuse."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as e:
        raise TrainableError(f"importing {path} failed: line {e.lineno}: SyntaxError: {e.msg}") from None
    except ValueError as e:  # null bytes
        raise TrainableError(f"importing {path} failed: {e}") from None
    if _registers(tree):
        return None
    binds = [node for node in tree.body if attr in _bound_names(node)]
    if len(binds) != 1 or not isinstance(binds[0], ast.FunctionDef) or binds[0].decorator_list:
        return None  # not found (a star import may bind it), bound twice, decorated, async, or assigned
    _check_imports(tree, path)
    fn = binds[0]
    args = fn.args
    n_args = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) + bool(args.vararg) + bool(args.kwarg)
    doc = (ast.get_docstring(fn) or "").strip().splitlines()
    return PlainFunction(n_args, doc[0] if doc else "")


def _registers(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in REGISTERING:
                return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
            (d.id if isinstance(d, ast.Name) else getattr(d, "attr", None)) in REGISTERING for d in node.decorator_list
        ):
            return True
    return False


def _bound_names(node: ast.stmt) -> set[str]:
    """The names a top-level statement binds (a star import binds any: ``*``)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] if a.name != "*" else "*" for a in node.names}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    # if/try/with/for at the top level may bind anything: count them as binding every name they assign
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} | {
        n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def _check_imports(tree: ast.Module, path: Path) -> None:
    """Each unconditional top-level import names an installed module (its top-level package, found not run);
    an import inside ``try`` or ``if`` may be optional and is left to the trial."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            try:
                found = importlib.util.find_spec(top) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise TrainableError(
                    f"importing {path} failed: line {node.lineno}: ModuleNotFoundError: No module named {top!r}"
                )
