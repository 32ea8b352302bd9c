"""Every parameter of crisis detection, with its default and why (one place, plain dataclasses).

Times are seconds of event time (see `engine.event_time`), rates are mentions per minute unless a name
says otherwise. Defaults were chosen on `make eval-crisis` (bench/eval_crisis.py): every crisis there
is detected within 60 s and the calm week and the campaign open no incident.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.vocabulary import INTENT_THRESHOLD

EVENT_TIME_FIELDS = ("received_at", "created_at")


@dataclass(frozen=True)
class SpikeConfig:
    """Volume spike: mention count in short windows vs. a seasonal, slowly adapting baseline."""

    bucket_seconds: int = 10                 # resolution of the sliding counts (evaluation step)
    short_window_seconds: int = 60           # fast window: catches a sudden burst
    long_window_seconds: int = 300           # slow window: catches a sustained, moderate rise
    level_half_life_minutes: float = 60.0    # baseline level EWMA (per-minute counts, deseasonalised)
    season_half_life_days: float = 3.0       # hour-of-day / weekday factors forget old weeks this fast
    season_min_observations: int = 45        # minutes a slot needs before its factor is trusted (else 1.0)
    dispersion: float = 0.05                 # negative-binomial overdispersion (var = mu + d*mu^2)
    open_p_value: float = 1e-7               # tail probability at or below which a window is anomalous
    open_ratio: float = 3.0                  # ... and observed/expected at or above this
    min_count_short: int = 6                 # ... and at least this many mentions in the short window
    min_count_long: int = 12                 # ... or this many in the long window. Floors only: the real
    #   minimum is relative to the brand's own rate (open_ratio x expected and the exact tail), so a brand
    #   with a few mentions an hour can trip it (issue 16: fixed 15/40 never fired below ~10/min)
    close_ratio: float = 1.6                 # still "active" (hysteresis) while observed/expected >= this
    persistence: int = 2                     # consecutive anomalous buckets before it fires
    no_baseline_minutes: int = 15            # cold start: no volume verdicts before this much history
    warm_minutes: int = 360                  # cold start: stricter thresholds until this much history
    cold_open_p_value: float = 1e-12
    cold_open_ratio: float = 6.0
    update_clip_ratio: float = 2.0           # baseline learns at most this x expected per minute (bursts
    #                                          must not teach the baseline that a crisis is normal)
    max_gap_minutes: int = 1440              # a silent brand's baseline decays minute by minute up to this
    # Coherence (issue 24): a firing spike opens an incident only when the posts of its window share a topic
    # (a term) or shift the brand's sentiment or intents (negative / complaint / outage_report share) beyond
    # the brand's usual; an incoherent jump (a collection artefact, a pile of unrelated chatter) is counted
    # (triage_classify_crisis_volume_held_total{reason="incoherent"}) and logged, not opened.
    coherence: bool = True
    coherence_p_value: float = 1e-4          # beta-binomial tail of the share vs the usual share (terms:
    #                                          Bonferroni over the distinct terms of the window's posts)
    coherence_min_posts: int = 3             # a shared term / flag is in at least this many of the posts ...
    coherence_min_share: float = 0.4         # ... and in at least this share of them
    coherence_prior_posts: float = 50.0      # the brand's usual share is shrunk towards a pooled prior worth
    coherence_term_prior: float = 0.01       #   this many posts: any one term's share ...
    coherence_flag_priors: tuple[tuple[str, float], ...] = (("negative", 0.2), ("complaint", 0.1),
                                                            ("outage_report", 0.02))   # ... each flag's


@dataclass(frozen=True)
class OutageConfig:
    """Outage cluster: outage_report mentions per brand (any language) over windows of 1 min to 6 h, judged by
    their improbability under the brand's own rate shrunk towards a rate pooled over brands (see outage.py)."""

    intent: str = "outage_report"
    intent_threshold: float = INTENT_THRESHOLD  # a mention is an outage report at or above this probability
    bucket_seconds: int = 10
    windows_seconds: tuple[int, ...] = (60, 300, 900, 1800, 3600, 7200, 21600)   # the scan: 1 min ... 6 h
    baseline_half_life_minutes: float = 720.0  # outage reports are rare: a long memory of their usual rate
    prior_share: float = 0.02                # pooled prior: outage reports per mention, until the engine has
    #                                          pooled its brands' own rates (stray model scores are ~1-4%)
    prior_mentions: float = 200.0            # a brand's share is shrunk towards the pooled share with this many
    #                                          pseudo-mentions (brands' stray shares differ by ~1%: Beta(4, 196));
    #                                          also prior_share's weight in the pool (engine.pool)
    prior_rate_per_minute: float = 0.005     # cold start: the rate is at least this until warm_minutes (~7 a
    #   day; a new brand's first minutes are also judged against the pooled share of the window's own
    #   mentions, see outage.py: 0.05, 72 a day, kept a sparse brand's first 10 reports in an hour from paging)
    warm_minutes: int = 120
    dispersion: float = 0.1                  # overdispersion on top of the posterior's (1 / gamma shape)
    open_p_value: float = 1e-6               # family-wise over the windows (Bonferroni: / len(windows))
    open_ratio: float = 4.0                  # ... and observed >= this x expected
    min_count: int = 3                       # safety floor only: 1-2 posts never page; above it the tail decides
    close_ratio: float = 2.0
    close_min_count: int = 2                 # still active while >= this many reports at >= close_ratio x
    close_window_seconds: int = 300          #   expected in a window up to this long (or 4x the shortest
    #                                          that fired: a slow outage stays open between its reports)
    volume_prior_count: float = 20.0         # the volume scaling of the expectation is shrunk by this many
    #   pseudo-mentions: (other + prior) / (usual other + prior), so a sparse brand's handful of companion
    #   posts cannot multiply the expectation and cancel a real cluster (issue 16)
    max_volume_scale: float = 10.0           # ... and never scales the usual rate by more than this
    persistence: int = 2
    update_clip_ratio: float = 2.0


