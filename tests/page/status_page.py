"""Drives Tarn's status page in headless Chromium (Debian's, through Playwright) and prints what
it saw as one JSON document; tests/integration/page.rs asserts on it.

Environment: URL (the server), ADMIN and READER (tokens), CHROMIUM (the browser), SHOTS (where
screenshots go), LOAD_TABLE (a table to load from its page), STALE_TABLE, HISTORY_TABLE.
"""
import json
import os
import time
import urllib.request

from playwright.sync_api import sync_playwright

url = os.environ["URL"].rstrip("/")
admin, reader = os.environ["ADMIN"], os.environ["READER"]
shots = os.environ["SHOTS"]
os.makedirs(shots, exist_ok=True)
out = {"requests_elsewhere": [], "console_errors": []}


def api(path, token=admin):
    req = urllib.request.Request(url + path, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def wait(page, js, what, timeout=60):
    """Polls `js` in the page until it is truthy."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = page.evaluate(js)
        if v:
            return v
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def watch(page):
    def on_request(r):
        if not r.url.startswith(url) and not r.url.startswith("data:"):
            out["requests_elsewhere"].append(r.url)
    page.on("request", on_request)
    # A refused token (401) and a bad statement (400) are answers the page shows; the browser
    # also logs such responses to the console. Anything else logged as an error counts.
    expected = "Failed to load resource: the server responded with a status of 4"
    page.on("console", lambda m: m.type == "error" and not m.text.startswith(expected)
            and out["console_errors"].append(m.text))
    page.on("pageerror", lambda e: out["console_errors"].append(str(e)))


def table_rows(page):
    return page.evaluate("""() => [...document.querySelectorAll('#tables tbody tr')].map(tr => ({
        table: tr.dataset.table,
        status: tr.querySelector('.badge').textContent,
        reason: (tr.querySelector('.reason') || {}).textContent || null,
        rows: tr.cells[2].textContent,
    }))""")


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ["CHROMIUM"], headless=True,
                                args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch(page)
    page.goto(url + "/")
    out["login_visible"] = page.is_visible("#login-form")
    # A wrong token.
    page.fill("#token", "not-a-token")
    page.click("#login-form button[type=submit]")
    out["wrong_token"] = wait(page, "document.getElementById('login-error').textContent", "the refusal")
    out["still_signed_out"] = page.is_visible("#login-form") and not page.is_visible("#tabs")
    # The admin token.
    page.fill("#token", admin)
    page.press("#token", "Enter")
    page.wait_for_selector("#tables tbody tr")
    out["who"] = page.text_content("#who")
    out["instance"] = page.text_content("#instance")
    expected = api("/v1/tables")["tables"]
    wait(page, f"document.querySelectorAll('#tables tbody tr').length === {len(expected)}", "every table")
    out["page_tables"] = table_rows(page)
    out["api_tables"] = [{"table": f"{t['schema_name']}.{t['table_name']}",
                          "status": t["status"]["load_status"].removesuffix("_RPDGSTABSTATE"),
                          "rows": f"{t['nrows']:,}"} for t in expected]
    page.screenshot(path=os.path.join(shots, "tables.png"), full_page=True)

    # A table refreshed several times: its history as a chart and a list.
    db, name = os.environ["HISTORY_TABLE"].split(".")
    page.click(f"#tables a[href='#table/{db}/{name}']")
    page.wait_for_selector("#history tbody tr")
    wait(page, "document.getElementById('table-ddl').textContent.length > 0", "the definition")
    out["history_rows"] = page.evaluate("document.querySelectorAll('#history tbody tr').length")
    out["history_bars"] = page.evaluate("document.querySelectorAll('#history-chart rect.bar').length")
    out["history_line"] = page.evaluate("!!document.querySelector('#history-chart polyline.line')")
    out["ddl"] = page.text_content("#table-ddl")
    out["admin_buttons"] = page.evaluate("[...document.querySelectorAll('#table-actions button')].map(b => b.textContent)")
    page.screenshot(path=os.path.join(shots, "table.png"), full_page=True)

    # A load started from the page reaches AVAIL, its progress shown meanwhile.
    db, name = os.environ["LOAD_TABLE"].split(".")
    page.goto(f"{url}/#table/{db}/{name}")
    page.wait_for_selector("#table-actions button")
    wait(page, f"document.getElementById('table-facts').dataset.table === '{db}.{name}'", "the table's facts")
    out["before_load"] = page.evaluate("document.querySelector('#table-facts dd').textContent")
    page.click("#table-actions button:has-text('Load')")
    seen = set()
    end = time.monotonic() + 180
    while time.monotonic() < end:
        state, progress = page.evaluate("[...document.querySelectorAll('#table-facts dd')].slice(0, 2).map(d => d.textContent)")
        seen.add((state, progress))
        if state == "AVAIL":
            break
        time.sleep(0.05)
    out["load_seen"] = sorted(seen)
    page.goto(url + "/#tables")
    wait(page, f"[...document.querySelectorAll('#tables tbody tr')].some(tr => tr.dataset.table === '{db}.{name}' && tr.querySelector('.badge').textContent === 'AVAIL')",
         "the loaded table to show AVAIL in the list")
    out["stale"] = next(r for r in table_rows(page) if r["table"] == os.environ["STALE_TABLE"])
    # Filters.
    page.select_option("#filter-status", "STALE")
    out["filtered"] = [r["table"] for r in table_rows(page)]
    page.select_option("#filter-status", "")

    # SQL: a good statement, a bad one, the history.
    page.click("#tabs a[data-view=sql]")
    page.fill("#sql", f"SELECT count(*) AS n, max(order_id) AS top FROM {os.environ['HISTORY_TABLE']}")
    page.press("#sql", "Control+Enter")
    page.wait_for_selector("#sql-result thead th")
    out["sql_header"] = page.evaluate("[...document.querySelectorAll('#sql-result thead th')].map(th => th.textContent)")
    out["sql_cells"] = page.evaluate("[...document.querySelectorAll('#sql-result tbody td')].map(td => td.textContent)")
    out["sql_status"] = page.text_content("#sql-status")
    page.screenshot(path=os.path.join(shots, "sql.png"), full_page=True)
    page.fill("#sql", "SELEC 1")
    page.click("#sql-form button[type=submit]")
    out["sql_error"] = wait(page, "document.getElementById('sql-error').textContent", "the error")
    out["sql_history"] = page.evaluate("[...document.querySelectorAll('#sql-history li')].map(li => li.textContent)")

    # Regions.
    page.click("#tabs a[data-view=regions]")
    page.wait_for_selector("#regions-cards .card")
    wait(page, "document.querySelectorAll('#events li').length > 0", "a failover on the timeline")
    out["regions"] = page.evaluate("[...document.querySelectorAll('#regions-cards .card')].map(c => c.querySelector('.badge').textContent + ' ' + c.querySelector('dd').textContent)")
    out["events"] = page.evaluate("[...document.querySelectorAll('#events li')].map(li => li.textContent)")
    out["timeline_dots"] = page.evaluate("document.querySelectorAll('#timeline circle').length")
    page.screenshot(path=os.path.join(shots, "regions.png"), full_page=True)

    # Keyboard: the tabs are reachable and followable without a mouse.
    page.focus("#tabs a[data-view=tables]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#view-tables:not([hidden])")
    out["keyboard_tables"] = page.is_visible("#view-tables")

    # A phone's width: nothing scrolls sideways but the tables inside their own boxes.
    page.set_viewport_size({"width": 375, "height": 800})
    time.sleep(0.5)
    out["phone_overflow"] = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    page.screenshot(path=os.path.join(shots, "phone.png"), full_page=True)

    # Sign out: the token is gone from the tab.
    page.click("#logout")
    out["signed_out"] = page.is_visible("#login-form") and page.evaluate("sessionStorage.getItem('tarn.token') === null")

    # A reader sees only its databases, and no buttons that change anything.
    reader_page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch(reader_page)
    reader_page.goto(url + "/")
    reader_page.fill("#token", reader)
    reader_page.press("#token", "Enter")
    reader_page.wait_for_selector("#tables tbody tr")
    out["reader_tables"] = sorted(r["table"] for r in table_rows(reader_page))
    db, name = os.environ["HISTORY_TABLE"].split(".")
    reader_page.goto(f"{url}/#table/{db}/{name}")
    reader_page.wait_for_selector("#history tbody tr")
    out["reader_buttons"] = reader_page.evaluate("document.querySelectorAll('#table-actions button').length")
    # Still signed in after a reload (session storage), as the same user.
    reader_page.reload()
    reader_page.wait_for_selector("#tables tbody tr, #history tbody tr")
    out["reader_after_reload"] = reader_page.text_content("#who")
    browser.close()

print(json.dumps(out))
