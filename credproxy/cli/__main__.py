"""`python -m credproxy.cli`: the `credproxy` command, for service files written where no
console script is on PATH (credproxy/service.py) and for tests that run the interpreter."""

from . import main

main()
