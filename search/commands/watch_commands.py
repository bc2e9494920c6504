"""Commands that watch a store live: optuna-dashboard and the MLflow UI, up until Ctrl-C or SIGTERM."""

from __future__ import annotations

from typing import Optional

import typer

from search.commands.app import (
    HostOpt,
    StorageOpt,
    StoreOpt,
    app,
    open_store,
    out,
    serve_until_interrupted,
)


@app.command()
def dashboard(
    store: str = StoreOpt,
    storage: Optional[str] = StorageOpt,
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    host: str = HostOpt,
) -> None:
    """optuna-dashboard on the store's studies (or --storage's): trials, intermediate values and plots, live."""
    from search.commands.servers import start_dashboard

    serve_store(open_store(store, storage), lambda s: start_dashboard(s.optuna_url, host, port))


@app.command()
def ui(
    store: str = StoreOpt,
    port: int = typer.Option(5000, "--port", min=1, max=65535),
    host: str = HostOpt,
) -> None:
    """The MLflow UI on the store's runs: one experiment per sweep, a child run per trial."""
    from search.commands.servers import start_mlflow_ui

    def announce(s, server) -> None:  # seconds to import MLflow: the server is ours to stop meanwhile
        from mlflow.tracking import MlflowClient

        for exp in MlflowClient(s.mlflow_url).search_experiments():
            if exp.name != "Default":
                out.print(f"  {exp.name}: {server.url}/#/experiments/{exp.experiment_id}/runs", highlight=False)

    serve_store(open_store(store), lambda s: start_mlflow_ui(s, host, port), announce)


def serve_store(s, start, announce=None) -> None:
    """Start a watch server on an existing store and keep it up until Ctrl-C or SIGTERM; ``announce(store,
    server)`` says more once it is up. The server is held from the moment ``start`` returns it, so an
    interrupt at any later point stops it."""
    from search.commands.servers import sigterm_interrupts
    from search.readback.sweeps import require_store

    server = None
    try:
        with sigterm_interrupts():  # also while the server starts: it must not outlive us
            require_store(s)
            server = start(s)
            if announce is not None:
                announce(s, server)
            serve_until_interrupted(server)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
