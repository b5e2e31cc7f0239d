"""Reinforcement learning for Spotwise: the gymnasium environment over the simulator
(`env.py`), training and model cards (`train.py`), and the Knative concurrency study
(`concurrency.py`). Everything here needs the `rl` extra (stable-baselines3, gymnasium,
torch); the rl engine itself lives in `spotwise.engines.rl`."""