@dataclass(frozen=True)
class ViralConfig:
    """Viral complaint: engagement velocity of one negative/safety post from successive snapshots."""

    negative_threshold: float = 0.5          # sentiment.negative at/above this makes a post eligible
    safety_intent: str = "safety_or_legal_threat"
    safety_threshold: float = 0.5            # ... or this safety/legal threat probability
    velocity_window_seconds: int = 300       # velocity = growth over (at most) this span of snapshots
    min_span_seconds: float = 10.0           # snapshots closer than this are not differenced
    reach_scale: float = 3.0                 # weight = 1 + log10(1 + followers) / reach_scale (1M -> 3x)
    baseline_half_life_updates: float = 500.0  # brand's usual (log) velocity, per engagement update
    baseline_z: float = 4.0                  # threshold = usual log-velocity + z * its std ...
    baseline_multiplier: float = 20.0        # ... and at least this x the usual velocity
    min_velocity: float = 30.0               # weighted engagement per minute that can ever be viral
    cold_min_velocity: float = 60.0          # before `warm_updates` updates of the brand were seen
    warm_updates: int = 50
    close_fraction: float = 0.3              # still active while velocity >= this x the open threshold
    persistence: int = 2                     # consecutive fast snapshots of the same post
    max_posts: int = 500                     # snapshot memory per brand (oldest posts forgotten first)
    post_ttl_seconds: float = 6 * 3600.0


