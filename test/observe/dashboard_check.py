#!/usr/bin/env python3
"""Drives a headless Chromium through chromedriver (the W3C WebDriver HTTP protocol, standard
library only) to check the producer's dashboard as a person would see it:

  1. the page loads and reaches the producer (before the job starts);
  2. once the job runs (this script opens its gate), the page lists the job's workers;
  3. one worker process, read from the page, is killed with SIGKILL: the page marks it dropped
     and lists the fault;
  4. the page reaches 100% and "done" when the job ends; a screenshot (PNG) is saved.

Every wait polls the page's state with a deadline; nothing waits a fixed time. Exit status 0
when all of it held, 1 with the reason otherwise.

  dashboard_check.py --driver URL --page URL --start FILE --profile DIR --screenshot FILE
"""
import argparse
import base64
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request


class WebDriver:
    def __init__(self, url):
        self.url = url.rstrip("/")
        self.session = None

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return json.loads(answer.read())["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"webdriver {method} {path}: {e.code} {e.read()[:500]!r}")

    def start(self, profile):
        capabilities = {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                # As root Chromium needs --no-sandbox; the profile is the test's own folder.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--user-data-dir=" + profile,
                         "--window-size=1280,720", "--hide-scrollbars"]}}}
        value = self.call("POST", "/session", {"capabilities": capabilities})
        self.session = value["sessionId"]

    def run(self, script):
        """The value of a JavaScript function body run in the page."""
        return self.call("POST", f"/session/{self.session}/execute/sync",
                         {"script": script, "args": []})

    def go(self, url):
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def screenshot(self):
        return base64.b64decode(self.call("GET", f"/session/{self.session}/screenshot"))

    def stop(self):
        if self.session:
            self.call("DELETE", f"/session/{self.session}")
            self.session = None


# What the page shows, read from its elements.
PAGE_STATE = """
const rows = [...document.querySelectorAll('#worker-rows tr')].map((r) => ({
  worker: r.dataset.worker, dropped: r.dataset.dropped === 'true', text: r.textContent}));
const marked = [...document.querySelectorAll('#stream text.dropped')].map((t) => t.dataset.worker);
return {title: document.title,
        connection: document.getElementById('connection').textContent,
        percent: document.getElementById('percent').textContent,
        state: document.getElementById('state').textContent,
        slices: document.getElementById('slices').textContent,
        rows: rows, marked: marked,
        bars: document.querySelectorAll('#stream rect').length,
        faults: [...document.querySelectorAll('#faults li[data-kind]')].map((f) => f.dataset.kind)};
"""


def wait_until(driver, what, condition, seconds):
    """Polls the page until condition(state) holds; the state, or an error naming `what`."""
    deadline = time.monotonic() + seconds
    state = None
    while time.monotonic() < deadline:
        state = driver.run(PAGE_STATE)
        if condition(state):
            print(f"page: {what}: {state['percent']} {state['slices']} {state['state']}, "
                  f"{len(state['rows'])} worker row(s), {state['bars']} bar(s)", flush=True)
            return state
        time.sleep(0.1)  # polls the page, bounded by the deadline
    raise RuntimeError(f"the page did not show {what} within {seconds:.0f} s; it showed {state}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--driver", required=True)
    parser.add_argument("--page", required=True)
    parser.add_argument("--start", required=True, help="file that lets the job start")
    parser.add_argument("--profile", required=True)
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    scale = max(args.time_scale, 1.0)

    driver = WebDriver(args.driver)
    try:
        driver.start(args.profile)
        driver.go(args.page)
        wait_until(driver, "the page, live", lambda s: s["title"] == "Pymar dashboard"
                   and s["connection"] == "live", 30 * scale)
        open(args.start, "w").close()

        state = wait_until(driver, "a running job with its workers",
                           lambda s: s["state"] == "running" and len(s["rows"]) >= 2, 30 * scale)
        victim = state["rows"][0]["worker"]  # "host:pid"
        pid = int(victim.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        print(f"killed worker pid {pid}", flush=True)

        def marked(s):
            row = [r for r in s["rows"] if r["worker"] == victim]
            return row and row[0]["dropped"] and victim in s["marked"] \
                and "worker_dropped" in s["faults"]
        state = wait_until(driver, f"worker {victim} marked dropped", marked, 30 * scale)
        if state["state"] != "running":
            raise RuntimeError(f"the job was over before the kill showed: {state}")

        state = wait_until(driver, "the job done at 100%",
                           lambda s: s["percent"] == "100%" and s["state"] == "done", 120 * scale)
        # Still marked once the job is over: the last job stays on the page.
        if not marked(state):
            raise RuntimeError(f"the killed worker is no longer marked at the end: {state}")
        png = driver.screenshot()
        if not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise RuntimeError("the screenshot is not a PNG")
        with open(args.screenshot, "wb") as out:
            out.write(png)
        print(f"screenshot: {args.screenshot} ({len(png)} bytes)", flush=True)
        return 0
    except Exception as e:  # the reason, for the test's log
        print(f"dashboard_check: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        try:
            driver.stop()  # closes Chromium, so that nothing outlives the test
        except Exception as e:
            print(f"dashboard_check: ending the session: {e}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
