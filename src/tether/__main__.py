"""``python -m tether``, and the ``tether`` command's entry point."""

import sys


def main() -> None:
    # The command line's imports take a good part of a second, and Ctrl-C meanwhile (a
    # `tether serve` stopped at once) would end in a traceback: it ends as it does later, in
    # one line. 130 is EXIT_INTERRUPTED, whose module is among those being imported.
    try:
        from tether.cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
