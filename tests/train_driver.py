"""Runs ``python -m modnet_jax.train``'s entry point (absl's ``app.run`` with train.py's flag
parser) once per argv in ONE subprocess, so the imports are paid once: the train-CLI tests
(test_cli.py, test_newcomer.py) check many mistakes for the price of one start-up."""

import json
import subprocess
import sys

_DRIVER = """
import contextlib, io, json, sys
from absl import app, flags
import modnet_jax.train as train
results = []
for argv in json.loads(sys.argv[1]):
    out, err, status = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            app.run(train.main, argv=["train", *argv], flags_parser=train.parse_flags)
        except SystemExit as exc:
            status = exc.code
    flags.FLAGS.unparse_flags()
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:  # defined per run
        delattr(flags.FLAGS, name)
    results.append([status, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def run_train(argvs, cwd, env, timeout=600):
    """[exit status, stdout, stderr] of ``train`` for each argv in ``argvs``, run in ``cwd``."""
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(argvs)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
