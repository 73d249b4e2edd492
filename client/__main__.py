"""`python -m client`: run the chat client."""

from .cli import main

raise SystemExit(main())
