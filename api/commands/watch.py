"""`passnum watch`: runs the anomaly watch now (clearing/anomalies.py), for cron."""

from __future__ import annotations

from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


def watch() -> None:
    """Cherche les anomalies dans les encaissements récents et ouvre une alerte pour chacune
    (sans jamais bloquer un encaissement). Relancée, elle n'ouvre rien de nouveau."""
    from api.anomaly_watch import thresholds
    from api.cli import run_in_transaction
    from clearing import anomalies
    from kit.clock import utcnow
    from kit.settings import get_settings

    settings = get_settings()

    async def work(session: Any) -> anomalies.WatchRun:
        return await anomalies.watch(session, now=utcnow(), thresholds=thresholds(settings))

    run = run_in_transaction(work)
    detail = ", ".join(f"{rule} : {n}" for rule, n in sorted(run.by_rule.items()))
    typer.echo(
        f"{len(run.opened)} alerte(s) ouverte(s)"
        + (f" ({detail})" if detail else "")
        + f" ; {run.found} constat(s) au total, dont {run.found - len(run.opened)} déjà connu(s)."
    )
