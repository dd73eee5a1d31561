#!/usr/bin/env bash
# Install brainsearch into .venv and run the main job on embedded defaults: check the bundled CPU space, show its
# size and cost range, sample architectures from it and cost the paper's Brainformer-1 block.
source "$(dirname "$0")/_env.sh"
brainsearch validate tiny
brainsearch sample tiny -n 3 --seed 0
brainsearch cost --preset brainformer-1
