#!/usr/bin/env bash
# Install brainsearch into .venv and run the main job on embedded defaults: check the bundled CPU space, then search
# it - the GLaM and dense baselines and 6 sampled blocks trained as cpu-tiny proxies on the built-in corpus, stored
# in the SQLite database under ~/.brainsearch - and print the leaderboard (about a minute on 2 CPU cores).
source "$(dirname "$0")/_env.sh"
brainsearch validate tiny
brainsearch search tiny --trials 6
