"""``python -m services.cli`` is ``antq``."""

from services.cli.main import main

main()