@dataclass(frozen=True)
class SurgeConfig:
    """Complaint surge: complaints over the last hours vs. the same hours of previous days (see surge.py)."""

    intent: str = "complaint"
    intent_threshold: float = INTENT_THRESHOLD
    bucket_seconds: int = 300                # resolution; judged once per bucket
    window_hours: tuple[float, ...] = (1.0, 2.0, 3.0)   # an hour (fast) to "an afternoon" (sustained)
    days: int = 7                            # compared with the same hours of up to this many previous days
    min_days: int = 2                        # warm-up: no verdict before this many covered previous days
    ratio: float = 1.2                       # observed/expected complaints at or above this (they rose; on a
    #                                          quiet day a doubled share can be only ~1.3x the usual count) ...
    share_ratio: float = 1.5                 # ... the odds of a mention being a complaint this x their usual
    min_count: int = 10                      # ... at least this many complaints in the window ...
    p_value: float = 1e-4                    # ... and the complaints' share significant at this (beta-binomial
    #                                          tail at the usual share, among the window's mentions)
    share_dispersion: float = 0.002          # day-to-day variation of the share (intra-window correlation rho:
    #   the usual share is never known better than from (1 - rho)/rho mentions, so the sd of a 3 h share
    #   over n mentions is at least sqrt(p(1-p)(1 + (n-1) rho)/n), ~14% of the share at n=2,700) ...
    share_dispersion_sd: float = 0.002       # ... a prior, brands' rho differing from it by about this much:
    #   the brand's own variation of each clock hour's share from day to day (beyond binomial noise) is
    #   estimated from its previous days and shrunk towards the prior by precision (empirical Bayes), so a
    #   busy brand whose share holds steady is judged against its own steadiness, one whose share swings
    #   against its swings, and a sparse brand (whose estimate is noise) against the prior ...
    share_dispersion_hours: int = 1          # ... estimated over blocks of this many clock hours (a divisor of 24)
    share_dispersion_min: float = 0.0002     # ... never below this (a share is never known better than from
    #                                          5,000 mentions)
    share_prior_mentions: float = 200.0      # the same hours' usual share is shrunk towards the brand's share
    #                                          over all hours, worth this many mentions
    # A storm day raises a brand's other traffic too (rebooking questions, news), so the share barely moves
    # while the complaints' count doubles: a second path judges the count itself, against day-to-day noise.
    count_ratio: float = 2.0                 # complaints at least this x the same hours of previous days ...
    count_dispersion: float = 0.05           # ... significant against the previous days' own counts: a
    #   negative-binomial tail <= p_value with the next day's predictive variance: the days' own variance of
    #   that window, shrunk towards Poisson + this x mean^2 (a 22% day-to-day sd) worth count_prior_days
    count_prior_days: float = 3.0
    count_share_ratio: float = 0.95          # ... and not rising slower than the rest: a campaign whose own
    #   traffic is praise and chatter lowers the odds and is no surge; one that triples complaints with
    #   everything else is (issue 16's target: a day a brand's complaints surge 2x, whatever the rest did)
    count_min_hours: float = 2.0             # ... judged on the windows this long or longer (sustained: an hour
    #                                          of a sparse brand swings too much on counts alone)
    # The count path's expectation follows the day's level: the brand's mentions in the `level_hours`
    # before the window vs the same hours of the previous days (a weekend, a quiet or busy day moves every
    # hour of it), shrunk towards 1 by `level_prior_mentions` pseudo-mentions, within `level_bounds`.
    level_hours: float = 6.0
    level_prior_mentions: float = 30.0
    level_bounds: tuple[float, float] = (0.5, 2.0)
    floor_expected: float = 1.0              # a brand with ~no complaints in those hours expects at least 1
    close_ratio: float = 1.1                 # still active while observed/expected >= this
    persistence: int = 2                     # consecutive anomalous buckets (10 min) before it fires
    # Weekly seasonality (issue 24): once a brand has `weekly_min_days` of history, the same hours of the
    # previous days are scaled to today's weekday: a weekly profile (per weekday and hour, complaints and
    # mentions, an EWMA over weeks) gives the same hours on the same weekday, shrunk towards the daily
    # profile (the mean over the weekdays) with an empirical-Bayes weight tau^2 / (tau^2 + noise): tau^2 is
    # how much the weekdays differ at those hours beyond their noise, noise the variance of one weekday's
    # estimate (Poisson + count_dispersion, over its weeks). A Monday-morning rush that comes every week
    # is expected on Mondays; weekdays that differ only by noise leave the daily profile as it was.
    weekly: bool = True
    weekly_min_days: int = 7
    weekly_half_life_weeks: float = 4.0      # the profile forgets old weeks this fast (a one-off surge fades)


