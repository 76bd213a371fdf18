#!/bin/sh
# Install the exporter in .venv (pinned dependencies; editable, so that the
# checkout is what runs) and run it with its embedded defaults. Arguments are
# passed on (e.g. --port 9999).
. "$(dirname "$0")/env.sh"
ensure_venv "-e ." runtime
exec "$VENV/bin/cloudmailin-exporter" "$@"
