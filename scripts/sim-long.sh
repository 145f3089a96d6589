#!/usr/bin/env bash
# The engine simulation's long run: seeds 1 to N (100,000 by default) of
# the drawn fault mix, release build, one worker per core. Every failing
# seed is reported as it fails (workers go on past a failure); progress and
# seeds per second every 10,000 seeds and at the end. Exit status 0 only
# when every seed passed. Replay a failing seed with
#   CRM_SIM_SEED=s cargo test --release -p crm-sync --lib engine::sim::tests::many
#
#   scripts/sim-long.sh [N]     seeds 1 to N
#   CRM_SIM_FRESH=n             n fresh seeds besides (0 by default here)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CRM_SIM_SEEDS="${1:-100000}"
export CRM_SIM_FRESH="${CRM_SIM_FRESH:-0}"
export CRM_SIM_ALL=1
exec cargo test --release -p crm-sync --lib \
  engine::sim::tests::many_users_and_tabs_end_equal_to_the_server -- --nocapture
