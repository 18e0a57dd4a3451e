import sys

try:
    from avatar_bridge.cli import main
except KeyboardInterrupt:   # Ctrl-C before the command line could even load: no traceback
    print("interrupted", file=sys.stderr)
    sys.exit(130)

main()
