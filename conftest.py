"""Repository-wide pytest set-up (unit tests and nbval alike).

``make test`` runs the notebook tests a second time with ``ENDOLIB_PERTURB_NUMERICS=1``: the kernels nbval starts
inherit this process's environment, so the notebooks train and evaluate again under other floating-point numerics
(:data:`endolib.repro.PERTURBED_NUMERICS`), as on another CPU (issue 12).
"""
import os

if os.environ.get("ENDOLIB_PERTURB_NUMERICS") == "1":
    from endolib.repro import PERTURBED_NUMERICS

    os.environ.update(PERTURBED_NUMERICS)
    print(f"perturbed numerics: {PERTURBED_NUMERICS}")
