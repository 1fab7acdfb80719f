"""Deploys through real nginx and HAProxy in front of a fleet of two: their defaults, and the
settings that make a deploy invisible (the `deploy-safe` variants); docs/proxies.md, "Deploys, and the settings that make them invisible"."""

import functools

import pytest
import trio

from chaos_upstream.matrix import run_matrix
from chaos_upstream.proxies import get_launcher, require

from conftest import CATALOGUE

T = 0.5
TIMELINES_AT_ONCE = 3
"""As the matrix did before its default became the CPU count (2 here): the eight timelines take
13 s instead of 17 s, and were judged the same at 3 at once in every run of the suite."""

SCENARIOS = [CATALOGUE.get(name) for name in ("rolling-deploy", "restart-during-deploy", "post-not-retried")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every (proxy, scenario) result, run once for the module: all at once, each its own fleet."""
    require("nginx"), require("haproxy")
    keys = ["nginx", "nginx:deploy-safe", "haproxy", "haproxy:deploy-safe"]
    found = trio.run(functools.partial(run_matrix, [get_launcher(key) for key in keys], CATALOGUE, SCENARIOS,
                                       proxy_timeout=T, workdir=tmp_path_factory.mktemp("deploys"),
                                       concurrency=TIMELINES_AT_ONCE))
    return {run.name: {result.scenario.name: result for result in run.report.results} for run in found}


@pytest.mark.proxy
def test_nginx_with_max_fails_0_makes_a_rolling_deploy_invisible(runs):
    rolling = runs["nginx:deploy-safe"]["rolling-deploy"]
    assert rolling.verdict == "pass", rolling.explain()
    assert rolling.observed["requests"] >= 20 and rolling.observed["errors"] == 0
    assert [r["member"] for r in rolling.observed["recovery"]] == [0, 1]


@pytest.mark.proxy
@pytest.mark.parametrize("key", ["nginx", "nginx:deploy-safe", "haproxy", "haproxy:deploy-safe"])
def test_a_reset_post_reaches_the_upstreams_once_and_gets_an_error(runs, key):
    post = runs[key]["post-not-retried"]
    assert post.verdict == "pass", post.explain()
    assert post.observed["upstream_attempts"] == 1 and post.method == "POST"


@pytest.mark.proxy
def test_nginx_by_default_keeps_a_returned_member_marked_down(runs):
    rolling = runs["nginx"]["rolling-deploy"]
    assert rolling.verdict == "fail"
    assert rolling.observed["errors"] > rolling.observed["errors_while_down"] > 0, rolling.explain()
    assert "the proxy kept failing after the upstream returned" in rolling.reason


@pytest.mark.proxy
@pytest.mark.parametrize("key", ["nginx", "nginx:deploy-safe", "haproxy", "haproxy:deploy-safe"])
def test_a_restart_is_judged_with_counts_and_recovery_times(runs, key):
    restart = runs[key]["restart-during-deploy"]
    observed = restart.observed
    assert observed["requests"] == 161 and 0 < observed["errors_while_down"] <= observed["errors"]
    assert observed["in_rotation_s"] < 1  # a fresh proxy sends to both members at once
    assert f"{observed['in_rotation_s']} s for every member to be in rotation first" in restart.explain()
    assert [w["member"] for w in observed["down"]] == [0, 1]
    assert all(r["back_at_s"] == 5 * T for r in observed["recovery"])
    passed = observed["errors"] == observed["errors_while_down"]
    assert restart.verdict == ("pass" if passed else "fail"), restart.explain()
    assert (restart.verdict, key) != ("fail", "nginx:deploy-safe"), restart.explain()


@pytest.mark.proxy
@pytest.mark.parametrize("key", ["haproxy", "haproxy:deploy-safe"])
def test_haproxy_fails_a_rolling_deploy_at_most_while_a_member_is_down(runs, key):
    rolling = runs[key]["rolling-deploy"]
    assert rolling.observed["errors"] == rolling.observed["errors_while_down"], rolling.explain()
    assert (rolling.verdict, key) != ("fail", "haproxy:deploy-safe"), rolling.explain()
