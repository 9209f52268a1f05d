"""pytest set-up for the README tests (tests/readme/test_readme.py)."""

import signal

# A run started with SIGINT ignored (a CI job started in the background or under nohup) passes
# that on to every block it runs, and Python then never installs its Ctrl-C handler: blocks that
# end on Ctrl-C would run on. Python's own handler here makes them start with the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
