"""Load through your proxy, with faults whose right answers count as successes.

    chaos-upstream serve --port 8081 --admin-port 9901 --proxy-timeout 1 &   # where your app server was
    locust -f examples/locustfile.py --headless --users 20 --spawn-rate 10 --run-time 30s

Each request is named for its scenario in locust's table. A failure says what was expected and what
came back ("fail: expected a 502, saw malformed"); the first of each kind is explained in the log.
"""

from chaos_upstream.loadtest import ChaosUser


class ThroughTheProxy(ChaosUser):
    host = "http://127.0.0.1:8080"  # the proxy under test, which forwards to 127.0.0.1:8081
    admin = "http://127.0.0.1:9901"  # the upstream's admin API: verdicts joined with its journal
    proxy_timeout = 1.0  # the proxy's read timeout, as `serve --proxy-timeout` has it
    mix = "healthy=90,truncated-chunked=4,reset-before-response=3,bad-status-line=3"
    seed = 7  # the same draws, user by user, on every run
