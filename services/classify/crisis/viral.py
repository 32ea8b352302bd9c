"""Viral complaint detector: how fast a negative (or safety/legal) post's engagement grows.

Engagement updates arrive as new events for the same post id. Per post we keep its snapshots
(time, weighted engagement = reposts + quotes + 0.5 replies + 0.1 likes, the priority policy's measure);
the post's creation is an implicit snapshot with zero engagement. Velocity is the growth per minute
over the last `velocity_window_seconds`, weighted by the author's reach: 1 + log10(1 + followers) /
reach_scale. The threshold adapts to the brand: every engagement update of the brand (any sentiment)
feeds an EWMA of log1p(velocity) and its variance; a post is fast when its velocity is >= max(min_velocity,
usual * baseline_multiplier, expm1(mean + z * std)). Cold start: `cold_min_velocity` until the brand's
`warm_updates` updates were seen. Only eligible posts (negative sentiment or a safety/legal threat) can
fire, after `persistence` consecutive fast snapshots of the same post.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from services.classify.crisis.config import ViralConfig
from services.classify.crisis.stats import half_life_alpha
from services.classify.crisis.windows import Verdict, severity_from_ratio


def weighted_engagement(likes: int, reposts: int, replies: int, quotes: int) -> float:
    return reposts + quotes + 0.5 * replies + 0.1 * likes


@dataclass
class PostTrack:
    followers: int = 0
    eligible: bool = False
    snapshots: list[list[float]] = field(default_factory=list)   # [t, weighted engagement], oldest first
    velocity: float = 0.0       # last weighted velocity (per minute)
    streak: int = 0
    last_seen: float = 0.0
    url: str = ""


class ViralDetector:
    def __init__(self, config: ViralConfig | None = None):
        self.cfg = config or ViralConfig()
        self.posts: dict[str, PostTrack] = {}
        self.mean = 0.0            # EWMA of log1p(weighted velocity) over the brand's updates
        self.var = 0.0
        self.updates = 0
        self.hot: set[str] = set()      # eligible posts last seen at/above the close bar (checked in evaluate)
        self._pruned_at = 0.0
        self._alpha = half_life_alpha(self.cfg.baseline_half_life_updates)

    def eligible(self, negative: float, intents: dict[str, float]) -> bool:
        c = self.cfg
        return negative >= c.negative_threshold or float(intents.get(c.safety_intent, 0.0)) >= c.safety_threshold

    def threshold(self) -> float:
        c = self.cfg
        if self.updates < c.warm_updates:
            return c.cold_min_velocity
        std = math.sqrt(max(self.var, 0.0))
        return max(c.min_velocity, c.baseline_multiplier * math.expm1(self.mean),
                   math.expm1(self.mean + c.baseline_z * std))

    def observe(self, post_id: str, t: float, engagement: float, followers: int, eligible: bool,
                created_at: float = 0.0, url: str = "") -> float:
        """Record a snapshot; returns the post's weighted velocity (0 when it cannot be computed yet)."""
        c = self.cfg
        track = self.posts.pop(post_id, None)   # re-inserted below: dict order = least recently seen first
        if track is not None and t - track.last_seen > c.post_ttl_seconds:
            self.hot.discard(post_id)   # forgotten (as `prune` would have), whenever prune last ran
            track = None
        if track is None:
            if len(self.posts) >= c.max_posts:
                oldest = next(iter(self.posts))
                del self.posts[oldest]
                self.hot.discard(oldest)
            track = PostTrack(followers=followers, url=url)
            if 0 < created_at <= t and t - created_at <= c.velocity_window_seconds:
                track.snapshots.append([created_at, 0.0])
        self.posts[post_id] = track
        track.eligible = track.eligible or eligible
        track.followers = max(track.followers, followers)
        track.last_seen = max(track.last_seen, t)
        if track.snapshots and t < track.snapshots[-1][0]:
            return track.velocity   # an out-of-order older snapshot tells nothing new
        track.snapshots.append([t, engagement])
        # Keep the newest snapshot older than the window as the oldest, and everything after it.
        while len(track.snapshots) > 2 and track.snapshots[1][0] <= t - c.velocity_window_seconds:
            track.snapshots.pop(0)
        # Instantaneous velocity: against the newest snapshot at least min_span_seconds older (an explosion
        # shows in the next update; persistence, not averaging, guards against one glitchy counter).
        base = [s for s in track.snapshots[:-1] if s[0] <= t - c.min_span_seconds]
        if not base:
            return track.velocity
        base_t, base_e = base[-1]
        span = t - base_t
        velocity = max(0.0, engagement - base_e) / (span / 60.0)
        velocity *= 1.0 + math.log10(1 + max(0, track.followers)) / c.reach_scale
        threshold = self.threshold()
        fast = velocity >= threshold
        track.streak = track.streak + 1 if (fast and track.eligible) else 0
        track.velocity = velocity
        if track.eligible and velocity >= c.close_fraction * threshold:
            self.hot.add(post_id)
        if len(track.snapshots) <= 2 and track.snapshots[0][1] == 0.0 and base_t == track.snapshots[0][0]:
            return velocity   # first sighting (vs. its creation): not an engagement update to learn from
        # Learn the brand's usual velocity (clipped so one exploding post does not raise the bar for itself).
        x = math.log1p(velocity)
        if self.updates >= c.warm_updates:
            x = min(x, self.mean + 3 * math.sqrt(max(self.var, 0.0)) + 0.5)
        a = max(self._alpha, 1.0 / (self.updates + 1))
        delta = x - self.mean
        self.mean += a * delta
        self.var = (1 - a) * (self.var + a * delta * delta)
        self.updates += 1
        return velocity

    def prune(self, now: float) -> None:
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        while self.posts:
            pid = next(iter(self.posts))
            if now - self.posts[pid].last_seen <= self.cfg.post_ttl_seconds:
                break
            del self.posts[pid]
            self.hot.discard(pid)

    def hot_posts(self, now: float) -> list[str]:
        """Eligible posts currently at or above the close threshold, fastest first."""
        c = self.cfg
        bar = c.close_fraction * self.threshold()
        hot = []
        for pid in list(self.hot):
            tr = self.posts.get(pid)
            if tr is None or tr.velocity < bar or now - tr.last_seen > c.velocity_window_seconds:
                self.hot.discard(pid)
            else:
                hot.append((tr.velocity, pid))
        return [pid for _, pid in sorted(hot, reverse=True)]

    def idle(self, now: float) -> bool:
        """No post is hot: evaluations without new snapshots open and change nothing."""
        return not self.hot_posts(now)

    def evaluate(self, now: float) -> Verdict:
        c = self.cfg
        self.prune(now)
        threshold = self.threshold()
        verdict = Verdict()
        for pid in self.hot_posts(now):
            tr = self.posts[pid]
            verdict.active = True
            if tr.streak >= c.persistence:
                verdict.firing = True
            verdict.severity = max(verdict.severity, severity_from_ratio(10 * tr.velocity / threshold))
            if len(verdict.reasons) < 3:
                verdict.reasons.append(f"post {pid} engagement +{tr.velocity:.0f}/min weighted "
                                       f"({tr.velocity / threshold:.1f}x the viral bar, reach {tr.followers})")
        return verdict

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "n": self.updates, "hot": sorted(self.hot),
                "posts": {pid: [tr.followers, tr.eligible, tr.snapshots, tr.velocity, tr.streak, tr.last_seen,
                                tr.url] for pid, tr in self.posts.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], config: ViralConfig | None = None) -> ViralDetector:
        det = cls(config)
        det.mean, det.var, det.updates = float(d["mean"]), float(d["var"]), int(d["n"])
        det.hot = set(d.get("hot", []))
        for pid, v in d["posts"].items():
            det.posts[pid] = PostTrack(int(v[0]), bool(v[1]), [list(map(float, s)) for s in v[2]], float(v[3]),
                                       int(v[4]), float(v[5]), str(v[6]))
        return det
