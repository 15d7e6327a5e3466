"""What the checks of the bench scripts share: running a script under this Python, and collecting
the expectations that failed, to print them all and exit 1 if any did."""
import json
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

    def reads(self, script, path, saved, *args):
        """Writes `saved` as JSON to `path`, runs `script --load path args`, expects exit 0, and
        returns its stdout."""
        with open(path, "w") as f:
            json.dump(saved, f)
        status, out, err = run(script, "--load", path, *args)
        self.expect(status == 0, f"exit {status} on a good file: {err}")
        return out

    def refuses(self, script, path, content, args, code, fragment, what):
        """Writes `content` (a string, or what json.dump writes of it) to `path`, runs `script
        --load path args`, and expects exit `code` and one line on stderr holding `fragment`."""
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        status, _, err = run(script, "--load", path, *args)
        self.expect(status == code and err.count("\n") == 1 and fragment in err, f"{what}: exit {status}, {err!r}")

    def report(self):
        """Prints every failure and their count; the exit status for main()."""
        for failure in self.failures:
            print("FAIL:", failure)
        print(f"{len(self.failures)} failure(s)")
        return 1 if self.failures else 0
