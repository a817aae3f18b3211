"""Running a command until it prints a given line, then killing it with SIGKILL."""

import subprocess


def sigkill_at(command, env, at_line, timeout=60):
    """Run ``command``; SIGKILL it as soon as a line of its stdout satisfies ``at_line``
    (stderr discarded) → its return code (-9 when killed)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        for line in process.stdout:
            if at_line(line):
                process.kill()  # SIGKILL
                break
        process.wait(timeout=timeout)
    finally:
        process.kill()
    return process.returncode
