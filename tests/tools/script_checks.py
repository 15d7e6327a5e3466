"""What the checks of the bench scripts share: running a script under this Python, and collecting
the expectations that failed, to print them all and exit 1 if any did."""
import subprocess
import sys


def run(script, *args):
    """(exit status, stdout, stderr) of `python3 script args...`."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


class Checks:
    def __init__(self):
        self.failures = []

    def expect(self, condition, what):
        if not condition:
            self.failures.append(what)

    def report(self):
        """Prints every failure and their count; the exit status for main()."""
        for failure in self.failures:
            print("FAIL:", failure)
        print(f"{len(self.failures)} failure(s)")
        return 1 if self.failures else 0
