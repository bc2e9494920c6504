"""MLflow's writes for trial runs in a process of their own, so the driver's loop spends no CPU on them.

MLflow's SQL store spends several milliseconds of Python on each call, and a trial needs at least four
(create, log, tag, end): on the driver's one thread, which Ray's loop and the study also need, that was a
third of a short trial's cost. Here a writer process makes the same ``MlflowClient`` calls, in the order
the driver asked for them, on another core:

* ``create_run`` returns at once; ``run_id(key)`` waits for the id when the driver needs it (artifacts,
  the study's ``mlflow_run_id``);
* ``log_batch`` and ``set_terminated`` return at once;
* the sweep's own writes (its experiment, its parent run's file, a trial's artifacts, opening the store)
  are calls: the driver waits for each one's answer, and its failure is raised there;
* ``sync()`` waits until everything asked so far is written and raises what failed. The driver syncs
  before it tells the study that a trial ended, so a trial the study holds as finished has every step
  in MLflow, as when the driver wrote them itself. While it waits for a backlog (a trial that reported a
  million metric values), ``on_wait(written, sent)`` is called every WAIT_REPORT_S seconds, so the
  driver can say what it is waiting for.

The writer ignores Ctrl-C and SIGTERM: it ends when the driver closes its input (``close``), or dies,
after writing what it was given. Commands and answers are pickles over its stdin and stdout (the
tracking URI, which may hold a password, travels that way too, never on a command line).
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import traceback
from typing import IO, Any, Callable

from search.stores.write_behind import FLUSH_S, Metric, Param, RunTag, batches


class WriterError(RuntimeError):
    """An MLflow write that failed in the writer process: its exception's last line (``detail``: the
    writer's traceback)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class _Calls:
    """What both writers do with their ``MlflowClient`` (``client``; ``runs``: run key -> run id), each
    call written at once: ``InlineWriter`` is these, in the caller's thread; the writer process makes them
    for the driver's commands (``CALLS``: those the driver waits for the answer of)."""

    CALLS = frozenset({"open", "experiment", "reopen", "log_text", "log_artifacts"})

    client: Any
    runs: dict[str, str]

    def open(self, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.client.search_experiments(max_results=1)  # the store answers, and its schema is MLflow's own

    def experiment(self, name: str, location: str | None, tags: dict[str, str]) -> str:
        """The sweep's experiment (one per sweep name), made the first time."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return self.client.create_experiment(name, artifact_location=location, tags=tags)
        for key, value in tags.items():
            if exp.tags.get(key) != value:  # made by an older hpsearch
                self.client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id

    def create_run(self, key: str, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        self.runs[key] = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        return self.runs[key]

    def reopen(self, key: str, run_id: str) -> None:
        """An ended run (a resumed sweep's parent) RUNNING again, and written to as ``key``."""
        self.runs[key] = run_id
        self.client.update_run(run_id, status="RUNNING")

    def log_text(self, key: str, text: str, artifact_file: str) -> None:
        self.client.log_text(self.runs[key], text, artifact_file)

    def log_artifacts(self, key: str, path: str, artifact_path: str) -> None:
        """A file, or a folder's files, into the run's ``artifact_path``: copied before the call returns."""
        log = self.client.log_artifacts if os.path.isdir(path) else self.client.log_artifact
        log(self.runs[key], str(path), artifact_path)

    def log_batch(self, key: str, metrics: list[Metric], params: list[Param], tags: list[RunTag]) -> None:
        for m, p, t in batches(metrics, params, tags):  # within log_batch's limits
            self.client.log_batch(self.runs[key], *entities(m, p, t))

    def set_terminated(self, key: str, status: str) -> None:
        self.client.set_terminated(self.runs[key], status)


def entities(metrics: list[Metric], params: list[Param], tags: list[RunTag]) -> tuple[list, list, list]:
    """MLflow's own entities for what the driver sent (or MLflow's entities again)."""
    from mlflow.entities import Metric as M
    from mlflow.entities import Param as P
    from mlflow.entities import RunTag as T

    return (
        [M(m.key, m.value, m.timestamp, m.step) for m in metrics],
        [P(p.key, p.value) for p in params],
        [T(t.key, t.value) for t in tags],
    )


class InlineWriter(_Calls):
    """The same calls made here, in the caller's thread: for a driver that wants no second process (and
    the callback's unit tests, which run against both)."""

    flush_s = FLUSH_S  # each call costs the caller: a run's steps wait to go in one

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.client: Any = None
        self.runs = {}
        if tracking_uri is not None:
            self.open(tracking_uri)

    def run_id(self, key: str) -> str:
        return self.runs[key]

    def peek(self, key: str) -> str | None:
        return self.runs.get(key)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


WAIT_REPORT_S = 5.0


class MlflowWriter:
    """The driver's side: the writer process, and the answers a reader thread collects from it."""

    # A run's steps still wait a second in the driver and go together: a write per step would cost this
    # process less, but the machine more (measured: 68-79 ms a no-op trial buffered, 88-94 at once).
    flush_s = FLUSH_S

    def __init__(self, tracking_uri: str | None = None) -> None:
        """The process starts here and imports MLflow; it touches the store once ``open`` names it (the
        driver starts it before Ray, so the imports are done by the time the store is ready)."""
        # A process group of its own: a Ctrl-C at the terminal reaches the driver's group, and the writer
        # must not die of it while it imports MLflow, before it can ignore it (main()); it ends when the
        # driver closes its input, or dies.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "search.stores.mlflow_writer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            process_group=0,
        )
        self._cond = threading.Condition()
        self._run_ids: dict[str, str] = {}
        self._synced: dict[int, list[tuple[str, str]]] = {}  # sync token -> the failures it reported
        self._results: dict[int, tuple[Any, tuple[str, str] | None]] = {}  # call token -> value, failure
        self._tokens = 0
        self._dead: str | None = None
        self._sent = 0  # metric values asked to be written, and (below) written, for on_wait
        self._written = 0
        self.on_wait: Callable[[int, int], None] | None = None
        self._closed = self._asked = False
        self._reader = threading.Thread(target=self._read, name="mlflow-writer-answers", daemon=True)
        self._reader.start()
        if tracking_uri is not None:
            self.open(tracking_uri)

    def open(self, tracking_uri: str) -> None:
        """The store the runs are written to: the writer opens it (MLflow checks its schema) and answers."""
        self._call("open", tracking_uri)

    def experiment(self, name: str, location: str | None, tags: dict[str, str]) -> str:
        """The sweep's experiment id (``location``: where its artifacts go; None: the server's choice)."""
        return self._call("experiment", name, location, tags)

    def reopen(self, key: str, run_id: str) -> None:
        self._call("reopen", key, run_id)

    def log_text(self, key: str, text: str, artifact_file: str) -> None:
        self._call("log_text", key, text, artifact_file)

    def log_artifacts(self, key: str, path: str, artifact_path: str) -> None:
        """A file or folder into the run's ``artifact_path``: copied when this returns (it may be a
        temporary one)."""
        self._call("log_artifacts", key, str(path), artifact_path)

    def _call(self, *command: Any) -> Any:
        """One command whose answer the driver waits for: its value, or its failure raised."""
        with self._cond:
            self._tokens += 1
            token = self._tokens
        self._send(("call", token, *command))
        with self._cond:
            self._cond.wait_for(lambda: token in self._results or self._dead is not None)
            if token not in self._results:
                raise WriterError(self._dead)
            value, failure = self._results.pop(token)
        if failure is not None:
            raise WriterError(*failure)
        return value

    # -- asking ---------------------------------------------------------------------------------------

    def create_run(self, key: str, experiment_id: str, run_name: str, tags: dict[str, str]) -> None:
        self._send(("create", key, experiment_id, run_name, tags))

    def log_batch(self, key: str, metrics: list[Metric], params: list[Param], tags: list[RunTag]) -> None:
        self._send(("log", key, metrics, params, tags))
        self._sent += len(metrics)

    def set_terminated(self, key: str, status: str) -> None:
        self._send(("end", key, status))

    def run_id(self, key: str) -> str:
        """The run's id, once the writer has created it."""
        with self._cond:
            self._cond.wait_for(lambda: key in self._run_ids or self._dead is not None)
            if key not in self._run_ids:
                raise WriterError(self._dead)
            return self._run_ids[key]

    def peek(self, key: str) -> str | None:
        """The run's id if the writer has sent it, without waiting."""
        with self._cond:
            return self._run_ids.get(key)

    def sync(self) -> None:
        """Wait until everything asked so far is written; raise the first write that failed."""
        with self._cond:
            self._tokens += 1
            token = self._tokens
        self._send(("sync", token))
        with self._cond:
            while not self._cond.wait_for(lambda: token in self._synced or self._dead is not None, WAIT_REPORT_S):
                if self.on_wait is not None:
                    self.on_wait(self._written, self._sent)
            failures = self._synced.pop(token, None)
            if failures is None:
                raise WriterError(self._dead)
        if failures:
            raise WriterError(*failures[0])

    @property
    def dead(self) -> str | None:
        """Why the writer process is gone, once it is (None while it serves)."""
        with self._cond:
            return self._dead

    def close(self) -> None:
        """Write what is left, then end the writer. A failure here was raised by the driver's last sync
        already (or is what ``hpsearch resume`` closes): not raised again over the error being handled."""
        if self._closed:
            return
        self._closed = True
        if not self._asked:  # never asked anything (a sweep refused before it began): nothing to write or wait for
            self._proc.kill()
            self._proc.wait()
            return
        try:
            if self._dead is None:
                self.sync()
        except WriterError:
            pass
        finally:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            self._proc.wait(timeout=60)

    # -- the pipes ------------------------------------------------------------------------------------

    def _send(self, command: tuple) -> None:
        if self._dead is not None:
            raise WriterError(self._dead)
        self._asked = True
        try:
            pickle.dump(command, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._died()
            raise WriterError(self._dead) from None

    def _read(self) -> None:
        while True:
            try:
                answer = pickle.load(self._proc.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                self._died()
                return
            with self._cond:
                if answer[0] == "run":
                    self._run_ids[answer[1]] = answer[2]
                elif answer[0] == "synced":
                    self._synced[answer[1]] = answer[2]
                elif answer[0] == "result":
                    self._results[answer[1]] = (answer[2], answer[3])
                elif answer[0] == "wrote":
                    self._written += answer[1]
                self._cond.notify_all()

    def _died(self) -> None:
        code = self._proc.poll()
        with self._cond:
            if self._dead is None:
                self._dead = "the MLflow writer process ended" + (f" (exit {code})" if code is not None else "")
            self._cond.notify_all()


# ----------------------------------------------------------------------------- the writer process


class _Writer(_Calls):
    """The writer process's loop: the driver's commands in order. Whatever arrived while a write was made
    is taken together, and a run's metrics, parameters and tags become one ``log_batch``: the writer keeps
    up by writing less often, never by falling behind."""

    def __init__(self, commands: IO[bytes], answers: IO[bytes]) -> None:
        self.commands, self.answers = commands, answers
        self.inbox: queue.Queue = queue.Queue()
        self.client: Any = None
        self.bulk: Any = None  # metric_rows' writer, where the store allows it
        self.runs: dict[str, str] = {}  # key -> run id
        self.logs: dict[str, tuple[list, dict, dict]] = {}  # key -> metrics, params, tags not yet written
        self.failures: list[tuple[str, str]] = []  # (last line, traceback) since the last sync

    def serve(self) -> None:
        threading.Thread(target=self._receive, name="commands", daemon=True).start()
        while True:
            taken = [self.inbox.get()]
            while not self.inbox.empty():
                taken.append(self.inbox.get())
            for command in taken:
                if command is None:  # the driver closed its end, or died: what it sent is written
                    self._write_all_logs()
                    return
                self._do(*command)
            self._write_all_logs()

    def _receive(self) -> None:
        while True:
            try:
                self.inbox.put(pickle.load(self.commands))
            except (EOFError, OSError, pickle.UnpicklingError):
                DRIVER_GONE.set()
                self.inbox.put(None)
                return

    def _do(self, op: str, *args: Any) -> None:
        if op == "log":
            key, metrics, params, tags = args
            pending = self.logs.setdefault(key, ([], {}, {}))
            pending[0].extend(metrics)
            pending[1].update({p.key: p for p in params})
            pending[2].update({t.key: t for t in tags})  # a later value of a tag wins, as it would
        elif op == "call":
            token, name, *rest = args
            try:
                if name not in self.CALLS:
                    raise ValueError(f"no such call: {name!r}")
                value, failure = getattr(self, name)(*rest), None
            except Exception as e:
                value, failure = None, (_describe(e), traceback.format_exc())
            self._answer(("result", token, value, failure))
        elif op == "create":
            self._attempt(lambda: self._answer(("run", args[0], self.create_run(*args))))
        elif op == "end":
            self._write_logs(args[0])
            self._attempt(lambda: self.set_terminated(*args))
        elif op == "sync":
            self._write_all_logs()
            self._answer(("synced", args[0], self.failures))
            self.failures = []

    def open(self, tracking_uri: str) -> None:
        from search.stores.metric_rows import bulk_writer

        super().open(tracking_uri)
        self.bulk = bulk_writer(self.client, lambda n: self._answer(("wrote", n)))

    def _write_logs(self, key: str) -> None:
        metrics, params, tags = self.logs.pop(key, ([], {}, {}))

        def write() -> None:
            params_and_tags = (list(params.values()), list(tags.values()))
            if self.bulk is not None:  # parameters and tags first, as batches() orders them
                self.log_batch(key, [], *params_and_tags)
                self.bulk(self.runs[key], metrics)
                return
            for m, p, t in batches(metrics, *params_and_tags):
                self.client.log_batch(self.runs[key], *entities(m, p, t))
                self._answer(("wrote", len(m)))

        self._attempt(write)

    def _write_all_logs(self) -> None:
        for key in list(self.logs):
            self._write_logs(key)

    def _attempt(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:
            self.failures.append((_describe(e), traceback.format_exc()))

    def _answer(self, message: tuple) -> None:
        pickle.dump(message, self.answers, protocol=pickle.HIGHEST_PROTOCOL)
        self.answers.flush()


def _describe(error: BaseException) -> str:
    """One line: each exception along the chain of causes, by its type and first line (a full disk shows
    as sqlite3's "database or disk is full", however deep MLflow wrapped it)."""
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        first = (str(error).strip().splitlines() or [""])[0]
        parts.append(f"{type(error).__name__}: {first}" if first else type(error).__name__)
        error = error.__cause__ or error.__context__
    return " <- ".join(parts)


DRIVER_GONE = threading.Event()  # the driver closed its end of the commands, or died


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM while the driver lives reaches the whole group, and the driver closes the sweep through here:
    ignored. Once the driver is gone, SIGTERM ends the writer (an orphan writing a backlog no one waits for)."""
    if DRIVER_GONE.is_set():
        os._exit(128 + signal.SIGTERM)


def main() -> None:
    # Ctrl-C and SIGTERM reach the whole process group: the driver stops the sweep and closes its runs
    # through here, so the writer stays until its input ends (a SIGTERM after that ends it: _on_sigterm).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a library's print must not corrupt the answers
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    # A failed write goes back to the driver (which stops with one line, as for its own writes): MLflow's
    # own logging of it, traceback and all, would only bury that line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # What opening a store imports, imported before the driver asks (it starts this process before Ray).
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.tracking  # noqa: F401

    import search.stores.metric_rows  # noqa: F401

    _Writer(sys.stdin.buffer, answers).serve()
    # Every write is committed and answered (the driver's last sync waited for it): what Python's own exit
    # would add is a second and a half of tearing down MLflow and SQLAlchemy, which the driver waits for.
    answers.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
