"""``python -m zebra_web [--host H] [--port P] [--test-agent] [--no-build-kb]``: the server without the ``zebra``
CLI.

``--test-agent`` answers with the scripted test agent (labelled "[test agent]"); ``zebra bench chat`` uses
it to measure the web stack alone.
"""

from __future__ import annotations

import argparse

import typer


def main(argv: list[str] | None = None) -> None:
    """Parses arguments and runs the server."""
    from zebra.config import get_settings
    from zebra.logs import setup_logging
    from zebra_web.server import run_server

    parser = argparse.ArgumentParser(prog="python -m zebra_web")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--test-agent", action="store_true", help="Use the scripted test agent.")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument(
        "--no-build-kb", action="store_true", help="Never start a background knowledge-base build."
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings.log_level)
    factory = None
    if args.test_agent:
        from zebra_web.testing import ScriptedAgent

        agent = ScriptedAgent(thumb_dir=settings.data_dir / "web" / "test-agent")
        factory = lambda: agent  # noqa: E731
    run_server(
        settings,
        host=args.host or settings.server.host,
        port=args.port or settings.server.port,
        echo=lambda line: typer.echo(line, err=True),
        agent_factory=factory,
        access_log=not args.no_access_log,
        # the scripted test agent needs no knowledge base
        build_knowledge_base=not (args.no_build_kb or args.test_agent),
    )


if __name__ == "__main__":
    main()
