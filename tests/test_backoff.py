"""Reconnect delays: `ExponentialBackoff` and `LifecycleManager.calculate_reconnect_delay` (contract section 4)."""

from __future__ import annotations

import math
import random

import pytest

from lifecycle import ExponentialBackoff, LifecycleConfig, LifecycleManager

DEFAULT_NOMINAL = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
HUGE_ATTEMPTS = [64, 1024, 10**6, 2**31, 2**63, 10**100]
SAMPLES = 1000
TOLERANCE = 1e-9


@pytest.fixture
def manager_factory(make_manager):
    """`build(seed=..., **config)`: a manual-mode manager with a pinned RNG."""

    def build(seed: int = 1234, **config) -> LifecycleManager:
        return make_manager(LifecycleConfig(**config), rng=random.Random(seed))

    return build


# -- exact sequence without jitter ----------------------------------------------------------


def test_manager_delays_without_jitter_are_1_2_4_8_16_30_30_seconds(manager_factory):
    m = manager_factory(jitter=0)
    assert [m.calculate_reconnect_delay(k) for k in range(7)] == DEFAULT_NOMINAL


def test_manager_delay_is_returned_in_seconds_as_float(manager_factory):
    m = manager_factory(jitter=0, reconnect_delay_ms=250, max_reconnect_delay_ms=1000)
    delay = m.calculate_reconnect_delay(0)
    assert isinstance(delay, float)
    assert [m.calculate_reconnect_delay(k) for k in range(4)] == [0.25, 0.5, 1.0, 1.0]


def test_manager_delays_follow_custom_multiplier_and_cap(manager_factory):
    m = manager_factory(jitter=0, reconnect_delay_ms=100, max_reconnect_delay_ms=1000, reconnect_backoff_multiplier=3)
    assert [m.calculate_reconnect_delay(k) for k in range(5)] == pytest.approx([0.1, 0.3, 0.9, 1.0, 1.0])


def test_manager_without_jitter_works_for_manager_built_directly():
    m = LifecycleManager(config=LifecycleConfig(jitter=0), autostart=False)
    try:
        assert [m.calculate_reconnect_delay(k) for k in range(7)] == DEFAULT_NOMINAL
    finally:
        m.shutdown()


def test_backoff_policy_without_jitter_gives_exact_sequence():
    policy = ExponentialBackoff(initial=1, maximum=30, multiplier=2, jitter=0)
    rng = random.Random(0)
    assert [policy.delay(k, rng) for k in range(7)] == DEFAULT_NOMINAL
    assert [policy.nominal(k) for k in range(7)] == DEFAULT_NOMINAL


def test_backoff_defaults_match_lifecycle_config_defaults():
    assert ExponentialBackoff() == ExponentialBackoff(initial=1.0, maximum=30.0, multiplier=2.0, jitter=0.1)
    assert LifecycleConfig().backoff == ExponentialBackoff()


# -- jitter bounds --------------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
def test_manager_jittered_delays_stay_within_jitter_of_nominal_and_below_max(manager_factory, jitter):
    m = manager_factory(jitter=jitter)
    for attempt, nominal in enumerate(DEFAULT_NOMINAL):
        for _ in range(SAMPLES):
            delay = m.calculate_reconnect_delay(attempt)
            assert 0.0 <= delay <= 30.0
            assert nominal * (1 - jitter) - TOLERANCE <= delay <= nominal * (1 + jitter) + TOLERANCE


def test_manager_jittered_delays_actually_vary_below_the_cap(manager_factory):
    m = manager_factory()
    delays = [m.calculate_reconnect_delay(2) for _ in range(SAMPLES)]
    assert len(set(delays)) > SAMPLES * 0.95
    assert min(delays) < 4.0 < max(delays)
    assert max(delays) - min(delays) > 0.5 * (4.4 - 3.6)


def test_jitter_comes_from_a_real_rng_not_the_frozen_clock(frozen_lifecycle, manager_factory):
    m = manager_factory()
    delays = {m.calculate_reconnect_delay(0) for _ in range(100)}
    assert len(delays) > 90


