"""The Typer applications behind the ``zebra`` command; subcommands register on them in their own modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="zebra",
    help="Zebra: retrieval-augmented diagnosis of rare findings in medical images (research use only).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="Read medical images and data sets: inspect, convert to NOVA layout.", no_args_is_help=True
)
db_app = typer.Typer(help="The database: migrations and administration.", no_args_is_help=True)
index_app = typer.Typer(help="Build and maintain knowledge index bundles.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print JSON.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluations on labelled data sets (NOVA layout).", no_args_is_help=True)

app.add_typer(data_app, name="data")
app.add_typer(db_app, name="db")
app.add_typer(index_app, name="index")
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")
