"""Rollout: which registry alias answers each request, and when a canary advances or rolls back.

Pure logic (numpy/scipy; no database, no HTTP) that the server drives:

- :mod:`~mlsd.rollout.assignment`: a deterministic hash of (seed, unit) and the weighted choice;
- :mod:`~mlsd.rollout.state`: the shared rollout state (weights, canary step) as JSON;
- :mod:`~mlsd.rollout.routers`: one router per strategy of ``deployment.strategy``;
- :mod:`~mlsd.rollout.bandits`: epsilon-greedy, UCB1 and Thompson sampling over arm statistics;
- :mod:`~mlsd.rollout.canary`: a window's statistics and the advance / hold / rollback decision;
- :mod:`~mlsd.rollout.srm`: the sample-ratio-mismatch test of served counts against the weights.

The statistics are documented in docs/rollout-statistics.md.
"""