def test_manager_jittered_delays_increase_for_first_attempts(manager_factory):
    m = manager_factory()
    for _ in range(SAMPLES):
        d0, d1, d2 = (m.calculate_reconnect_delay(k) for k in range(3))
        assert d0 < d1 < d2


# -- huge attempts --------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", HUGE_ATTEMPTS)
def test_huge_attempt_does_not_overflow_and_stays_at_or_below_max(manager_factory, attempt):
    m = manager_factory()
    for _ in range(50):
        delay = m.calculate_reconnect_delay(attempt)
        assert 27.0 - TOLERANCE <= delay <= 30.0


@pytest.mark.parametrize("attempt", HUGE_ATTEMPTS)
def test_huge_attempt_without_jitter_is_exactly_max(manager_factory, attempt):
    m = manager_factory(jitter=0)
    assert m.calculate_reconnect_delay(attempt) == 30.0


@pytest.mark.parametrize("multiplier", [1.0000001, 1.01, 1.5, 10.0, 1e300])
@pytest.mark.parametrize("attempt", [10**6, 2**63])
def test_huge_attempt_with_any_multiplier_gives_capped_nominal_without_overflow(manager_factory, multiplier, attempt):
    m = manager_factory(jitter=0, reconnect_backoff_multiplier=multiplier)
    log_growth = attempt * math.log(multiplier)
    expected = 30.0 if log_growth >= math.log(30.0) else math.exp(log_growth)
    assert m.calculate_reconnect_delay(attempt) == pytest.approx(expected, rel=1e-6)
    assert m.calculate_reconnect_delay(attempt) <= 30.0


# -- dispersion at the cap ------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [5, 10, 100, 10**6])
def test_delays_at_the_cap_stay_dispersed_below_it(manager_factory, attempt):
    m = manager_factory()  # jitter 0.1, cap 30 s: window [27, 30]
    delays = [m.calculate_reconnect_delay(attempt) for _ in range(SAMPLES)]
    at_cap = sum(1 for d in delays if d == 30.0)
    assert at_cap < SAMPLES * 0.01
    assert len(set(delays)) > SAMPLES * 0.95
    window = 0.1 * 30.0
    assert max(delays) - min(delays) >= 0.8 * window
    assert all(30.0 - window - TOLERANCE <= d <= 30.0 for d in delays)
    # both halves of the window are used, i.e. no pile-up at either end
    below_middle = sum(1 for d in delays if d < 30.0 - window / 2)
    assert SAMPLES * 0.3 < below_middle < SAMPLES * 0.7


def test_delays_just_below_the_cap_are_not_clamped_onto_it(manager_factory):
    # nominal 16 s with jitter 1.0 would reach 32 s: the window is clipped at 30, not the draws clamped
    m = manager_factory(jitter=1.0)
    delays = [m.calculate_reconnect_delay(4) for _ in range(SAMPLES)]
    assert all(0.0 <= d <= 30.0 for d in delays)
    assert sum(1 for d in delays if d == 30.0) < SAMPLES * 0.01


# -- pinnable RNG ---------------------------------------------------------------------------


def test_same_seed_gives_same_delay_sequence(manager_factory):
    a = manager_factory(seed=42)
    b = manager_factory(seed=42)
    attempts = [0, 1, 2, 3, 4, 5, 6, 10**6] * 10
    assert [a.calculate_reconnect_delay(k) for k in attempts] == [b.calculate_reconnect_delay(k) for k in attempts]


def test_different_seeds_give_different_delay_sequences(manager_factory):
    a = manager_factory(seed=1)
    b = manager_factory(seed=2)
    assert [a.calculate_reconnect_delay(0) for _ in range(10)] != [b.calculate_reconnect_delay(0) for _ in range(10)]


