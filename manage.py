#!/usr/bin/env python3
"""Django's command-line utility for dctoolkit (`./dct CMD` runs it inside .venv).

`dctoolkit.commandline.main` answers the fast commands (`status`) without
starting Django, and hands every other command to Django.
"""

from dctoolkit.commandline import main

if __name__ == "__main__":
    main()
