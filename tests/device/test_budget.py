"""The hop budget and the capture supervisor alone: fake stages, fake times, fake sources."""
from types import SimpleNamespace

import pytest

from device.budget import BudgetSettings, HopBudget
from device.config import load_config
from device.supervision import CaptureSupervisor

HOP = 160   # samples: 10 ms at 16 kHz


def stage(name, priority=0, essential=False, stride_hops=1):
    return SimpleNamespace(name=name, priority=priority, essential=essential, stride_hops=stride_hops)


def settings(**kw):
    base = dict(hop_budget_ms=10.0, shedding=True, shed_above=0.9, restore_below=0.6,
                load_window_hops=10, backlog_shed_hops=20, probe_after_s=100.0)
    return BudgetSettings(**{**base, **kw})


def hop(budget, stages, t, seconds_each):
    for st in stages:
        if budget.runs(st):
            budget.record(st, seconds_each[st.name])
    budget.end_hop(sum(seconds_each[st.name] for st in stages if budget.runs(st)))
    return budget.balance(t)


def test_settings_are_the_profiles():
    s = BudgetSettings.from_config(load_config("default", ["runtime.shed_above=0.8"]))
    assert s.shed_above == 0.8 and s.load_window_hops == load_config("default")["runtime.load_window_hops"]


def test_sheds_the_lowest_priority_then_restores_when_it_fits():
    stages = [stage("frontend", essential=True), stage("scenes", 20), stage("slow", 10)]
    budget = HopBudget(stages, settings(), hop_samples=HOP, rate=16000)
    cost = {"frontend": 0.012, "scenes": 0.0005, "slow": 0.0005}   # a busy core: 13 ms per hop
    changes = []
    for k in range(10):
        changes += hop(budget, stages, k * 0.01, cost)
    assert [(c["label"], c["stage"]) for c in changes] == [("shed", "slow")]
    assert budget.shed == {"slow"} and changes[0]["load"] > 0.9
    assert budget.hop_stats.misses == 10
    for k in range(10, 30):                  # still behind: the next lowest goes, one per window
        changes += hop(budget, stages, k * 0.01, cost)
    assert [c["stage"] for c in changes] == ["slow", "scenes"] and budget.shed == {"slow", "scenes"}
    cost["frontend"] = 0.001                 # the core is free again: both fit, highest first
    for k in range(30, 70):
        changes += hop(budget, stages, k * 0.01, cost)
    assert [(c["label"], c["stage"], c.get("probe")) for c in changes[2:]] == [
        ("restored", "scenes", False), ("restored", "slow", False)]
    assert budget.shed == set()


def test_a_probe_restores_after_the_wait_and_the_wait_doubles_after_a_failure():
    stages = [stage("a", essential=True), stage("b", 5)]
    budget = HopBudget(stages, settings(probe_after_s=0.2), hop_samples=HOP, rate=16000)
    cost = {"a": 0.001, "b": 0.02}
    labels = []
    for k in range(200):
        labels += [(c["label"], round(k * 0.01, 2)) for c in hop(budget, stages, k * 0.01, cost)]
    kinds = [l for l, _ in labels]
    assert kinds[:4] == ["shed", "restored", "shed", "restored"]
    restores = [t for l, t in labels if l == "restored"]
    sheds = [t for l, t in labels if l == "shed"]
    assert restores[0] - sheds[0] == pytest.approx(0.2, abs=0.011)
    assert restores[1] - sheds[1] == pytest.approx(0.4, abs=0.011)   # doubled


def test_essential_stages_are_never_shed_and_shedding_off_sheds_nothing():
    stages = [stage("a", essential=True)]
    for s in (settings(), settings(shedding=False)):
        budget = HopBudget(stages, s, hop_samples=HOP, rate=16000)
        assert not any(hop(budget, stages, k * 0.01, {"a": 0.05}) for k in range(50))
    off = HopBudget([stage("b")], settings(shedding=False), hop_samples=HOP, rate=16000)
    assert not any(hop(off, off.stages, k * 0.01, {"b": 0.05}) for k in range(50))


def test_a_realtime_backlog_counts_as_behind():
    stages = [stage("a", essential=True), stage("b")]
    budget = HopBudget(stages, settings(), hop_samples=HOP, rate=16000)
    for k in range(10):
        hop(budget, stages, k * 0.01, {"a": 0.001, "b": 0.001})
    assert budget.balance(0.1, backlog_samples=21 * HOP, realtime=False) == []
    assert [c["stage"] for c in budget.balance(0.1, backlog_samples=21 * HOP, realtime=True)] == ["b"]


class FakeSource:
    realtime = True

    def __init__(self):
        self.dropped_samples = 0
        self.overruns = 0
        self.restarts = 0

    def restart(self):
        self.restarts += 1


def test_a_stall_is_reported_once_retried_each_period_and_its_end_reported():
    now = [0.0]
    reports = []
    src = FakeSource()
    watch = CaptureSupervisor(src, stall_s=2.0, report=lambda label, **kw: reports.append(label),
                              clock=lambda: now[0])
    for t in (0.5, 1.9, 2.0, 3.0, 4.0, 6.1):
        now[0] = t
        watch.silent()
    assert reports == ["capture_stalled"] and src.restarts == 3      # at 2.0, 4.0 and 6.1
    now[0] = 6.2
    assert watch.delivered() == 0 and reports == ["capture_stalled", "capture_resumed"]


def test_overruns_return_the_lost_samples_and_are_reported_at_most_once_a_second():
    reports = []
    src = FakeSource()
    watch = CaptureSupervisor(src, stall_s=2.0, report=lambda label, **kw: reports.append((label, kw)))
    src.dropped_samples, src.overruns = 800, 1
    assert watch.delivered() == 800
    watch.report_overrun(5.0)
    src.dropped_samples, src.overruns = 1000, 2
    assert watch.delivered() == 200
    watch.report_overrun(5.5)                                         # within the second: quiet
    assert watch.delivered() == 0
    watch.report_overrun(6.0)
    assert reports == [("overrun", {"overruns": 1, "dropped_samples": 800}),
                       ("overrun", {"overruns": 2, "dropped_samples": 1000})]
