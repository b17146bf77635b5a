"""``python -m services.audit.fold_child [AS_OF_OCCURRED]``: the child process of a replay's fold.

Reads length-prefixed chunks of stored records on stdin, writes the totals on stdout (see
``services.audit.folding``). Started by ``ProcessFold``; not a command for people.
"""

from __future__ import annotations

import datetime as dt
import sys

from services.audit.folding import child_main


def main() -> None:
    as_of = dt.date.fromisoformat(sys.argv[1]) if len(sys.argv) > 1 else None
    child_main(sys.stdin.buffer, sys.stdout.buffer, as_of)


if __name__ == "__main__":
    main()