@dataclass(frozen=True)
class EmergingConfig:
    """Emerging issue: online clusters of the encoder's embeddings of a brand's negative, complaint and outage
    posts; a cluster whose share of the brand's negative posts jumps far above its usual share opens an
    EMERGING_ISSUE (or joins the outage kind when its posts read as outage reports). Each distinct problem is
    its own incident: a brand may have up to `max_incidents` clusters followed by open incidents at once (each
    its own EMERGING_ISSUE, or joining the brand's one outage incident); the clusters they follow are never
    evicted or merged away. See emerging.py, whose docstring has the calibration of `similarity` and
    `prior_share` on real data."""

    enabled: bool = True
    similarity: float = 0.87                 # cosine to a cluster's centroid at or above which a post joins it
    #                                          (calibrated on real data: emerging.py's docstring)
    max_clusters: int = 48                   # per brand (bounded memory; merge, then evict the lightest): a
    #   problem keeps its cluster while its posts come at least once per ~max_clusters other negative posts
    #   (a brand with 1,000 negative posts an hour: >= ~20 reports an hour)
    half_life_posts: float = 2000.0          # cluster weights decay per negative post of the brand
    windows_seconds: tuple[int, ...] = (900, 3600, 10800)   # 15 min, 1 h, 3 h
    prior_share: float = 0.02                # pooled prior: the share of a brand's negative posts in one cluster
    #                                          (a brand whose clusters are full: about 1 / max_clusters)
    prior_posts: float = 50.0                # a cluster's usual share is shrunk towards the prior with this many
    warm_posts: float = 30.0                 # cold start: no verdict until the brand has this many (decayed)
    #   negative posts before the longest window: until then every cluster is new, and a brand's usual generic
    #   complaints would look like a new problem (a brand with 10 negative posts a day waits 3 days)
    dispersion: float = 0.1                  # negative-binomial overdispersion of a cluster's count, on top of
    #                                          1 / (its posts + 1): a cluster with little history varies more
    open_p_value: float = 1e-5               # family-wise over max_clusters x windows (Bonferroni: 7e-8 a test)
    open_ratio: float = 4.0                  # ... and the window's share at least this x the usual share
    min_count: int = 4                       # safety floor: a handful of look-alike posts never pages alone
    close_min_count: int = 2                 # still active while the cluster gets this many posts ...
    close_window_seconds: int = 1800         # ... within this long
    outage_share: float = 0.5                # a firing cluster whose window posts are this share outage reports
    #                                          joins the outage kind instead of opening its own
    persistence: int = 2                     # consecutive anomalous 10 s buckets before it fires
    samples: int = 6                         # representative posts kept per cluster (nearest its centroid)
    terms: int = 40                          # terms kept per cluster
    max_incidents: int = 3                   # per brand: clusters followed by open incidents at once (each
    #   distinct problem its own EMERGING_ISSUE): a brand with more unrelated problems at once pages for the
    #   first ones, and a further one opens once one of them resolves (if it is still significant then);
    #   below max_clusters, since followed clusters are never evicted

    def __post_init__(self) -> None:
        if not 1 <= self.max_incidents < self.max_clusters:
            raise ValueError(f"emerging.max_incidents must be from 1 to max_clusters - 1 ({self.max_clusters - 1}),"
                             f" not {self.max_incidents}")


@dataclass(frozen=True)
class IncidentConfig:
    """Incident life cycle: hysteresis, minimum duration, quiet-period resolve, evidence size."""

    quiet_seconds: float = 600.0             # resolve after this long below the close threshold
    min_duration_seconds: float = 900.0      # an incident stays open at least this long (no flapping)
    cooldown_seconds: float = 900.0          # after a resolve, the same brand+kind may not reopen for this
    update_interval_seconds: float = 60.0    # at most one UPDATED per incident per this interval
    top_terms: int = 10
    max_samples: int = 10
    recent_mentions: int = 40                # per brand, seeds the evidence of a newly opened incident
    seen_ttl_seconds: float = 1800.0         # a first sighting of a post created longer ago is an update
    max_seen: int = 5000                     # per brand: post ids remembered (least recently seen forgotten
    #                                          first, one at a time; a later sighting is an update, not volume)
    duplicate_min_chars: int = 20            # normalised texts this long that repeat within seen_ttl_seconds
    #                                          count once for volume (copies, retweets; still reach/viral)
    pile_up_min: int = 3                     # mentions stamped on one identical instant beyond
    pile_up_per_expected: float = 2.0        # max(pile_up_min, this x expected per minute) are not volume
    #                                          (23:59:59 backfills, whole-minute stamps)
    lateness_seconds: float = 300.0          # events older than clock - this are counted (late) but do not
    #                                          enter the windows: they cannot open or re-open an incident


@dataclass(frozen=True)
class CrisisConfig:
    # Which timestamp is a mention's event time (engine.py): "received_at" (live default: when ingest
    # accepted it, monotone with arrival) or "created_at" (event-time processing of a replay of history,
    # `triage replay --event-time`: the engine's clock is the largest created_at seen, the watermark trails
    # it by `incident.lateness_seconds`, and what arrives behind the watermark is counted as late, not judged).
    event_time: str = "received_at"
    spike: SpikeConfig = field(default_factory=SpikeConfig)
    outage: OutageConfig = field(default_factory=OutageConfig)
    viral: ViralConfig = field(default_factory=ViralConfig)
    surge: SurgeConfig = field(default_factory=SurgeConfig)
    emerging: EmergingConfig = field(default_factory=EmergingConfig)
    incident: IncidentConfig = field(default_factory=IncidentConfig)

    def __post_init__(self) -> None:
        if self.event_time not in EVENT_TIME_FIELDS:
            raise ValueError(f"event_time must be one of {', '.join(EVENT_TIME_FIELDS)}, not {self.event_time!r}")
