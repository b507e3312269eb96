"""Simulated set-top boxes: players and viewers driving the real agent against a collector.

What is real: the agent's session tracker, survey policy, record store and uploader
(``stb_widget``), talking HTTP to a real collector. What is simulated: the player's events,
the viewer (when they watch, what they score), the network's faults, and time itself
(:class:`simulators.clock.VirtualClock`). See ``docs/simulators.md``.
"""
