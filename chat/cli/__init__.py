"""chat: the operators' and analysts' command line (installed with the package).

chat replay decodes a topic range, chat rebuild rebuilds projections from the log,
chat topics shows topics, offsets and consumer lag, chat migrate-keys renames Redis keys of the
layout before chat.keys. Settings come from CHAT_* as for
every process. Exit codes: 0 done, 2 bad usage, 3 a service is unreachable, 4 no such topic or
projection, 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from chat.errors import ChatError, ClientError, NotFound, Unavailable
from chat.logs import configure
from chat.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4

log = logging.getLogger("chat.cli")


def parser() -> argparse.ArgumentParser:
    from chat.cli import migrate_keys, rebuild, replay, topics

    top = argparse.ArgumentParser(prog="chat", description=__doc__.split("\n\n")[1].replace("\n", " "),
                                  epilog="Exit codes: 0 done, 2 bad usage, 3 broker/Redis unreachable,"
                                         " 4 unknown topic or projection, 1 other errors.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (replay, rebuild, topics, migrate_keys):
        module.add_parser(commands)
    return top


def exit_code(exc: ChatError) -> int:
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, ClientError):
        return EXIT_USAGE
    if isinstance(exc, Unavailable):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings.from_env()
    configure(settings, process="cli")
    try:
        return int(args.run(settings, args) or EXIT_OK)
    except ChatError as exc:
        print(f"chat {args.command}: {exc.message}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print(f"chat {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