def test_manager_draws_jitter_from_the_given_rng(manager_factory):
    m = manager_factory(seed=99)
    expected_rng = random.Random(99)
    policy = LifecycleConfig().backoff
    assert [m.calculate_reconnect_delay(k) for k in range(7)] == [policy.delay(k, expected_rng) for k in range(7)]


def test_global_random_state_does_not_affect_pinned_manager(manager_factory):
    a = manager_factory(seed=5)
    random.seed(0)
    first = [a.calculate_reconnect_delay(1) for _ in range(5)]
    b = manager_factory(seed=5)
    random.seed(12345)
    second = [b.calculate_reconnect_delay(1) for _ in range(5)]
    assert first == second


def test_backoff_delay_is_reproducible_with_same_seed():
    policy = ExponentialBackoff()
    r1, r2 = random.Random(3), random.Random(3)
    assert [policy.delay(k, r1) for k in range(20)] == [policy.delay(k, r2) for k in range(20)]


# -- edge cases: multiplier 1 and zero delay ------------------------------------------------


def test_multiplier_one_keeps_the_initial_delay_for_every_attempt(manager_factory):
    m = manager_factory(jitter=0, reconnect_backoff_multiplier=1, reconnect_delay_ms=2500)
    assert [m.calculate_reconnect_delay(k) for k in (0, 1, 5, 100, 10**6, 2**63)] == [2.5] * 6


def test_multiplier_one_with_jitter_stays_around_initial(manager_factory):
    m = manager_factory(jitter=0.2, reconnect_backoff_multiplier=1, reconnect_delay_ms=2000)
    for attempt in (0, 7, 2**63):
        for _ in range(200):
            assert 1.6 - TOLERANCE <= m.calculate_reconnect_delay(attempt) <= 2.4 + TOLERANCE


@pytest.mark.parametrize("jitter", [0, 0.1, 1.0])
def test_zero_initial_delay_gives_zero_for_every_attempt(manager_factory, jitter):
    m = manager_factory(jitter=jitter, reconnect_delay_ms=0)
    assert {m.calculate_reconnect_delay(k) for k in (0, 1, 5, 10**6, 2**63)} == {0.0}


def test_zero_initial_and_zero_max_delay_gives_zero(manager_factory):
    m = manager_factory(reconnect_delay_ms=0, max_reconnect_delay_ms=0)
    assert m.calculate_reconnect_delay(0) == 0.0
    assert m.calculate_reconnect_delay(10**6) == 0.0


def test_initial_equal_to_max_is_constant(manager_factory):
    m = manager_factory(jitter=0, reconnect_delay_ms=5000, max_reconnect_delay_ms=5000)
    assert {m.calculate_reconnect_delay(k) for k in (0, 1, 2, 10**6)} == {5.0}


def test_full_jitter_never_goes_negative(manager_factory):
    m = manager_factory(jitter=1.0)
    delays = [m.calculate_reconnect_delay(k % 8) for k in range(SAMPLES)]
    assert min(delays) >= 0.0
    assert max(delays) <= 30.0


# -- bad attempt ----------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [-1, -(2**63)])
def test_negative_attempt_raises_value_error_naming_attempt(manager_factory, attempt):
    m = manager_factory()
    with pytest.raises(ValueError, match="attempt"):
        m.calculate_reconnect_delay(attempt)


@pytest.mark.parametrize("attempt", [1.0, 0.5, float("nan"), True, False, "1", None, [1]])
def test_non_int_attempt_raises_type_error_naming_attempt(manager_factory, attempt):
    m = manager_factory()
    with pytest.raises(TypeError, match="attempt"):
        m.calculate_reconnect_delay(attempt)


@pytest.mark.parametrize(
    ("attempt", "error"), [(-1, ValueError), (1.0, TypeError), (True, TypeError), ("2", TypeError)]
)
def test_backoff_policy_rejects_bad_attempt_naming_it(attempt, error):
    policy = ExponentialBackoff()
    with pytest.raises(error, match="attempt"):
        policy.delay(attempt, random.Random(0))
    with pytest.raises(error, match="attempt"):
        policy.nominal(attempt)


