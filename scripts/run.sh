#!/usr/bin/env bash
# Install brainsearch into .venv and run the main job on embedded defaults: check the bundled CPU space, then run
# `quickstart`: the service on 127.0.0.1 with its dashboard, a search of the tiny space (the GLaM and dense baselines
# and 6 sampled blocks, cpu-tiny proxies on the built-in corpus, SQLite under ~/.brainsearch), the leaderboard and
# the scale-up stage (the top 2 and GLaM at cpu-tiny and cpu-small, fidelity, speed-ups, scaling-law predictions)
# and the winner exported as JSON, a standalone PyTorch file and its weights (about two minutes on 2 CPU cores).
source "$(dirname "$0")/_env.sh"
brainsearch validate tiny
brainsearch quickstart
