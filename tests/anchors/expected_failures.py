"""scikit-learn anchor tests that fail with torchhpo's classes, and why.

Keys are ``"<file>::<test name with its parameters>"`` (the name pytest shows after
``::``), values the reason. The plugin marks each entry ``xfail(strict=True)``: a
listed test that starts passing fails the run until its entry is removed, and an
entry that names no collected test is an error. So the list can only shrink.

Add an entry only for a deliberate difference, one a user would accept, listed in
the README's "Differences from scikit-learn and optuna_integration" with its
reason, e.g.::

    "test_mlp.py::test_some_private_attribute": (
        "reads a private attribute the engine does not keep; see the README"
    ),

Issue 19 started with 9 failures (test_scalar_fit_param x2,
test_base_estimator_inputs x2, test_mlp_diverging_loss, test_nonfinite_params,
test_gradient, test_learning_rate_warmstart, test_adaptive_learning_rate); all
were fixed, none listed.
"""

EXPECTED_FAILURES: dict[str, str] = {}