# -- ExponentialBackoff construction --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": -1}, "initial"),
        ({"maximum": -1, "initial": 0}, "maximum"),
        ({"maximum": 0.5, "initial": 1}, "maximum"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.5}, "jitter"),
        ({"initial": float("nan")}, "initial"),
        ({"maximum": float("inf")}, "maximum"),
    ],
)
def test_backoff_rejects_bad_values_with_value_error_naming_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ExponentialBackoff(**kwargs)


@pytest.mark.parametrize("field", ["initial", "maximum", "multiplier", "jitter"])
@pytest.mark.parametrize("bad", ["1", None, True])
def test_backoff_rejects_wrong_types_with_type_error_naming_field(field, bad):
    with pytest.raises(TypeError, match=field):
        ExponentialBackoff(**{field: bad})


@pytest.mark.parametrize("attempt", [0, 1, 10**6])
def test_tiny_positive_initial_delay_gives_a_delay_instead_of_overflow(manager_factory, attempt):
    m = manager_factory(jitter=0, reconnect_delay_ms=1e-310)
    delay = m.calculate_reconnect_delay(attempt)
    assert 0.0 <= delay <= 30.0


@pytest.mark.parametrize(("backoff", "attempt", "window"), [
    (ExponentialBackoff(initial=1.0, maximum=30.0, jitter=0.1), 0, (0.9, 1.1)),
    (ExponentialBackoff(initial=1.0, maximum=30.0, jitter=0.1), 2, (3.6, 4.4)),
    (ExponentialBackoff(initial=1.0, maximum=30.0, jitter=0.5), 5, (15.0, 30.0)),  # clipped at the cap
    (ExponentialBackoff(initial=2.0, maximum=30.0, jitter=0.0), 1, (4.0, 4.0)),
    (ExponentialBackoff(initial=0.0, maximum=0.0, jitter=0.3), 0, (0.0, 0.0)),
])
def test_the_window_is_where_the_delays_are_drawn_from(backoff, attempt, window):
    assert backoff.window(attempt) == pytest.approx(window)
    rng = random.Random(3)
    delays = [backoff.delay(attempt, rng) for _ in range(500)]
    low, high = window
    assert all(low - 1e-9 <= d <= high + 1e-9 for d in delays)
    if low < high:  # spread over the window, not bunched at one end
        assert min(delays) < low + (high - low) * 0.1 and max(delays) > high - (high - low) * 0.1


def test_the_onset_is_the_policys_first_attempt_with_a_fresh_seed_each_time():
    from lifecycle.engine.policy import ReconnectPolicy
    from lifecycle.fleet import Detail, Onset, Plan

    config = LifecycleConfig(reconnect_delay_ms=1000, max_reconnect_delay_ms=30000, jitter=0.2,
                             max_reconnect_attempts=4)
    policy = ReconnectPolicy.of(config)
    rng = random.Random(5)
    onset = policy.onset(rng)
    assert (onset.auto_reconnect, onset.max_attempts) == (True, 4)
    assert (onset.low, onset.high) == config.backoff.window(0) == pytest.approx((0.8, 1.2))
    assert len({policy.onset(rng).seed for _ in range(20)}) > 15
    # What a sweep does with it for each due service, from that service's transport:
    assert onset.plan(Detail("a", True), 0.5) == Plan("retry", 1, pytest.approx(1.0), 4)
    assert onset.plan(Detail("b", True, 2), 0.0) == Plan("retry", 1, pytest.approx(0.8), 2)
    assert onset.plan(Detail("c", True, 0), 0.5) == Plan("giveup", 1, 0.0, 0)
    assert onset.plan(Detail("d", False, 9), 0.5) == Plan("error")
    off = Onset(False, 4, 0.8, 1.2)  # the config's auto_reconnect off: every service stays in ERROR
    assert off.plan(Detail("e", True), 0.5) == Plan("error")
