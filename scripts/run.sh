#!/usr/bin/env bash
# Install brainsearch into .venv and run the main job on embedded defaults: check the bundled CPU space, then run
# `quickstart`: the service on 127.0.0.1 with its dashboard, a search of the tiny space (the GLaM and dense baselines
# and 8 sampled blocks, every one trained with GLaM's compute as a cpu-tiny proxy on the built-in corpus, GLaM and
# the best four over 4 seeds; SQLite under ~/.brainsearch), the leaderboard and the scale-up stage (the top 2 and
# GLaM at cpu-tiny and cpu-small, fidelity, speed-ups, scaling-law predictions), the verdict and its winner (a
# block, or GLaM) exported as JSON, a standalone PyTorch file and its weights. About a minute and a half on an idle
# 2-core machine once installed; it prints each stage's time at the end.
source "$(dirname "$0")/_env.sh"
brainsearch validate tiny
brainsearch quickstart
