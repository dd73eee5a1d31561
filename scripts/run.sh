#!/usr/bin/env bash
# Install brainsearch into .venv and run the main job on embedded defaults: check the bundled CPU space, sample
# architectures from it, cost the paper's Brainformer-1 block, and train it as a cpu-tiny proxy on the built-in
# corpus (about 10 seconds on 2 CPU cores).
source "$(dirname "$0")/_env.sh"
brainsearch validate tiny
brainsearch sample tiny -n 3 --seed 0
brainsearch cost --preset brainformer-1
brainsearch train brainformer-1 --preset cpu-tiny
