#!/usr/bin/env bash
# keymeter's gateway against LiteLLM's proxy: same machine, same fake upstream, same run.
#
#   bash bench/peer_litellm.sh [SECONDS]
#
# Installs LiteLLM's proxy from PyPI into its own venv (var/bench-litellm, not the
# project's), runs it with one worker and no database in front of the fake upstream,
# then runs bench/gateway.py with LiteLLM as a peer.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-10}"
VENV="${LITELLM_VENV:-var/bench-litellm}"
PY=.venv/bin/python

if [ ! -x "$VENV/bin/litellm" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "litellm[proxy]>=1.70,<2"
fi

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP_PORT=$(free_port)
LL_PORT=$(free_port)
CONFIG=$(mktemp --suffix=.yaml)
cat > "$CONFIG" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:${UP_PORT}/v1
      api_key: sk-fake-upstream-key
litellm_settings:
  drop_params: true
YAML

# No database and no master key (auth off): LiteLLM at its lightest.
LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true \
"$VENV/bin/litellm" --config "$CONFIG" --host 127.0.0.1 --port "$LL_PORT" --num_workers 1 \
    > var/bench-litellm.log 2>&1 &
LL_PID=$!
trap 'kill $LL_PID 2>/dev/null || true; rm -f "$CONFIG"' EXIT
for _ in $(seq 120); do
    if "$PY" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$LL_PORT)))"; then
        break
    fi
    sleep 0.5
done
"$VENV/bin/litellm" --version 2>/dev/null | head -1 || true

"$PY" bench/gateway.py --seconds "$SECONDS_PER_RUN" --upstream-port "$UP_PORT" \
    --peer "litellm=http://127.0.0.1:${LL_PORT}/v1/chat/completions"
