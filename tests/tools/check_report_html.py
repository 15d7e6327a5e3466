#!/usr/bin/python3
"""Opens a suite's report.html in Debian's chromium, headless, and checks that every image loaded.

Usage: check_report_html.py REPORT_HTML [MIN_IMAGES]

The page is copied alone into an empty temporary folder, so an image that still points at a
file beside the report (rather than being embedded as a data: URI) cannot load. A script
appended to the copy records, once the page has loaded, how many <img> elements it has and
which of them have no pixels (naturalWidth 0), and `chromium --headless --dump-dom` prints the
resulting DOM, from which this script reads the record.

Exit 0 when the page has at least MIN_IMAGES images (default 1) and all loaded; 1 when one did
not, or the page could not be opened; 77 when chromium is not installed (the ctest's
SKIP_RETURN_CODE: install it with scripts/install-browser-deps.sh).
"""
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHECK = """
<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 80));
  const record = document.createElement('pre');
  record.id = 'dagger-image-check';
  record.textContent = JSON.stringify({images: images.length, broken: broken,
                                       tables: document.querySelectorAll('table').length});
  document.body.appendChild(record);
});
</script>
"""


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().splitlines()[2])
    report = Path(sys.argv[1])
    least = int(sys.argv[2]) if len(sys.argv) == 3 else 1
    browser = shutil.which("chromium")
    if not browser:
        print("chromium is not installed: run scripts/install-browser-deps.sh (skipped)")
        return 77
    if not report.is_file():
        print(f"{report}: no such report")
        return 1
    with tempfile.TemporaryDirectory(prefix="dagger-report-check-") as tmp:
        page = Path(tmp) / "report.html"
        html = report.read_text(encoding="utf-8")
        page.write_text(html.replace("</body>", CHECK + "</body>") if "</body>" in html else html + CHECK,
                        encoding="utf-8")
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               f"--user-data-dir={tmp}/profile", "--virtual-time-budget=10000", "--dump-dom",
                               page.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="dagger-image-check">(.*?)</pre>', done.stdout, re.S)
    if not found:
        print(f"{report}: chromium did not run the check (exit {done.returncode}): {done.stderr.strip()[-1000:]}")
        return 1
    record = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    print(f"{report}: {record['images']} images, {len(record['broken'])} not loaded, {record['tables']} tables")
    if record["broken"]:
        print("not loaded: " + ", ".join(record["broken"]))
        return 1
    if record["images"] < least:
        print(f"expected at least {least} images")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
