"""Units of simulated time shared by every layer that converts days to seconds.

Simulated time is in seconds from the campaign start (t = 0); the pre-period is negative.
A leaf module: importing it loads nothing else of the world.
"""

from __future__ import annotations

#: Seconds in one simulated day.
DAY: float = 86400.0
