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

    def start(s):
        server = start_mlflow_ui(s, host, port)
        from mlflow.tracking import MlflowClient

        for exp in MlflowClient(s.mlflow_url).search_experiments():
            if exp.name != "Default":
                out.print(f"  {exp.name}: {server.url}/#/experiments/{exp.experiment_id}/runs", highlight=False)
        return server

    serve_store(open_store(store), start)


def serve_store(s, start) -> None:
    """Start a watch server on an existing store and keep it up until Ctrl-C or SIGTERM."""
    from search.commands.servers import sigterm_interrupts
    from search.readback.sweeps import require_store

    server = None
    try:
        with sigterm_interrupts():  # also while the server starts: it must not outlive us
            require_store(s)
            server = start(s)
            serve_until_interrupted(server)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
